"""Write federation.toml and server.toml from Python values.

Used by tests and the demo to build a federation programmatically.  Plain string
building: the layout matches the documented examples in ``conf/`` (tables first, then
arrays of tables) so a generated file reads like a hand-written one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

_BARE_KEY = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def toml_key(key: str) -> str:
    """A key, quoted only when it needs to be."""
    return key if key and set(key) <= _BARE_KEY else toml_string(key)


def toml_string(text: str) -> str:
    """A TOML basic string.  JSON string escaping is valid TOML basic-string escaping
    for everything json.dumps emits (\\", \\\\, \\n, \\uXXXX ...)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """Inline TOML for a scalar or a list of scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("TOML values here must be finite numbers")
        return repr(value)
    if isinstance(value, (str, Path)):
        return toml_string(str(value))
    if isinstance(value, (list, tuple, frozenset, set)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}"
                               for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, Mapping) for v in value)


def dumps(doc: Mapping[str, Any]) -> str:
    """Serialise a document whose values are scalars, lists of scalars, tables
    (one level) or arrays of tables (one level).  ``None`` values are left out."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping]] = []
    arrays: list[tuple[str, Sequence[Mapping]]] = []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif _is_table_list(value):
            arrays.append((key, value))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{toml_key(key)}]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{toml_key(key)}]]"]
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()
                      if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"


def write_federation_toml(path: Path, *, instance: str, ca_certs: Iterable[Path | str],
                          members: Iterable[Mapping[str, Any]],
                          servers: Iterable[Mapping[str, Any]]) -> Path:
    """Write a federation file.

    ``members``: mappings with ``id``, ``name``, ``subsystems``.
    ``servers``: mappings with ``owner``, ``code``, ``address`` and ``auth_certs``
    (paths) and/or ``auth_fingerprints`` (hex SHA-256).
    Paths are written as given: relative ones are read relative to ``path``'s directory.
    """
    doc = {
        "instance": instance,
        "ca_certs": [str(p) for p in ca_certs],
        "members": [dict(m) for m in members] or None,
        "servers": [dict(s) for s in servers] or None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(doc), encoding="utf-8")
    return path


def write_server_toml(path: Path, *, owner: str, code: str, federation: Path | str,
                      keys: Mapping[str, Path | str], data_dir: Path | str = "var",
                      clients: Sequence[str] = (),
                      listen: Optional[Mapping[str, Any]] = None,
                      services: Sequence[Mapping[str, Any]] = (),
                      access: Sequence[Mapping[str, Any]] = (),
                      messagelog: Optional[Mapping[str, Any]] = None,
                      legacy: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write a server file.  Sections mirror ``conf/server.example.toml``:
    ``keys`` has auth_key/auth_cert/sign_key/sign_cert; ``listen`` client_proxy,
    server_proxy, workers, threads; ``services`` items have subsystem, code, version,
    url or spyne, wsdl_url, timeout, title; ``access`` items service + clients;
    ``legacy`` items path, client, service."""
    doc: dict[str, Any] = {
        "server": {"owner": owner, "code": code, "clients": list(clients),
                   "data_dir": str(data_dir), "federation": str(federation)},
        "listen": dict(listen) if listen else None,
        "keys": {k: str(v) for k, v in keys.items()},
        "messagelog": dict(messagelog) if messagelog else None,
        "services": [dict(s) for s in services] or None,
        "access": [dict(a) for a in access] or None,
        "legacy": [dict(x) for x in legacy] or None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(doc), encoding="utf-8")
    return path
