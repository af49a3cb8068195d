"""The message pipeline (server/core) stays free of sockets, WSGI servers and databases."""
from __future__ import annotations

import subprocess
import sys

# (``socket`` itself is not listed: cryptography.x509 pulls it in through email.utils.)
FORBIDDEN = ("http.client", "http.server", "wsgiref", "ssl", "cheroot", "sqlite3", "psycopg2",
             "urllib.request", "zeep", "spyne", "requests",
             "tunduk.server.edges", "tunduk.server.node")


def test_core_imports_no_io_modules():
    code = (
        "import sys, pkgutil, importlib\n"
        "import tunduk.server.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('tunduk.server.core.' + m.name)\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"server/core imports I/O modules: {out}"
