"""The own certificates as ``/healthz`` shows them: a server whose signing or TLS
certificate expired refuses nothing itself, but every peer refuses it, so readiness
says so (and warns ahead, as check-conf does).  No I/O."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from cryptography import x509

from ..conf.load import EXPIRY_NOTICE_DAYS


def certificate_health(certs: dict[str, x509.Certificate], now: datetime
                       ) -> tuple[Optional[str], dict]:
    """(why exchanges fail, or None; the document: expiry and state of each)."""
    doc, failing = {}, None
    for name, cert in certs.items():
        end, start = cert.not_valid_after_utc, cert.not_valid_before_utc
        if now > end or now < start:
            state = "expired" if now > end else "not yet valid"
            failing = failing or (f"the {name} certificate is {state} "
                                  f"(valid {start:%Y-%m-%d} to {end:%Y-%m-%d}): peers "
                                  "refuse this server; renew it")
        elif end - now <= timedelta(days=EXPIRY_NOTICE_DAYS):
            state = "expiring"
        else:
            state = "ok"
        doc[name] = {"not_after": end.isoformat(), "state": state}
    return failing, doc
