"""Tag-string lookups used on every message instead of find/findall/QName."""
from __future__ import annotations

from lxml import etree

from tunduk.server.core.tags import children_named, first_child, in_namespace

NS = "http://x-road.eu/xsd/xroad.xsd"


def test_lookups_agree_with_lxml():
    root = etree.fromstring(f'<r xmlns:x="{NS}"><!-- c --><x:a>1</x:a><b/><x:a>2</x:a></r>'
                            .encode())
    tag = f"{{{NS}}}a"
    assert first_child(root, tag) is root.find(tag)
    assert children_named(root, tag) == root.findall(tag)
    assert first_child(root, "{urn:none}z") is None and children_named(root, "b") != []


def test_in_namespace_needs_the_exact_namespace():
    assert in_namespace(f"{{{NS}}}client", NS)
    assert not in_namespace(f"{{{NS}x}}client", NS)          # longer namespace
    assert not in_namespace("client", NS)
    assert not in_namespace(etree.Comment, NS)               # comment/PI tags
