"""A throwaway PostgreSQL cluster for the benchmark.

The tests' cluster code (``tunduk.server.devpg.PgCluster``: initdb + pg_ctl on
127.0.0.1, run as ``nobody`` when we are root), but with fsync on: the benchmark
compares durable message logs (SQLite runs with synchronous=FULL).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Optional


class BenchPostgres:
    """Start with :meth:`start` (returns None and a reason when unavailable)."""

    def __init__(self) -> None:
        self.cluster = None
        self.base: Optional[Path] = None

    def start(self) -> Optional[str]:
        """Start the cluster; return why it could not be started, or None."""
        from tunduk.server.devpg import PgCluster, pg_bin
        bindir = pg_bin()
        if bindir is None:
            return "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)"
        self.base = Path(tempfile.mkdtemp(prefix="tunduk-bench-pg-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        cluster = PgCluster(bindir, self.base, fsync=True)
        try:
            cluster.start()
        except Exception as exc:
            shutil.rmtree(self.base, ignore_errors=True)
            return f"PostgreSQL did not start: {exc}"
        self.cluster = cluster
        return None

    def new_database(self) -> str:
        """DSN of a fresh, empty database."""
        import psycopg2
        name = "bench_" + uuid.uuid4().hex[:12]
        admin = psycopg2.connect(self.cluster.dsn())
        try:
            admin.autocommit = True
            admin.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        return self.cluster.dsn(name)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
