"""One table from a results dict: scenario figures, ratios with their targets, PASS/MISS.

The targets are those of issue 5 ("what the security layer costs").
"""
from __future__ import annotations

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


def _load_row(item: str, d: Optional[dict]) -> Row:
    if not d:
        return Row(item, value="not run")
    if "error" in d:
        return Row(item, value="error", result="ERROR")
    return Row(item, d["rps"], d["p50_ms"], d["p99_ms"], d.get("cpu_ms_per_exchange"))


def _ratio(a: Optional[dict], b: Optional[dict]) -> Optional[float]:
    if not a or not b or "error" in a or "error" in b or not b.get("rps"):
        return None
    return round(a["rps"] / b["rps"], 3)


def analyse(res: dict) -> None:
    """Add ``ratios`` and ``checks`` to the results, from the figures in it."""
    sc, micro = res.get("scenarios", {}), res.get("micro", {})
    kt = res["meta"]["key_types"][0].upper()
    sqlite, off = sc.get(f"tunduk_sqlite_{kt.lower()}"), sc.get(f"tunduk_off_{kt.lower()}")
    direct, plain = sc.get("direct"), sc.get("plain")
    ratios = {
        "tunduk_sqlite/direct": _ratio(sqlite, direct),
        "tunduk_sqlite/plain": _ratio(sqlite, plain),
        "tunduk_off/direct": _ratio(off, direct),
        "tunduk_off/plain": _ratio(off, plain),
        "tunduk_postgresql/direct": _ratio(sc.get(f"tunduk_postgresql_{kt.lower()}"), direct),
        "plain/direct": _ratio(plain, direct),
        "direct/tunduk_sqlite": _ratio(direct, sqlite),
        "ceiling/direct": _ratio(sc.get("ceiling"), direct),
    }
    res["ratios"] = {k: v for k, v in ratios.items() if v is not None}
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
    for key, d in sc.items():
        if key.startswith("tunduk_"):
            _, log, kt = key.split("_")
            out.append(_load_row(f"tunduk log={log} {kt.upper()}, c={c}", d))

    def ratio_row(item: str, key: str, check_name: Optional[str] = None) -> None:
        v = res.get("ratios", {}).get(key)
        if v is None:
            return
        r = Row(item, value=f"{v:.2f}")
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
    ratio_row("ratio direct / tunduk sqlite (generator headroom)", "direct/tunduk_sqlite")
    ratio_row("ratio generator ceiling / direct", "ceiling/direct")
    ch = checks.get("cpu_ms_per_exchange_sqlite")
    if ch and ch["value"] is not None:
        out.append(Row("CPU per exchange, tunduk sqlite (both servers)",
                       value=f"{ch['value']:.2f} ms", target=_target_text(ch),
                       result=ch["status"]))

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
                                       value=f"{a[q + '_ms']:.2f} ms",
                                       target=_target_text(chk), result=chk["status"]))
                else:
                    out.append(Row(f"added latency p50 / p99, 20 ms backend, c={cc[1:]}",
                                   value=f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} ms"))
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
    if "parse" in micro:
        out.append(Row("parse envelope + X-Road headers (1.7 KB)",
                       value=f"{micro['parse']['per_s']:.0f}/s"))
    for backend, d in micro.get("messagelog", {}).items():
        if "error" in d or "skipped" in d:
            out.append(Row(f"message log {backend}", value=d.get("skipped") and "skipped"
                           or "error", result="" if "skipped" in d else "ERROR"))
            continue
        for k, v in d.items():
            out.append(Row(f"message log {backend} log(), {k.split('_')[1]} thread(s)",
                           value=f"{v['per_s']:.0f}/s"))
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
