"""``python -m bench.cpuprofile CONF OUT``: one security server under cProfile.

Like ``tunduk run CONF`` (one worker), but every thread runs under its own
``cProfile.Profile(time.thread_time)``: the timer is the thread's CPU time, so waiting
(sockets, locks, fsync) costs nothing and C calls (xmlsec, OpenSSL, sqlite, lxml)
are charged to the builtin that made them.  SIGUSR1 resets the counts; on SIGTERM the
merged stats go to OUT.  The main thread (the event-loop engine's) is profiled too.
"""
from __future__ import annotations

import cProfile
import os
import pstats
import signal
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    conf_path, out = (argv or sys.argv[1:])[:2]
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    # _bootstrap_inner, not run: cheroot's worker threads override run().
    original = threading.Thread._bootstrap_inner

    def bootstrap(self) -> None:
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()
    threading.Thread._bootstrap_inner = bootstrap

    def reset(*_a) -> None:
        """SIGUSR1: forget what was recorded so far (start-up, imports, warm-up)."""
        with lock:
            for prof in profiles:
                prof.clear()
    signal.signal(signal.SIGUSR1, reset)

    def dump() -> None:
        stats = pstats.Stats()
        with lock:
            for prof in profiles:
                prof.disable()
                try:
                    stats.add(prof)
                except TypeError:   # a profiler that never recorded anything
                    pass
        stats.dump_stats(out)

    # The event-loop engine serves from the main thread and ends the process with
    # os._exit once the log is closed: profile this thread too, dump before exiting.
    real_exit = os._exit

    def exit_after_dump(code: int) -> None:
        dump()
        real_exit(code)
    os._exit = exit_after_dump
    main_prof = cProfile.Profile(time.thread_time)
    profiles.append(main_prof)

    from tunduk.server.conf.load import load_server_conf
    from tunduk.server.run_cmd import _serve_forever
    conf = load_server_conf(Path(conf_path))
    main_prof.enable()
    _serve_forever(conf, reuse_port=False)
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
