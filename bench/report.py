"""One table from a results dict: scenario figures, ratios with their targets, PASS/MISS.

The targets are those of issue 5 ("what the security layer costs").
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional

# (check name, comparison, target value, unit shown)
TARGETS = {
    "throughput_sqlite_vs_direct": (">=", 0.30, ""),
    "throughput_sqlite_vs_plain": (">=", 0.60, ""),
    "cpu_ms_per_exchange_sqlite": ("<=", 2.5, " ms"),
    "added_latency_p50_c8": ("<=", 3.0, " ms"),
    "added_latency_p99_c8": ("<=", 10.0, " ms"),
    "sign_vs_raw": ("<=", 1.5, "x"),
    "verify_vs_raw": ("<=", 1.5, "x"),
}


@dataclass
class Row:
    item: str
    rps: Optional[float] = None
    p50: Optional[float] = None
    p99: Optional[float] = None
    cpu: Optional[float] = None
    value: str = ""
    target: str = ""
    result: str = ""



def _added(ms: float) -> str:
    """Added latency; below zero the direct run's own percentile was the worse one
    (a saturated backend queues more without tunduk in front)."""
    return f"{ms:.2f} ms" if ms >= 0 else f"none (direct {-ms:.0f} ms slower)"

def check(name: str, value: Optional[float]) -> dict:
    op, target, unit = TARGETS[name]
    if value is None:
        status = "n/a"
    elif op == ">=":
        status = "PASS" if value >= target else "MISS"
    else:
        status = "PASS" if value <= target else "MISS"
    return {"name": name, "value": value, "op": op, "target": target, "unit": unit,
            "status": status}


def _target_text(c: dict) -> str:
    sym = "≥" if c["op"] == ">=" else "≤"
    return f"{sym} {c['target']:g}{c['unit']}"


CPU_FIELDS = ("cpu_ms_per_exchange", "cpu_user_ms_per_exchange", "cpu_sys_ms_per_exchange")


def combine_rounds(runs: list[dict]) -> dict:
    """One scenario's figures from its interleaved rounds (each dict has ``round``).

    The result keeps the shape of a single run: req/s and the CPU figures are the
    medians over the good rounds, latency percentiles and request counts those of the
    median-throughput run (the lower middle one for an even count), ``errors`` the
    total over all rounds; ``rounds`` lists every run as measured."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": "; ".join(str(r["error"]) for r in runs) or "no run",
                "rounds": list(runs)}
    by_rps = sorted(ok, key=lambda r: r["rps"])
    mid = by_rps[(len(by_rps) - 1) // 2]
    d = {k: v for k, v in mid.items() if k != "round"}
    d["rps"] = round(statistics.median(r["rps"] for r in ok), 2)
    for f in CPU_FIELDS:
        vals = [r[f] for r in ok if r.get(f) is not None]
        d[f] = round(statistics.median(vals), 3) if vals else None
    d["errors"] = sum(r.get("errors", 0) for r in ok)
    d["median_run_round"] = mid.get("round")
    d["rounds"] = list(runs)
    return d


def _good(d: Optional[dict]) -> bool:
    return bool(d) and "error" not in d


def _label(key: str) -> str:
    """``tunduk_sqlite_ec`` → "tunduk log=sqlite EC"."""
    _, log, kt = key.split("_")
    return f"tunduk log={log} {kt.upper()}"


def _load_row(item: str, d: Optional[dict]) -> Row:
    if not d:
        return Row(item, value="not run")
    if "error" in d:
        return Row(item, value="error", result="ERROR")
    r = Row(item, d["rps"], d["p50_ms"], d["p99_ms"], d.get("cpu_ms_per_exchange"))
    good = [x["rps"] for x in d.get("rounds", []) if "error" not in x]
    if len(good) > 1:
        r.value = f"{len(good)} rounds: {min(good):.0f}–{max(good):.0f} req/s"
    return r


def _ratio(a: Optional[dict], b: Optional[dict]) -> Optional[float]:
    if not _good(a) or not _good(b) or not b.get("rps"):
        return None
    return round(a["rps"] / b["rps"], 3)


def _round_ratios(a: Optional[dict], b: Optional[dict]) -> list[float]:
    """a.rps / b.rps within each round both measured (side by side in time)."""
    if not _good(a) or not _good(b):
        return []
    bs = {r.get("round"): r for r in b.get("rounds", []) if "error" not in r}
    out = []
    for r in a.get("rounds", []):
        other = bs.get(r.get("round"))
        if "error" not in r and other and other.get("rps") and r.get("round") is not None:
            out.append(r["rps"] / other["rps"])
    return out


def _spread(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    """Median and min–max of the per-round ratios, when there are two rounds or more."""
    per = _round_ratios(a, b)
    if len(per) < 2:
        return None
    return {"median": round(statistics.median(per), 3), "min": round(min(per), 3),
            "max": round(max(per), 3), "rounds": len(per),
            "per_round": [round(x, 3) for x in per]}


def analyse(res: dict) -> None:
    """Add ``ratios`` and ``checks`` to the results, from the figures in it."""
    sc, micro = res.get("scenarios", {}), res.get("micro", {})
    kt = res["meta"]["key_types"][0].upper()
    sqlite, off = sc.get(f"tunduk_sqlite_{kt.lower()}"), sc.get(f"tunduk_off_{kt.lower()}")
    direct, plain = sc.get("direct"), sc.get("plain")
    pairs = {
        "tunduk_sqlite/direct": (sqlite, direct),
        "tunduk_sqlite/plain": (sqlite, plain),
        "tunduk_off/direct": (off, direct),
        "tunduk_off/plain": (off, plain),
        "tunduk_postgresql/direct": (sc.get(f"tunduk_postgresql_{kt.lower()}"), direct),
        "plain/direct": (plain, direct),
        "aiohttp/plain": (sc.get("aiohttp"), plain),
        "direct/tunduk_sqlite": (direct, sqlite),
        "ceiling/direct": (sc.get("ceiling"), direct),
    }
    # With interleaved rounds a ratio is the median of the per-round ratios: both
    # sides of each were measured minutes apart at most, under the same noise.
    spreads = {k: _spread(*ab) for k, ab in pairs.items()}
    ratios = {k: spreads[k]["median"] if spreads[k] else _ratio(*ab)
              for k, ab in pairs.items()}
    res["ratios"] = {k: v for k, v in ratios.items() if v is not None}
    res["ratio_spread"] = {k: v for k, v in spreads.items() if v is not None}
    checks = [check("throughput_sqlite_vs_direct", ratios["tunduk_sqlite/direct"]),
              check("throughput_sqlite_vs_plain", ratios["tunduk_sqlite/plain"]),
              check("cpu_ms_per_exchange_sqlite",
                    sqlite.get("cpu_ms_per_exchange") if sqlite and "error" not in sqlite
                    else None)]
    added = sc.get("slow", {}).get("added", {}).get("c8")
    checks.append(check("added_latency_p50_c8", added["p50_ms"] if added else None))
    checks.append(check("added_latency_p99_c8", added["p99_ms"] if added else None))
    for name, r in micro.get("signing", {}).items():
        for op in ("sign", "verify"):
            c = check(f"{op}_vs_raw", r.get(f"{op}_ratio"))
            c["name"] = f"{op}_vs_raw_{name}"
            checks.append(c)
    res["checks"] = checks


def rows(res: dict) -> list[Row]:
    sc, micro = res.get("scenarios", {}), res.get("micro", {})
    meta = res["meta"]
    c = meta["concurrency"]
    checks = {x["name"]: x for x in res.get("checks", [])}
    out: list[Row] = []
    if "ceiling" in sc:
        out.append(_load_row(f"generator ceiling: static answer, c={c}", sc["ceiling"]))
    if "direct" in sc:
        out.append(_load_row(f"direct: backend alone, c={c}", sc["direct"]))
    if "plain" in sc:
        out.append(_load_row(f"plain proxies A→B→backend, c={c}", sc["plain"]))
    if "aiohttp" in sc:
        out.append(_load_row(f"plain proxies on aiohttp A→B→backend, c={c}", sc["aiohttp"]))
    for key, d in sc.items():
        if key.startswith("tunduk_"):
            out.append(_load_row(f"{_label(key)}, c={c}", d))

    def ratio_row(item: str, key: str, check_name: Optional[str] = None) -> None:
        v = res.get("ratios", {}).get(key)
        if v is None:
            return
        sp = res.get("ratio_spread", {}).get(key)
        text = f"{v:.2f}"
        if sp:
            text += f" ({sp['min']:.2f}–{sp['max']:.2f}, {sp['rounds']} rounds)"
        r = Row(item, value=text)
        if check_name:
            ch = checks[check_name]
            r.target, r.result = _target_text(ch), ch["status"]
        out.append(r)
    ratio_row("ratio tunduk sqlite / direct", "tunduk_sqlite/direct",
              "throughput_sqlite_vs_direct")
    ratio_row("ratio tunduk sqlite / plain proxies", "tunduk_sqlite/plain",
              "throughput_sqlite_vs_plain")
    ratio_row("ratio tunduk off / direct", "tunduk_off/direct")
    ratio_row("ratio tunduk off / plain proxies", "tunduk_off/plain")
    ratio_row("ratio tunduk postgresql / direct", "tunduk_postgresql/direct")
    ratio_row("ratio plain proxies / direct", "plain/direct")
    ratio_row("ratio plain proxies: aiohttp / own HTTP stack (req/s)", "aiohttp/plain")
    ratio_row("ratio direct / tunduk sqlite (generator headroom)", "direct/tunduk_sqlite")
    ratio_row("ratio generator ceiling / direct", "ceiling/direct")
    ch = checks.get("cpu_ms_per_exchange_sqlite")
    if ch and ch["value"] is not None:
        out.append(Row("CPU per exchange, tunduk sqlite (both servers)",
                       value=f"{ch['value']:.2f} ms", target=_target_text(ch),
                       result=ch["status"]))
    split = [("plain", "plain proxies (both)"),
             ("aiohttp", "plain proxies on aiohttp (both)")] + [
        (k, f"{_label(k)} (both servers)") for k in sc if k.startswith("tunduk_")]
    for key, label in split:
        d = sc.get(key)
        if _good(d) and d.get("cpu_user_ms_per_exchange") is not None:
            out.append(Row(f"CPU user / sys per exchange, {label}",
                           value=f"{d['cpu_user_ms_per_exchange']:.2f} / "
                                 f"{d['cpu_sys_ms_per_exchange']:.2f} ms"))

    slow = sc.get("slow")
    if slow:
        if "error" in slow:
            out.append(Row("slow backend (20 ms)", value="error", result="ERROR"))
        else:
            log = slow.get("log", "?")
            for cc, d in slow["direct"].items():
                out.append(_load_row(f"slow backend 20 ms: direct, c={cc[1:]}", d))
            for cc, d in slow["tunduk"].items():
                out.append(_load_row(f"slow backend 20 ms: tunduk log={log}, c={cc[1:]}", d))
            for cc, a in slow["added"].items():
                if cc == "c8":
                    for q in ("p50", "p99"):
                        chk = checks[f"added_latency_{q}_c8"]
                        out.append(Row(f"added latency {q}, 20 ms backend, c=8",
                                       value=_added(a[q + "_ms"]),
                                       target=_target_text(chk), result=chk["status"]))
                else:
                    out.append(Row(f"added latency p50 / p99, 20 ms backend, c={cc[1:]}",
                                   value=f"{_added(a['p50_ms'])} / {_added(a['p99_ms'])}"))
    scaling = sc.get("scaling")
    if scaling:
        for w, d in scaling.items():
            if w.startswith("workers_"):
                out.append(_load_row(f"scaling: tunduk log={scaling['log']} "
                                     f"{scaling['key_type'].upper()}, --workers "
                                     f"{w.split('_')[1]}, c={c}", d))

    for name, r in micro.get("signing", {}).items():
        for op in ("sign", "verify"):
            chk = checks.get(f"{op}_vs_raw_{name}")
            t, raw = r[f"tunduk_{op}"]["per_s"], r[f"raw_{op}"]["per_s"]
            out.append(Row(f"{op} {name}: tunduk {t:.0f}/s, raw xmlsec {raw:.0f}/s",
                           value=f"{r[op + '_ratio']:.2f}x", target=_target_text(chk),
                           result=chk["status"]))
    pipe = micro.get("pipeline")
    if pipe:
        if "error" in pipe:
            out.append(Row("in-memory pipeline (bench.pipeline)", value="error",
                           result="ERROR"))
        else:
            # median (and fastest) of the rounds, thread CPU time per exchange
            out.append(Row(f"in-memory pipeline (bench.pipeline), "
                           f"{pipe['key_type'].upper()}, log off, CPU/exchange",
                           value=f"{pipe['cpu_us_median']:.0f} µs "
                                 f"(min {pipe['cpu_us_min']:.0f})"))
            thr = pipe.get("threaded")
            if thr:
                out.append(Row(f"in-memory pipeline, {thr['threads']} threads at once, "
                               "process CPU/exchange", value=f"{thr['cpu_us']:.0f} µs"))
    if "parse" in micro:
        out.append(Row("parse envelope + X-Road headers (1.7 KB)",
                       value=f"{micro['parse']['per_s']:.0f}/s"))
    for backend, d in micro.get("messagelog", {}).items():
        if "error" in d or "skipped" in d:
            out.append(Row(f"message log {backend}", value=d.get("skipped") and "skipped"
                           or "error", result="" if "skipped" in d else "ERROR"))
            continue
        for k, v in d.items():
            kind, n = k.split("_")
            cpu = f", {v['cpu_us']:.0f} µs CPU each" if v.get("cpu_us") else ""
            if kind == "loop":
                out.append(Row(f"message log {backend} on the event loop, {n} record(s) "
                               "per commit", value=f"{v['per_s']:.0f}/s{cpu}"))
            else:
                out.append(Row(f"message log {backend} log(), {n} thread(s)",
                               value=f"{v['per_s']:.0f}/s{cpu}"))
    for name, why in res.get("skipped", {}).items():
        out.append(Row(f"{name}: skipped", value=why[:40]))
    return out


def _f(v: Optional[float], digits: int = 1) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def table(res: dict) -> str:
    head = ("item", "req/s", "p50 ms", "p99 ms", "CPU ms/x", "value", "target", "result")
    body = [(r.item, _f(r.rps, 0), _f(r.p50, 2), _f(r.p99, 2), _f(r.cpu, 2), r.value,
             r.target, r.result) for r in rows(res)]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    right = {1, 2, 3, 4, 5}

    def fmt(cells) -> str:
        return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(head), sep, *(fmt(b) for b in body)])
