"""X-Road identifiers as value objects: parse, print, and read/write their XML form.

Clients are MEMBER or SUBSYSTEM identifiers, services are SERVICE identifiers; both
print in the familiar ``INSTANCE/CLASS/CODE[/SUBSYSTEM][/SERVICE[/VERSION]]`` form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from lxml import etree

from . import errors

XROAD_NS = "http://x-road.eu/xsd/xroad.xsd"
ID_NS = "http://x-road.eu/xsd/identifiers"
_OBJECT_TYPE = f"{{{ID_NS}}}objectType"
_VALUE = re.compile(r"[A-Za-z0-9'()+,\-.=?]+\Z")
_FIELDS_CLIENT = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode")
_CLIENT_FIELD_SET = frozenset(_FIELDS_CLIENT)
_SERVICE_FIELD_SET = frozenset(_FIELDS_CLIENT + ("serviceCode", "serviceVersion"))


def _check_value(value: str, what: str, code: str) -> str:
    if not _VALUE.match(value):
        raise errors.XRoadError(
            code, f"{what} {value!r} may only contain letters, digits and '()+,-.=?")
    return value


@dataclass(frozen=True, slots=True)
class MemberId:
    instance: str
    member_class: str
    member_code: str

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.member_code}"

    @classmethod
    def parse(cls, text: str) -> "MemberId":
        parts = text.strip().split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"expected INSTANCE/CLASS/CODE, got {text!r}")
        for p in parts:
            _check_value(p, "identifier part", errors.INVALID_CLIENT_IDENTIFIER)
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class ClientId:
    """A member (``subsystem`` is None) or one of its subsystems."""

    instance: str
    member_class: str
    member_code: str
    subsystem: Optional[str] = None

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.member_code)

    @property
    def object_type(self) -> str:
        return "SUBSYSTEM" if self.subsystem else "MEMBER"

    def __str__(self) -> str:
        base = f"{self.instance}/{self.member_class}/{self.member_code}"
        return f"{base}/{self.subsystem}" if self.subsystem else base

    @classmethod
    def parse(cls, text: str) -> "ClientId":
        parts = text.strip().split("/")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(f"expected INSTANCE/CLASS/CODE[/SUBSYSTEM], got {text!r}")
        for p in parts:
            _check_value(p, "identifier part", errors.INVALID_CLIENT_IDENTIFIER)
        return cls(*parts)

    def to_xml(self, tag: str, nsmap: Optional[dict] = None) -> etree._Element:
        el = etree.Element(tag, nsmap=nsmap or {"xrd": XROAD_NS, "id": ID_NS})
        el.set(_OBJECT_TYPE, self.object_type)
        values = (self.instance, self.member_class, self.member_code, self.subsystem)
        for name, value in zip(_FIELDS_CLIENT, values):
            if value is not None:
                etree.SubElement(el, f"{{{ID_NS}}}{name}").text = value
        return el


@dataclass(frozen=True, slots=True)
class ServiceId:
    instance: str
    member_class: str
    member_code: str
    subsystem: Optional[str]
    service_code: str
    version: Optional[str] = None

    @property
    def provider(self) -> ClientId:
        return ClientId(self.instance, self.member_class, self.member_code, self.subsystem)

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.member_code)

    def without_version(self) -> "ServiceId":
        return ServiceId(self.instance, self.member_class, self.member_code,
                         self.subsystem, self.service_code, None)

    def __str__(self) -> str:
        text = f"{self.provider}/{self.service_code}"
        return f"{text}/{self.version}" if self.version else text

    @classmethod
    def parse(cls, text: str) -> "ServiceId":
        """Parse ``INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]``.

        The subsystem is required in this textual form (services of a bare member
        are written ``INSTANCE/CLASS/CODE//SERVICE``), because the form is otherwise
        ambiguous.
        """
        parts = text.strip().split("/")
        if len(parts) not in (5, 6) or not all(parts[:3]) or not parts[4]:
            raise ValueError(
                f"expected INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION], got {text!r}")
        for p in parts:
            if p:
                _check_value(p, "identifier part", errors.INVALID_SERVICE_IDENTIFIER)
        inst, cls_, code, sub, svc = parts[:5]
        ver = parts[5] if len(parts) == 6 and parts[5] else None
        return cls(inst, cls_, code, sub or None, svc, ver)

    def to_xml(self, tag: str, nsmap: Optional[dict] = None) -> etree._Element:
        el = etree.Element(tag, nsmap=nsmap or {"xrd": XROAD_NS, "id": ID_NS})
        el.set(_OBJECT_TYPE, "SERVICE")
        names = _FIELDS_CLIENT + ("serviceCode", "serviceVersion")
        values = (self.instance, self.member_class, self.member_code, self.subsystem,
                  self.service_code, self.version)
        for name, value in zip(names, values):
            if value is not None:
                etree.SubElement(el, f"{{{ID_NS}}}{name}").text = value
        return el


def text_value(el: etree._Element) -> Optional[str]:
    """The text of a text-only element, comments and processing instructions skipped.

    ``<id:memberCode>7000<!-- x -->0002</id:memberCode>`` is ``70000002`` to an XML
    reader, so it is to us.  None if ``el`` has element children (not text-only).
    """
    parts = [el.text or ""]
    for child in el:
        if isinstance(child.tag, str):
            return None
        parts.append(child.tail or "")
    return "".join(parts)


_ID_PREFIX = f"{{{ID_NS}}}"
_ID_PREFIX_LEN = len(_ID_PREFIX)


def _children(el: etree._Element, code: str, what: str) -> dict[str, str]:
    """Identifier fields of ``el`` by local name, each checked.

    Runs for every identifier of every message, so it compares tag strings instead of
    building QName objects, and reads a childless element's text directly (what
    :func:`text_value` returns for it); the checks and messages are those of the
    general path.
    """
    found: dict[str, str] = {}
    match = _VALUE.match
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comments, processing instructions
        local = tag[_ID_PREFIX_LEN:]
        # "}" in the rest: the namespace only starts like ID_NS (a local name has none)
        if not tag.startswith(_ID_PREFIX) or "}" in local:
            raise errors.XRoadError(code, f"{what}: unexpected element "
                                    f"{etree.QName(child).text} "
                                    f"(identifier fields are in namespace {ID_NS})")
        if local in found:
            raise errors.XRoadError(code, f"{what}: field {local} appears twice")
        if len(child):
            value = text_value(child)
            if value is None:
                raise errors.XRoadError(code, f"{what}: field {local} must be text")
        else:
            value = child.text or ""
        value = value.strip()
        if not value:
            raise errors.XRoadError(code, f"{what}: field {local} is empty")
        if not match(value):
            _check_value(value, f"{what}: {local}", code)   # raises
        found[local] = value
    return found


def _require(fields: dict, name: str, code: str, what: str) -> str:
    if name not in fields:
        raise errors.XRoadError(code, f"{what}: id:{name} is missing")
    return fields[name]


def client_from_xml(el: etree._Element) -> ClientId:
    code, what = errors.INVALID_CLIENT_IDENTIFIER, "xroad:client"
    otype = el.get(_OBJECT_TYPE)
    fields = _children(el, code, what)
    extra = fields.keys() - _CLIENT_FIELD_SET
    if extra:
        raise errors.XRoadError(code, f"{what}: unexpected field(s) {sorted(extra)}")
    if otype not in ("MEMBER", "SUBSYSTEM"):
        raise errors.XRoadError(
            code, f"{what}: id:objectType must be MEMBER or SUBSYSTEM, got {otype!r}")
    sub = fields.get("subsystemCode")
    if otype == "SUBSYSTEM" and sub is None:
        raise errors.XRoadError(code, f"{what}: objectType SUBSYSTEM needs id:subsystemCode")
    if otype == "MEMBER" and sub is not None:
        raise errors.XRoadError(code, f"{what}: objectType MEMBER must not have id:subsystemCode")
    return ClientId(_require(fields, "xRoadInstance", code, what),
                    _require(fields, "memberClass", code, what),
                    _require(fields, "memberCode", code, what), sub)


def service_from_xml(el: etree._Element) -> ServiceId:
    code, what = errors.INVALID_SERVICE_IDENTIFIER, "xroad:service"
    otype = el.get(_OBJECT_TYPE)
    if otype != "SERVICE":
        raise errors.XRoadError(code, f"{what}: id:objectType must be SERVICE, got {otype!r}")
    fields = _children(el, code, what)
    extra = fields.keys() - _SERVICE_FIELD_SET
    if extra:
        raise errors.XRoadError(code, f"{what}: unexpected field(s) {sorted(extra)}")
    return ServiceId(_require(fields, "xRoadInstance", code, what),
                     _require(fields, "memberClass", code, what),
                     _require(fields, "memberCode", code, what),
                     fields.get("subsystemCode"),
                     _require(fields, "serviceCode", code, what),
                     fields.get("serviceVersion"))
