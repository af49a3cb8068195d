"""Looking up elements by tag string, without lxml's ElementPath or QName objects.

Every message passes through these some forty times; a loop over the (few) children
comparing ``{namespace}name`` strings is several times cheaper than ``find``/``findall``
and ``etree.QName``.
"""
from __future__ import annotations

from typing import Optional

from lxml import etree


def first_child(parent: etree._Element, tag: str) -> Optional[etree._Element]:
    """``parent.find(tag)`` for a plain ``{ns}name`` tag."""
    for child in parent:
        if child.tag == tag:
            return child
    return None


def children_named(parent: etree._Element, tag: str) -> list:
    """``parent.findall(tag)`` for a plain ``{ns}name`` tag."""
    return [child for child in parent if child.tag == tag]


def in_namespace(tag: object, namespace: str) -> bool:
    """``etree.QName(tag).namespace == namespace`` for an element's tag (False for
    comments and processing instructions).  A local name holds no "}", so a longer
    namespace that merely starts like ``namespace`` does not pass."""
    if not isinstance(tag, str):
        return False
    prefix = "{" + namespace + "}"
    return tag.startswith(prefix) and "}" not in tag[len(prefix):]
