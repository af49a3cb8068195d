"""``tunduk check-conf``: summary on success, every problem and hint on failure, exit codes;
and the commented example files load once their keys exist."""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from tunduk.server.cli import main
from tunduk.server.conf.write import dumps

REPO = Path(__file__).resolve().parents[3]


def test_good_configuration_prints_summary_and_exits_0(make_federation, capsys):
    fed = make_federation()
    assert main(["check-conf", str(fed.provider.server_toml)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"{fed.provider.server_toml}: OK — server KG/GOV/70000001/ss1, "
                           "1 service, 1 access rule, federation with 2 members")


def test_problems_are_all_printed_with_hints_and_exit_1(make_federation, capsys):
    fed = make_federation()
    s = tomllib.loads(fed.provider.server_toml.read_text())
    s["acces"] = s.pop("access")
    s["messagelog"] = {"backend": "postgresql"}
    fed.provider.server_toml.write_text(dumps(s))
    assert main(["check-conf", str(fed.provider.server_toml)]) == 1
    out = capsys.readouterr().out.splitlines()
    path = str(fed.provider.server_toml)
    assert out[0] == f"{path}: 2 problems"
    assert f"{path}: acces: unknown key 'acces' (did you mean 'access'?)" in out
    assert f"{path}: messagelog.dsn: backend postgresql needs a dsn" in out
    hints = [line for line in out if line.startswith("    hint: ")]
    assert len(hints) == 2
    assert "OK" not in "\n".join(out)


def test_missing_file_exits_1(tmp_path, capsys):
    assert main(["check-conf", str(tmp_path / "nope.toml")]) == 1
    assert "file not found" in capsys.readouterr().out


def test_example_files_are_valid_once_keys_exist(tmp_path, capsys):
    """conf/*.example.toml document every key; with keys from 'tunduk init' in the
    places they name, they load as they are."""
    shutil.copy(REPO / "conf" / "server.example.toml", tmp_path / "server.toml")
    shutil.copy(REPO / "conf" / "federation.example.toml", tmp_path / "federation.toml")
    assert main(["init", "ca", "--out", str(tmp_path / "pki")]) == 0
    for member, name, sub in (("KG/GOV/70000001", "Civil Registry", "registry"),
                              ("KG/GOV/70000002", "Public Service Centre", "centre")):
        assert main(["init", "server", "--ca", str(tmp_path / "pki"), "--member", member,
                     "--name", name, "--code", "ss1", "--out", str(tmp_path / sub / "keys"),
                     "--key-type", "ec"]) == 0
    capsys.readouterr()
    assert main(["check-conf", str(tmp_path / "server.toml")]) == 0
    assert "OK — server KG/GOV/70000001/ss1, 1 service" in capsys.readouterr().out
