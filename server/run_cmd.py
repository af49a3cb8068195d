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
import time
from pathlib import Path

log = logging.getLogger("tunduk")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("conf", type=Path, help="the security server's configuration file")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: [listen] workers in the file)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every fault")


def _serve_forever(conf, reuse_port: bool) -> None:
    from .node import Node
    node = Node.from_conf(conf)
    if conf.listen.engine == "asyncio":
        import asyncio

        from .edges.aio.engine import AioEngine, serve_until_signalled
        try:
            asyncio.run(serve_until_signalled(AioEngine(node, reuse_port=reuse_port)))
        finally:
            node.stop()
        return
    servers = node.make_servers(reuse_port=reuse_port)
    node._servers = servers
    import threading
    for s in servers:
        s.prepare()
    threads = [threading.Thread(target=s.serve, daemon=True) for s in servers]
    for t in threads:
        t.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop and all(t.is_alive() for t in threads):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    node.stop()


def run(args) -> int:
    from .conf.load import ConfError, load_server_conf
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        conf = load_server_conf(args.conf)
    except ConfError as exc:
        print(f"{exc}\nFix the configuration (tunduk check-conf {args.conf}) and retry.",
              file=sys.stderr)
        return 1
    workers = args.workers or conf.listen.workers
    ch, cp = conf.listen.client_proxy
    sh, sp = conf.listen.server_proxy
    print(f"tunduk {conf.owner}/{conf.server_code}: client proxy http://{ch}:{cp}, "
          f"server proxy https://{sh}:{sp}, {workers} worker(s)", flush=True)
    if workers <= 1:
        _serve_forever(conf, reuse_port=False)
        return 0
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                _serve_forever(conf, reuse_port=True)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum, _frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    return 0
