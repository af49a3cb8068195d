"""The X-Road schemas tunduk serves itself, so clients never need the internet.

``xroad.xsd`` (headers), ``identifiers.xsd`` (identifier types), ``xml.xsd`` (the
``xml:lang`` attribute they use) and ``metaservices.wsdl`` live beside this module.
"""
from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).resolve().parent

#: Files a security server may serve from this directory (nothing else is exposed).
SCHEMA_NAMES = ("xroad.xsd", "identifiers.xsd", "xml.xsd", "metaservices.wsdl")


def schema_path(name: str) -> Path:
    """Path of a bundled schema; refuses names outside :data:`SCHEMA_NAMES`."""
    if name not in SCHEMA_NAMES:
        raise FileNotFoundError(f"no bundled schema named {name!r}")
    return _DIR / name


def schema_bytes(name: str) -> bytes:
    """Content of a bundled schema, for serving over HTTP or loading in memory."""
    return schema_path(name).read_bytes()
