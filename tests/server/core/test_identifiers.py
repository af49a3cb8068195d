"""Identifier values: the allowed characters, and no line break slipping through."""
from __future__ import annotations

import pytest

from tunduk.server.core import errors
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.identifiers import ClientId, MemberId, ServiceId


def test_well_formed_identifiers_parse_and_print_back():
    assert str(ClientId.parse("KG/GOV/70000002/centre")) == "KG/GOV/70000002/centre"
    assert str(MemberId.parse("KG/COM/1-2.3")) == "KG/COM/1-2.3"
    s = ServiceId.parse("KG/GOV/70000001/registry/getPerson/v1")
    assert (s.service_code, s.version) == ("getPerson", "v1")


@pytest.mark.parametrize("text", ["KG\n/GOV/1", "KG/GOV\n/1/sub", "KG/GOV/1/sub\n/x",
                                  "KG/G OV/1", "KG/GOV/1ü"])
def test_line_break_or_foreign_character_inside_a_part_is_refused(text):
    with pytest.raises((XRoadError, ValueError)) as ei:
        ClientId.parse(text)
    if isinstance(ei.value, XRoadError):
        assert ei.value.code == errors.INVALID_CLIENT_IDENTIFIER
