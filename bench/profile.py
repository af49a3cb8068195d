"""``python -m bench.profile``: where a security server spends its CPU under load.

Starts the backend and the two ``tunduk run`` servers (as the load scenarios do),
drives them with the load generator, samples one or both servers with py-spy
(``pip install py-spy``) and prints the hottest functions: self time (the function
itself was on CPU) and inclusive time (it or its callees), as % of the samples.
"""
from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tunduk.server.devfed import KeySource, create_dev_ca

from .loadgen import run_load
from .payload import CONTENT_TYPE, SOAP_ACTION, echo_request
from .scenarios import Backend, Federation, check_once


def summarise(raw: str, top: int = 25) -> tuple[int, list, list]:
    """Collapsed stacks (``a;b;c N``) → total samples, top self, top inclusive."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return total, own.most_common(top), incl.most_common(top)


def _short(frame: str) -> str:
    """``func (path/to/mod.py:123)`` → ``func (mod.py)``; drop thread/process roots."""
    if frame.startswith("process ") or frame.startswith("thread "):
        return ""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--log", default="sqlite", choices=("off", "sqlite"))
    p.add_argument("--key-type", default="ec", choices=("ec", "rsa"))
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--side", default="both", choices=("consumer", "provider", "both"))
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--tool", choices=("py-spy", "cprofile"), default="py-spy",
                   help="py-spy sampling, or cProfile with a per-thread CPU-time clock "
                        "(python -m bench.cpuprofile)")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL (Python CPU time)")
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--save", type=Path, help="also write the collapsed stacks here")
    a = p.parse_args(argv)
    a.spy_args = ["--gil"] if a.gil else ([] if a.native else ["--nonblocking"])
    if a.native:
        a.spy_args.append("--native")
    if a.tool == "cprofile":
        return cprofile_main(a)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tunduk-profile-"))
    backend = fed = None
    try:
        ca = create_dev_ca(work / "ca")
        backend = Backend(work, "backend")
        fed = Federation(work / "fed", ca, KeySource(ca, work / "keys"), backend.url,
                         messagelog={"backend": a.log}, key_type=a.key_type)
        check_once(fed.url, echo_request())
        run_load(fed.url, echo_request(), concurrency=a.concurrency, duration=1,
                 content_type=CONTENT_TYPE, soap_action=SOAP_ACTION)
        pids = {"consumer": fed.consumer.pid, "provider": fed.provider.pid}
        sides = ("consumer", "provider") if a.side == "both" else (a.side,)
        outs: dict[str, Path] = {s: work / f"{s}.txt" for s in sides}
        load = threading.Thread(target=run_load, args=(fed.url, echo_request()), kwargs=dict(
            concurrency=a.concurrency, duration=a.seconds + 2, content_type=CONTENT_TYPE,
            soap_action=SOAP_ACTION))
        load.start()
        spies = [subprocess.Popen([spy, "record", "--pid", str(pids[s]), "--duration",
                                   str(a.seconds), "--rate", "200", "--format", "raw",
                                   "--subprocesses", *a.spy_args, "--output",
                                   str(outs[s])], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for s in sides]
        for sp in spies:
            _, err = sp.communicate(timeout=a.seconds + 60)
            if sp.returncode != 0:
                print(f"py-spy failed: {err}", file=sys.stderr)
                return 1
        load.join(a.seconds + 70)
        raw = "\n".join(outs[s].read_text() for s in sides)
        if a.save:
            a.save.write_text(raw)
        total, own, incl = summarise(raw, a.top)
        print(f"py-spy, {a.seconds} s at c={a.concurrency}, tunduk log={a.log} "
              f"{a.key_type.upper()}, {'+'.join(sides)}: {total} CPU samples")
        print("\nself time (function itself on CPU)")
        for f, n in own:
            print(f"  {100 * n / total:5.1f}%  {f}")
        print("\ninclusive time (function and its callees)")
        for f, n in incl:
            print(f"  {100 * n / total:5.1f}%  {f}")
    finally:
        if fed is not None:
            fed.stop()
        if backend is not None:
            backend.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def cprofile_main(a: argparse.Namespace) -> int:
    import pstats

    from .procs import python_argv
    work = Path(tempfile.mkdtemp(prefix="tunduk-profile-"))
    backend = fed = None
    try:
        ca = create_dev_ca(work / "ca")
        backend = Backend(work, "backend")
        argv_for = (lambda conf, w: python_argv("-m", "bench.cpuprofile", str(conf),
                                                str(conf.parent / "cpu.pstats")))
        fed = Federation(work / "fed", ca, KeySource(ca, work / "keys"), backend.url,
                         messagelog={"backend": a.log}, key_type=a.key_type,
                         argv_for=argv_for)
        check_once(fed.url, echo_request())
        run_load(fed.url, echo_request(), concurrency=a.concurrency, duration=2,
                 content_type=CONTENT_TYPE, soap_action=SOAP_ACTION)
        import signal
        for proc in (fed.consumer, fed.provider):
            proc.popen.send_signal(signal.SIGUSR1)   # drop start-up and warm-up
        r = run_load(fed.url, echo_request(), concurrency=a.concurrency,
                     duration=a.seconds, content_type=CONTENT_TYPE, soap_action=SOAP_ACTION)
        fed.stop()
        sides = ("consumer", "provider") if a.side == "both" else (a.side,)
        files = {s: getattr(fed.files, s).dir / "cpu.pstats" for s in sides}
        stats = pstats.Stats(*(str(f) for f in files.values()))
        fed = None
        rows = stats.stats  # (file, line, func) -> (cc, nc, tottime, cumtime, callers)
        total = sum(v[2] for v in rows.values())
        print(f"cProfile (thread CPU time), {a.seconds} s at c={a.concurrency}, tunduk "
              f"log={a.log} {a.key_type.upper()}, {'+'.join(sides)}: {r.requests} "
              f"exchanges, {total:.2f} s CPU in profiled threads "
              f"({1000 * total / max(r.requests, 1):.2f} ms per exchange, profiler "
              f"overhead included)")

        def name(k) -> str:
            f, line, fn = k
            if f == "~":
                return fn
            parts = Path(f).parts
            return f"{fn} ({'/'.join(parts[-2:])}:{line})"
        for title, idx in (("self CPU (tottime)", 2), ("inclusive CPU (cumtime)", 3)):
            print(f"\n{title}")
            for k, v in sorted(rows.items(), key=lambda kv: -kv[1][idx])[:a.top]:
                print(f"  {100 * v[idx] / total:5.1f}%  {v[1]:>8} calls  {name(k)}")
    finally:
        if fed is not None:
            fed.stop()
        if backend is not None:
            backend.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
