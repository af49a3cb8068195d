"""``tunduk init``: create a development CA, and keys + certificates for a security server.

    tunduk init ca --out pki/
    tunduk init server --ca pki/ --member KG/GOV/70000001 --name "Civil Registry" \\
        --code ss1 --out registry/keys/

Prints file paths, the auth certificate fingerprint and the federation.toml entry that
registers the server.  Private keys are written with mode 0600 and never printed.
Existing keys are kept unless ``--force`` is given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import pki
from .conf.write import toml_string
from .core.errors import XRoadError
from .core.identifiers import MemberId


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True
    ca = sub.add_parser("ca", help="create a development CA (ca.key, ca.pem)")
    ca.add_argument("--out", type=Path, required=True, metavar="DIR",
                    help="directory for ca.key and ca.pem")
    ca.add_argument("--name", default="tunduk development CA", help="CA common name")
    ca.add_argument("--key-type", choices=pki.KEY_TYPES, default="ec")
    ca.add_argument("--force", action="store_true", help="replace an existing CA")

    srv = sub.add_parser("server", help="issue auth (TLS) and signing keys for a server")
    srv.add_argument("--ca", type=Path, required=True, metavar="DIR",
                     help="directory holding ca.key and ca.pem")
    srv.add_argument("--member", required=True, metavar="INSTANCE/CLASS/CODE",
                     help="member that owns the server")
    srv.add_argument("--name", required=True, help="the member's registered name")
    srv.add_argument("--code", required=True, help="server code, unique per member")
    srv.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="directory for auth.key, auth.pem, sign.key, sign.pem")
    srv.add_argument("--key-type", choices=pki.KEY_TYPES, default="rsa")
    srv.add_argument("--address", default="127.0.0.1:8443", metavar="HOST:PORT",
                     help="server proxy address to print in the federation entry")
    srv.add_argument("--force", action="store_true", help="replace existing keys")


def _refuse_existing(paths: list[Path], force: bool) -> bool:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        for p in existing:
            print(f"tunduk init: {p} already exists (use --force to replace it)",
                  file=sys.stderr)
        return True
    return False


def _run_ca(args: argparse.Namespace) -> int:
    out: Path = args.out
    if _refuse_existing([out / "ca.key", out / "ca.pem"], args.force):
        return 1
    key, cert = pki.create_ca(out, args.name, args.key_type)
    print(f"CA private key:  {key}  (mode 0600; keep it off the servers)")
    print(f"CA certificate:  {cert}")
    print(f"fingerprint:     {pki.fingerprint_sha256(cert.read_bytes())}")
    print("\nAdd to federation.toml:")
    print(f"ca_certs = [{toml_string(str(cert.resolve()))}]"
          "   # relative paths are relative to federation.toml")
    return 0


def _run_server(args: argparse.Namespace) -> int:
    try:
        member = MemberId.parse(args.member)
    except (ValueError, XRoadError) as exc:
        print(f"tunduk init: --member: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    ca_key, ca_cert = args.ca / "ca.key", args.ca / "ca.pem"
    for p in (ca_key, ca_cert):
        if not p.is_file():
            print(f"tunduk init: {p} not found (create it with 'tunduk init ca')",
                  file=sys.stderr)
            return 1
    out: Path = args.out
    files = {n: out / n for n in ("auth.key", "auth.pem", "sign.key", "sign.pem")}
    if _refuse_existing(list(files.values()), args.force):
        return 1
    out.mkdir(parents=True, exist_ok=True)
    pki.issue_auth_cert(ca_key, ca_cert, member, args.name, args.code,
                        files["auth.key"], files["auth.pem"], args.key_type)
    pki.issue_sign_cert(ca_key, ca_cert, member, args.name,
                        files["sign.key"], files["sign.pem"], args.key_type)
    fp = pki.fingerprint_sha256(files["auth.pem"].read_bytes())
    for name, p in files.items():
        print(f"{name:9} {p}" + ("  (mode 0600)" if name.endswith(".key") else ""))
    print(f"auth certificate SHA-256: {fp}")
    print("\nRegister the server in federation.toml (shared by every server):")
    print("[[members]]   # if the member is not listed yet")
    print(f"id = {toml_string(str(member))}")
    print(f"name = {toml_string(args.name)}")
    print('subsystems = []   # e.g. ["registry"]')
    print("\n[[servers]]")
    print(f"owner = {toml_string(str(member))}")
    print(f"code = {toml_string(args.code)}")
    print(f"address = {toml_string(args.address)}")
    print(f"auth_certs = [{toml_string(str(files['auth.pem'].resolve()))}]"
          "   # relative paths are relative to federation.toml")
    print(f"# or: auth_fingerprints = [{toml_string(fp)}]")
    return 0


def run(args: argparse.Namespace) -> int:
    return _run_ca(args) if args.what == "ca" else _run_server(args)
