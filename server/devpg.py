"""A throwaway PostgreSQL cluster (real server, loopback, trust auth) for tests and
the benchmark: initdb/pg_ctl from /usr/lib/postgresql/*/bin.  initdb refuses to run
as root, so as root the cluster runs as ``nobody`` in a directory it owns.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from .devfed import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


class PgCluster:
    """initdb + pg_ctl in ``base``; ``fsync=False`` for tests (fast, not crash-safe)."""

    def __init__(self, bindir: Path, base: Path, *, fsync: bool = False) -> None:
        self.bindir = bindir
        self.fsync = fsync
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.port = free_port()
        self.as_nobody = os.geteuid() == 0

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", "nobody", "--", *cmd] if self.as_nobody else cmd

    def _run(self, *args: str) -> None:
        r = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120,
                           cwd=str(self.base))
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stderr or r.stdout}")

    def start(self) -> None:
        self.sock.mkdir()
        if self.as_nobody:
            import pwd
            nobody = pwd.getpwnam("nobody")
            for p in (self.base, self.sock):
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l",
                  str(self.base / "log"), "-w", "-t", "60", "start")

    def _options(self) -> str:
        return (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.sock} "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=60")

    def stop(self) -> None:
        subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                                 "stop"), capture_output=True, timeout=60)

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l",
                  str(self.base / "log"), "-w", "-t", "60", "start")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"
