"""The health document of the message log: states, HTTP status, no secrets."""
from __future__ import annotations

from tunduk.server.core.errors import TIMESTAMPING_FAILED, XRoadError
from tunduk.server.messagelog import NullLog
from tunduk.server.messagelog.health import health, mask_secrets


class Log:
    """A message log double: the real ones are exercised in tests/server/edges."""

    def __init__(self, status: dict, refuse: str | None = None) -> None:
        self._status, self._refuse = status, refuse

    def status(self) -> dict:
        return dict(self._status)

    def check_accepting(self) -> None:
        if self._refuse:
            raise XRoadError(TIMESTAMPING_FAILED, self._refuse)


def test_masks_dsn_and_url_passwords():
    assert mask_secrets("host=db password=s3cr3t user=x") == "host=db password=*** user=x"
    assert mask_secrets("password = 'a b\\'c' port=5") == "password = *** port=5"
    assert mask_secrets("postgresql://ml:s3cr3t@db:5432/log") == \
        "postgresql://ml:***@db:5432/log"
    assert "s3cr3t" not in mask_secrets("x postgres://u:s3cr3t@h/d y")


def test_null_log_is_ok():
    assert health(NullLog()) == (200, {"status": "ok", "accepting": True,
                                       "messagelog": {"backend": "off"}})


def test_refusing_is_503_and_error_is_masked():
    status, doc = health(Log({"backend": "postgresql", "timestamping": "refusing",
                              "last_error": "connect password=hunter2 failed"},
                             refuse="time-stamping has failed for 99 s"))
    assert status == 503 and doc["accepting"] is False and doc["status"] == "failing"
    assert doc["refusing"].startswith("TimestampingFailed")
    assert "hunter2" not in str(doc)


def test_unreachable_store_is_503():
    status, doc = health(Log({"backend": "sqlite", "read_error": "cannot read"}))
    assert status == 503 and doc["status"] == "failing"


def test_failing_within_grace_is_200_but_failing():
    status, doc = health(Log({"backend": "sqlite", "timestamping": "failing"}))
    assert status == 200 and doc["status"] == "failing" and doc["accepting"] is True
