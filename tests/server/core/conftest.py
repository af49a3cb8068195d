"""A signing CA and the trust anchor over it, for the signature tests of this package."""
from __future__ import annotations

import pytest

from tests.fixtures.certs_for_signing import make_ca
from tunduk.server.core import signing


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(scope="module")
def trust(ca):
    return signing.TrustAnchor.from_pem(ca.cert_pem)
