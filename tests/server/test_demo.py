"""The README's first command: the demo runs a real exchange and exits 0."""
from __future__ import annotations

from tunduk.server.cli import main


def test_demo_tells_the_story_and_succeeds(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "getBirthRecordResponse" in out and "firstName=Aibek" in out
    assert "getResidenceRecordResponse" in out
    # each hop reported from both servers' message logs
    assert out.count("verified the signature of KG/GOV/70000002 (Public Service Centre)") == 2
    assert out.count("verified the signature of KG/GOV/70000001 (Civil Registry)") == 2
    assert "fault Server.ServerProxy.AccessDenied" in out
    assert "demo completed" in out
    assert "PRIVATE KEY" not in out


def test_demo_curl_command_is_a_complete_request(tmp_path):
    from tunduk.server.demo import Demo, curl_command
    demo = Demo(tmp_path, "ec")
    demo.start()
    try:
        import shlex
        import subprocess
        cmd = curl_command(demo)
        assert cmd.startswith("curl ") and "<xrd:protocolVersion>4.0" in cmd
        out = subprocess.run(shlex.split(cmd), capture_output=True, timeout=30).stdout
        assert b"getBirthRecordResponse" in out and b"Aibek" in out
    finally:
        demo.stop()
