"""``tunduk check-conf FILE``: load a server configuration and report every problem.

Exit status 0 when the configuration loads, 1 when it has problems (all are printed,
each as ``file: key: message`` with a hint line), so it fits in scripts and CI.  An own
certificate that has expired is a problem; one that expires within 30 days is printed
as a note after the OK line (exit status 0).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .load import ConfError, Problem, check_server_conf


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="server.toml to check")


def _show(p: Problem, label: str = "") -> None:
    where = f"{p.file}: {p.key}: " if p.key else f"{p.file}: "
    print(f"{where}{label}{p.message}")
    if p.hint:
        print(f"    hint: {p.hint}")


def run(args: argparse.Namespace) -> int:
    try:
        conf, notes = check_server_conf(args.file)
    except ConfError as exc:
        n = len(exc.problems)
        print(f"{args.file}: {n} problem{'s' if n != 1 else ''}")
        for p in exc.problems:
            _show(p)
        return 1
    fed = conf.federation
    print(f"{args.file}: OK — server {conf.owner}/{conf.server_code}, "
          f"{len(conf.services)} service{'s' if len(conf.services) != 1 else ''}, "
          f"{len(conf.access)} access rule{'s' if len(conf.access) != 1 else ''}, "
          f"federation with {len(fed.members)} member{'s' if len(fed.members) != 1 else ''}")
    for note in notes:          # still valid, but expiring soon: not a failure
        _show(note, "note: ")
    return 0
