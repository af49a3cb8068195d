"""Loading server.toml + federation.toml: a good configuration, and every class of
mistake reported with its file and key, all at once."""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.fixtures.certs_for_signing import issue_on_disk
from tunduk.server import pki
from tunduk.server.cli import main
from tunduk.server.conf.load import ConfError, Problem, load_federation, load_server_conf
from tunduk.server.conf.write import dumps
from tunduk.server.core.identifiers import ClientId, MemberId, ServiceId


def _read(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def _problems(path: Path) -> list[Problem]:
    with pytest.raises(ConfError) as info:
        load_server_conf(path)
    assert info.value.problems, "ConfError without problems"
    return info.value.problems


def _find(problems: list[Problem], file: Path, key: str) -> Problem:
    for p in problems:
        if p.file == str(file) and p.key == key:
            return p
    raise AssertionError(f"no problem at {file}: {key}; got:\n"
                         + "\n".join(str(p) for p in problems))


def test_good_configuration_loads(make_federation):
    fed = make_federation(provider_ports=(18080, 18443), consumer_ports=(28080, 28443))
    conf = load_server_conf(fed.provider.server_toml)
    owner = MemberId.parse("KG/GOV/70000001")
    assert conf.owner == owner and conf.server_code == "ss1"
    assert conf.clients == (ClientId.parse("KG/GOV/70000001"),
                            ClientId.parse("KG/GOV/70000001/registry"))
    assert conf.listen.client_proxy == ("127.0.0.1", 18080)
    assert conf.listen.server_proxy == ("127.0.0.1", 18443)
    # services are keyed WITHOUT version; the LocalService keeps the full id
    key = ServiceId.parse("KG/GOV/70000001/registry/getBirthRecord")
    assert list(conf.services) == [key]
    svc = conf.services[key]
    assert svc.id == ServiceId.parse("KG/GOV/70000001/registry/getBirthRecord/v1")
    assert svc.backend_url == "http://127.0.0.1:9/" and svc.spyne is None
    assert svc.timeout == 30.0
    assert conf.access[0].service == key
    assert conf.access[0].clients == frozenset({ClientId.parse("KG/GOV/70000002/centre")})
    # relative paths resolved against the file's directory
    assert conf.keys.sign_key == fed.provider.dir / "sign.key"
    assert conf.data_dir == fed.provider.dir / "var"
    assert conf.messagelog.backend == "sqlite"
    assert conf.messagelog.path == fed.provider.dir / "var" / "messagelog.sqlite3"
    assert conf.source == fed.provider.server_toml.resolve()
    # the federation
    f = conf.federation
    assert f.instance == "KG" and len(f.members) == 2
    assert f.members[owner].subsystems == ("registry",)
    ss = f.servers_of(MemberId.parse("KG/GOV/70000002"))
    assert ss[0].address == "127.0.0.1:28443"
    assert ss[0].auth_cert_sha256 == {fed.consumer.auth_fingerprint}
    assert f.ca_certs_pem == fed.ca.cert.read_bytes()
    assert conf.is_own_client(ClientId.parse("KG/GOV/70000001/registry"))


def test_consumer_and_rsa_keys_and_spyne_backend_load(make_federation):
    fed = make_federation(key_type="rsa", services=[
        {"subsystem": "registry", "code": "getBirthRecord",
         "spyne": "tunduk.server.services.civil_registry:application", "timeout": 5}])
    conf = load_server_conf(fed.provider.server_toml)
    svc = next(iter(conf.services.values()))
    assert svc.spyne == "tunduk.server.services.civil_registry:application"
    assert svc.backend_url is None and svc.timeout == 5.0
    assert load_server_conf(fed.consumer.server_toml).services == {}


def test_load_federation_alone(make_federation):
    fed = make_federation()
    f = load_federation(fed.federation_toml)
    assert {str(m) for m in f.members} == {"KG/GOV/70000001", "KG/GOV/70000002"}
    assert f.has_client(ClientId.parse("KG/GOV/70000002/centre"))
    assert not f.has_client(ClientId.parse("KG/GOV/70000002/other"))


def test_legacy_aliases_and_postgresql_log_load(make_federation, dev_ca):
    fed = make_federation(
        messagelog={"backend": "postgresql", "dsn": "postgresql://x@localhost/db",
                    "tsa_url": "http://127.0.0.1:3180/", "timestamp_batch": 5,
                    "tsa_cert": str(dev_ca.cert)},
        consumer_legacy=[{"path": "/legacy/birth", "client": "KG/GOV/70000002/centre",
                          "service": "KG/GOV/70000001/registry/getBirthRecord/v1"}])
    conf = load_server_conf(fed.consumer.server_toml)
    assert conf.messagelog.backend == "postgresql" and conf.messagelog.path is None
    assert conf.messagelog.timestamp_batch == 5
    assert conf.messagelog.tsa_cert_der and conf.messagelog.tsa_cert_der[0] == 0x30
    assert conf.legacy[0].path == "/legacy/birth"
    assert conf.legacy[0].service.version == "v1"


def test_limits_and_connection_settings_load(make_federation):
    import tomllib
    fed = make_federation(listen={"max_connections": 100, "head_timeout": 2.5,
                                  "peer_connection_max_age": 5})
    doc = tomllib.loads(fed.provider.server_toml.read_text())
    doc["limits"] = {"max_attributes": 8, "max_depth": 40}
    fed.provider.server_toml.write_text(dumps(doc))
    conf = load_server_conf(fed.provider.server_toml)
    assert (conf.listen.max_connections, conf.listen.head_timeout,
            conf.listen.peer_connection_max_age) == (100, 2.5, 5)
    assert conf.listen.max_connections_per_peer == 512
    assert (conf.xml_limits.max_attributes, conf.xml_limits.max_depth,
            conf.xml_limits.max_namespaces) == (8, 40, 64)


def test_tsa_url_without_pinned_tsa_cert_is_a_problem(make_federation):
    fed = make_federation(messagelog={"backend": "sqlite", "tsa_url": "http://127.0.0.1:3180/"})
    with pytest.raises(ConfError) as ei:
        load_server_conf(fed.consumer.server_toml)
    assert any(p.key == "messagelog.tsa_cert" for p in ei.value.problems)


# --------------------------------------------------------------------------- bad configs
# Each case edits the provider's server.toml (doc "s") or federation.toml (doc "f") and
# names the file ("server"/"federation") and key of the expected problem.

def _set(doc, path, value):
    *head, last = path
    for k in head:
        doc = doc.setdefault(k, {}) if isinstance(doc, dict) else doc[k]
    doc[last] = value


def _auth_cert_without_tls_usages(fed):
    """A registered auth certificate with digitalSignature but no extended key usage."""
    d = fed.provider.dir
    issue_on_disk(fed.ca.key, fed.ca.cert, "KG/GOV/70000001", d / "plain.key",
                  d / "plain.pem", non_repudiation=False, tls=False)


def _other_ca_sign_cert(fed, tmp):
    key, cert = pki.create_ca(tmp / "other-ca")
    pki.issue_sign_cert(key, cert, MemberId.parse("KG/GOV/70000001"), "Civil Registry",
                        fed.provider.dir / "rogue.key", fed.provider.dir / "rogue.pem", "ec")


CASES = {
    "limit below one": (lambda s, f, x: _set(s, ["limits", "max_attributes"], 0),
                        "server", "limits.max_attributes", "must be at least 1"),
    "unknown limit": (lambda s, f, x: _set(s, ["limits", "max_text"], 5),
                      "server", "limits.max_text", "unknown key"),
    "negative head timeout": (lambda s, f, x: _set(s, ["listen", "head_timeout"], -1),
                              "server", "listen.head_timeout", "must be positive"),
    "bad owner id": (lambda s, f, x: _set(s, ["server", "owner"], "KG/GOV"),
                     "server", "server.owner", "bad member id"),
    "bad characters in owner": (lambda s, f, x: _set(s, ["server", "owner"], "KG/GOV/7 1"),
                                "server", "server.owner", "may only contain"),
    "owner not a member": (lambda s, f, x: _set(s, ["server", "owner"], "KG/GOV/70000099"),
                           "server", "server.owner", "not a member of the federation"),
    "unregistered server": (lambda s, f, x: _set(s, ["server", "code"], "ss9"),
                            "server", "server.code", "not registered in the federation"),
    "unknown subsystem": (lambda s, f, x: _set(s, ["server", "clients"], ["nope"]),
                          "server", "server.clients[0]", "has no subsystem 'nope'"),
    "missing federation": (lambda s, f, x: _set(s, ["server", "federation"], "nope.toml"),
                           "server", "server.federation", "file not found"),
    "missing required key": (lambda s, f, x: s["server"].pop("code"),
                             "server", "server.code", "missing required key"),
    "bad listen": (lambda s, f, x: _set(s, ["listen", "client_proxy"], "localhost"),
                   "server", "listen.client_proxy", "expected HOST:PORT"),
    "port out of range": (lambda s, f, x: _set(s, ["listen", "server_proxy"], "127.0.0.1:70000"),
                          "server", "listen.server_proxy", "out of range"),
    "wrong type": (lambda s, f, x: _set(s, ["listen", "workers"], "2"),
                   "server", "listen.workers", "expected integer, got string"),
    "removed engine key": (lambda s, f, x: _set(s, ["listen", "engine"], "threads"),
                           "server", "listen.engine",
                           "this key was removed: every request is served on the event "
                           "loop now"),
    "missing key file": (lambda s, f, x: _set(s, ["keys", "sign_cert"], "missing.pem"),
                         "server", "keys.sign_cert", "file not found"),
    "not a certificate": (lambda s, f, x: _set(s, ["keys", "sign_cert"], "server.toml"),
                          "server", "keys.sign_cert", "not a certificate"),
    "key does not match cert": (lambda s, f, x: _set(s, ["keys", "sign_key"], "auth.key"),
                                "server", "keys.sign_key", "does not match the certificate"),
    "sign cert of another member": (
        lambda s, f, x: (_set(s, ["keys", "sign_cert"], "../centre/sign.pem"),
                         _set(s, ["keys", "sign_key"], "../centre/sign.key")),
        "server", "keys.sign_cert", "serialNumber is 'KG/GOV/70000002'"),
    "auth cert not registered": (
        lambda s, f, x: (_set(s, ["keys", "auth_cert"], "../centre/auth.pem"),
                         _set(s, ["keys", "auth_key"], "../centre/auth.key")),
        "server", "keys.auth_cert", "is not registered for server"),
    "sign cert is the auth cert": (
        lambda s, f, x: (_set(s, ["keys", "sign_cert"], "auth.pem"),
                         _set(s, ["keys", "sign_key"], "auth.key")),
        "server", "keys.sign_cert", "is the same certificate as keys.auth_cert"),
    "sign and auth certs swapped": (
        lambda s, f, x: s.__setitem__("keys", {
            "auth_key": "sign.key", "auth_cert": "sign.pem",
            "sign_key": "auth.key", "sign_cert": "auth.pem"}),
        "server", "keys.sign_cert", "has no nonRepudiation (contentCommitment) key usage"),
    "sign cert registered as an auth cert": (
        lambda s, f, x: f["servers"][1]["auth_certs"].append("registry/sign.pem"),
        "server", "keys.sign_cert",
        "is registered as the TLS (auth) certificate of SERVER:KG/GOV/70000002/ss1"),
    "auth cert without TLS usages": (
        lambda s, f, x: (_auth_cert_without_tls_usages(x[0]),
                         _set(s, ["keys", "auth_cert"], "plain.pem"),
                         _set(s, ["keys", "auth_key"], "plain.key"),
                         _set(f, ["servers", 0, "auth_certs"], ["registry/plain.pem"])),
        "server", "keys.auth_cert", "has no extended key usage serverAuth and clientAuth"),
    "cert from a foreign CA": (
        lambda s, f, x: (_other_ca_sign_cert(*x), _set(s, ["keys", "sign_cert"], "rogue.pem"),
                         _set(s, ["keys", "sign_key"], "rogue.key")),
        "server", "keys.sign_cert", "not issued by a CA"),
    "key readable by others": (lambda s, f, x: (x[0].provider.sign_key.chmod(0o644)),
                               "server", "keys.sign_key", "readable by others"),
    "service of foreign subsystem": (lambda s, f, x: _set(s, ["services", 0, "subsystem"], "centre"),
                                     "server", "services[0].subsystem", "not one of this server's clients"),
    "url and spyne": (lambda s, f, x: _set(s, ["services", 0, "spyne"], "a.b:app"),
                      "server", "services[0]", "has both url and spyne"),
    "no backend": (lambda s, f, x: s["services"][0].pop("url"),
                   "server", "services[0]", "needs exactly one backend"),
    "bad url": (lambda s, f, x: _set(s, ["services", 0, "url"], "ftp://x/"),
                "server", "services[0].url", "not an http(s) URL"),
    "bad spyne ref": (lambda s, f, x: (s["services"][0].pop("url"),
                                       _set(s, ["services", 0, "spyne"], "no colon")),
                      "server", "services[0].spyne", "module:attribute"),
    "duplicate service": (lambda s, f, x: s["services"].append(dict(s["services"][0], version="v2")),
                          "server", "services[1].code", "configured twice"),
    "access to unknown service": (lambda s, f, x: _set(s, ["access", 0, "service"], "registry/getDeath"),
                                  "server", "access[0].service", "unknown service"),
    "access for foreign service": (
        lambda s, f, x: _set(s, ["access", 0, "service"], "KG/GOV/70000002/centre/x"),
        "server", "access[0].service", "not provided by this server's owner"),
    "access client unknown": (lambda s, f, x: _set(s, ["access", 0, "clients"], ["KG/GOV/70000099"]),
                              "server", "access[0].clients[0]", "not known to the federation"),
    "access client bad": (lambda s, f, x: _set(s, ["access", 0, "clients"], ["KG"]),
                          "server", "access[0].clients[0]", "bad client id"),
    "top-level typo": (lambda s, f, x: s.__setitem__("acces", [s.pop("access")[0]]),
                       "server", "acces", "unknown key 'acces' (did you mean 'access'?)"),
    "nested typo": (lambda s, f, x: _set(s, ["services", 0, "tiemout"], 3),
                    "server", "services[0].tiemout", "did you mean 'timeout'?"),
    "bad log backend": (lambda s, f, x: s.__setitem__("messagelog", {"backend": "sqlit"}),
                        "server", "messagelog.backend", "did you mean 'sqlite'?"),
    "postgresql without dsn": (lambda s, f, x: s.__setitem__("messagelog", {"backend": "postgresql"}),
                               "server", "messagelog.dsn", "needs a dsn"),
    "legacy path without slash": (
        lambda s, f, x: s.__setitem__("legacy", [{"path": "legacy", "client": "KG/GOV/70000001/registry",
                                                  "service": "KG/GOV/70000002/centre/x"}]),
        "server", "legacy[0].path", "must start with '/'"),
    "legacy path twice": (
        lambda s, f, x: s.__setitem__("legacy", [
            {"path": "/a", "client": "KG/GOV/70000001/registry", "service": "KG/GOV/70000002/centre/x"},
            {"path": "/a", "client": "KG/GOV/70000001/registry", "service": "KG/GOV/70000002/centre/y"}]),
        "server", "legacy[1].path", "used twice"),
    "legacy client not ours": (
        lambda s, f, x: s.__setitem__("legacy", [{"path": "/a", "client": "KG/GOV/70000002/centre",
                                                  "service": "KG/GOV/70000002/centre/x"}]),
        "server", "legacy[0].client", "not one of this server's clients"),
    # --- federation.toml
    "federation member id": (lambda s, f, x: _set(f, ["members", 0, "id"], "KG/GOV"),
                             "federation", "members[0].id", "bad member id"),
    "federation member other instance": (lambda s, f, x: _set(f, ["members", 1, "id"], "EE/GOV/1"),
                                         "federation", "members[1].id", "not in instance 'KG'"),
    "federation server owner": (lambda s, f, x: _set(f, ["servers", 1, "owner"], "KG/GOV/9"),
                                "federation", "servers[1].owner", "not a member"),
    "federation address": (lambda s, f, x: _set(f, ["servers", 1, "address"], "nowhere"),
                           "federation", "servers[1].address", "expected HOST:PORT"),
    "federation ca missing": (lambda s, f, x: _set(f, ["ca_certs"], ["nope.pem"]),
                              "federation", "ca_certs[0]", "file not found"),
    "federation ca not a CA": (lambda s, f, x: _set(f, ["ca_certs"], ["registry/sign.pem"]),
                               "federation", "ca_certs[0]", "is not a CA certificate"),
    "federation typo": (lambda s, f, x: f.__setitem__("member", f.pop("members")),
                        "federation", "member", "did you mean 'members'?"),
    "federation fingerprint": (lambda s, f, x: _set(f, ["servers", 1, "auth_fingerprints"], ["abc"]),
                               "federation", "servers[1].auth_fingerprints[0]", "not a SHA-256"),
    "federation duplicate server": (lambda s, f, x: f["servers"].append(dict(f["servers"][0])),
                                    "federation", "servers[2].code", "listed twice"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_configuration_reports_file_and_key(make_federation, tmp_path, case):
    mutate, which, key, fragment = CASES[case]
    fed = make_federation()
    s, f = _read(fed.provider.server_toml), _read(fed.federation_toml)
    mutate(s, f, (fed, tmp_path))
    fed.provider.server_toml.write_text(dumps(s))
    fed.federation_toml.write_text(dumps(f))
    problems = _problems(fed.provider.server_toml)
    file = fed.provider.server_toml if which == "server" else fed.federation_toml.resolve()
    p = _find(problems, file, key)
    assert fragment in p.message


def test_every_problem_is_reported_together_across_both_files(make_federation):
    fed = make_federation()
    s, f = _read(fed.provider.server_toml), _read(fed.federation_toml)
    s["listen"]["workers"] = 0
    s["services"][0]["tiemout"] = 3
    s["access"][0]["clients"] = ["KG/GOV/70000099/x"]
    f["servers"][1]["address"] = "bad"
    fed.provider.server_toml.write_text(dumps(s))
    fed.federation_toml.write_text(dumps(f))
    problems = _problems(fed.provider.server_toml)
    _find(problems, fed.provider.server_toml, "listen.workers")
    _find(problems, fed.provider.server_toml, "services[0].tiemout")
    _find(problems, fed.provider.server_toml, "access[0].clients[0]")
    _find(problems, fed.federation_toml.resolve(), "servers[1].address")
    assert len(problems) == 4


def test_conf_error_lists_each_problem_with_file_key_and_hint(make_federation):
    fed = make_federation()
    s = _read(fed.provider.server_toml)
    s["server"]["cod"] = s["server"].pop("code")
    fed.provider.server_toml.write_text(dumps(s))
    with pytest.raises(ConfError) as info:
        load_server_conf(fed.provider.server_toml)
    text = str(info.value)
    lines = text.splitlines()
    assert len(lines) == len(info.value.problems) == 2
    assert f"{fed.provider.server_toml}: server.cod: unknown key 'cod' (did you mean 'code'?)" \
        " (hint: known keys: clients, code, data_dir, federation, owner)" in lines
    assert any(line.startswith(f"{fed.provider.server_toml}: server.code: missing required key")
               for line in lines)


def test_toml_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "server.toml"
    bad.write_text("[server\nowner = 1\n")
    problems = _problems(bad)
    assert len(problems) == 1 and "TOML syntax error" in problems[0].message
    assert problems[0].file == str(bad)
    missing = _problems(tmp_path / "none.toml")
    assert missing[0].message == "file not found"


def test_load_federation_raises_with_all_problems(make_federation):
    fed = make_federation()
    f = _read(fed.federation_toml)
    f["members"][0]["id"] = "bad"
    f["instance"] = 5
    fed.federation_toml.write_text(dumps(f))
    with pytest.raises(ConfError) as info:
        load_federation(fed.federation_toml)
    keys = {p.key for p in info.value.problems}
    assert {"instance", "members[0].id"} <= keys


# ------------------------------------- the signing and the TLS certificate, each its own

def test_swapped_certificates_are_reported_as_swapped(make_federation):
    fed = make_federation()
    s = _read(fed.provider.server_toml)
    s["keys"] = {"auth_key": "sign.key", "auth_cert": "sign.pem",
                 "sign_key": "auth.key", "sign_cert": "auth.pem"}
    fed.provider.server_toml.write_text(dumps(s))
    problems = _problems(fed.provider.server_toml)
    for key in ("keys.sign_cert", "keys.auth_cert"):
        assert any(p.key == key and "look swapped" in p.hint for p in problems), problems
    # and the TLS certificate is named as a registered auth certificate
    assert any("is registered as the TLS (auth) certificate" in p.message
               for p in problems)


# ------------------------------------------- the own certificates' dates (check-conf, run)

def _reissue(fed, kind: str, *, days: int, ago: int = 0) -> None:
    """Replace the provider's ``kind`` certificate (and key) with one valid ``days``
    from ``ago`` days ago; the federation names auth.pem, so it stays registered."""
    p = fed.provider
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=ago, minutes=5)
    if kind == "auth":
        pki.issue_auth_cert(fed.ca.key, fed.ca.cert, p.member, p.member_name, p.code,
                            p.auth_key, p.auth_cert, "ec", not_before=start, days=days)
    else:
        pki.issue_sign_cert(fed.ca.key, fed.ca.cert, p.member, p.member_name,
                            p.sign_key, p.sign_cert, "ec", not_before=start, days=days)


@pytest.mark.parametrize("kind", ["sign", "auth"])
def test_check_conf_reports_an_expired_own_certificate(make_federation, capsys, kind):
    fed = make_federation()
    _reissue(fed, kind, days=1, ago=3)
    assert main(["check-conf", str(fed.provider.server_toml)]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"^{re.escape(str(fed.provider.server_toml))}: keys\.{kind}_cert: "
                     r"certificate .* expired on \d{4}-\d\d-\d\d", out, re.M), out
    assert "hint: issue a new" in out
    # `tunduk log --conf` still reads the configuration of a server whose certificate
    # expired: only check-conf and run look at the dates
    assert load_server_conf(fed.provider.server_toml).owner == fed.provider.member


@pytest.mark.parametrize("kind", ["sign", "auth"])
def test_check_conf_notes_an_own_certificate_expiring_within_30_days(
        make_federation, capsys, kind):
    fed = make_federation()
    _reissue(fed, kind, days=12, ago=2)
    assert main(["check-conf", str(fed.provider.server_toml)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ": OK — server KG/GOV/70000001/ss1" in lines[0]
    assert re.fullmatch(rf"{re.escape(str(fed.provider.server_toml))}: keys\.{kind}_cert: "
                        r"note: certificate .* expires on .* UTC \(in 9 days\)", lines[1]), \
        lines
    assert lines[2].startswith("    hint: issue a new") and lines[2].endswith("before then")
    assert len(lines) == 3


def test_certificates_valid_for_longer_get_no_note(make_federation, capsys):
    fed = make_federation()
    _reissue(fed, "sign", days=32)
    assert main(["check-conf", str(fed.provider.server_toml)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_run_refuses_to_start_with_an_expired_own_certificate(make_federation):
    fed = make_federation()
    _reissue(fed, "auth", days=1, ago=3)
    # (before the check, run would have started serving: the timeout ends it then)
    proc = subprocess.run([sys.executable, "-m", "tunduk.server.cli", "run",
                           str(fed.provider.server_toml)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    problem, fix = proc.stderr.splitlines()
    assert problem.startswith(f"{fed.provider.server_toml}: keys.auth_cert: certificate ")
    assert " expired on " in problem and "(hint: issue a new TLS certificate" in problem
    assert fix.startswith("Fix the configuration (tunduk check-conf ")
    assert proc.stdout == ""
