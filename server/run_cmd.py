"""``tunduk run CONF``: serve a security server until interrupted.

With ``workers > 1`` each worker is a separate process (one Python process uses one
core) with its own listening sockets on the same ports (SO_REUSEPORT: the kernel
spreads connections); the parent only supervises.  No state is shared between workers
except the message log database.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("tunduk")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("conf", type=Path, help="the security server's configuration file")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: [listen] workers in the file)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every fault")


def _serve_forever(conf, reuse_port: bool) -> None:
    import asyncio

    from .edges.aio.engine import AioEngine, serve_until_signalled
    from .node import Node
    node = Node.from_conf(conf)
    try:
        asyncio.run(serve_until_signalled(AioEngine(node, reuse_port=reuse_port)))
    finally:
        node.stop()
    # The message log is closed; a worker thread still blocked on a slow hosted service
    # (the answer's connection is gone) must not hold the exit up.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(args) -> int:
    from .conf.load import ConfError, check_server_conf
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # with the own certificates' dates: an expired one is refused like any other
        # configuration error, before peers refuse every exchange
        conf, notes = check_server_conf(args.conf)
    except ConfError as exc:
        print(f"{exc}\nFix the configuration (tunduk check-conf {args.conf}) and retry.",
              file=sys.stderr)
        return 1
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    workers = args.workers or conf.listen.workers
    ch, cp = conf.listen.client_proxy
    sh, sp = conf.listen.server_proxy
    from .port_claim import PortTaken, claim
    try:
        claim({"listen.client_proxy": (ch, cp), "listen.server_proxy": (sh, sp)})
    except PortTaken as exc:
        print(f"{exc}\n({args.conf})", file=sys.stderr)
        return 1
    print(f"tunduk {conf.owner}/{conf.server_code}: client proxy http://{ch}:{cp}, "
          f"server proxy https://{sh}:{sp}, {workers} worker(s)", flush=True)
    if workers <= 1:
        _serve_forever(conf, reuse_port=False)
        return 0
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _serve_forever(conf, reuse_port=True)
            except BaseException as exc:     # e.g. the port is taken: say so, exit 1
                if not isinstance(exc, KeyboardInterrupt):
                    print(f"tunduk worker {os.getpid()} failed: {type(exc).__name__}: "
                          f"{exc}", file=sys.stderr)
                    code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)

    running = set(children)
    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        for pid in list(running):          # not reaped ones: a pid may be reused
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    while running:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        running.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping and code in (-signal.SIGTERM, -signal.SIGINT):
            continue                       # stopped before its own handlers were up
        if code != 0 and not failed:
            failed = 1
            print("a worker failed; stopping the others. Fix the cause above and "
                  "start again.", file=sys.stderr)
            forward(signal.SIGTERM, None)
    return failed
