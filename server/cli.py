"""The ``tunduk`` command.  Each subcommand lives in its own module, imported lazily so
that ``tunduk check-conf`` does not pay for loading the message log or spyne."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help).  Each module has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "run": ("tunduk.server.run_cmd", "run a security server from its configuration file"),
    "demo": ("tunduk.server.demo", "run a two-agency federation on loopback"),
    "init": ("tunduk.server.pki_cli", "create a development CA and security server keys"),
    "check-conf": ("tunduk.server.conf.check", "check a configuration file and report every problem"),
    "log": ("tunduk.server.messagelog.cli", "archive, verify, show and search the message log"),
    "tsa": ("tunduk.server.messagelog.tsa_server", "run a small RFC 3161 time-stamping authority"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunduk", description="tunduk: X-Road style security server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (modname, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=modname)
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"tunduk {args.command}: not available in this build", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
