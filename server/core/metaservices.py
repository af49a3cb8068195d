"""X-Road service metadata (PR-META): listClients, listMethods, allowedMethods.

Pure functions from configuration values to response bytes.  ``listClients`` is a
plain XML document (HTTP GET on the client's security server); ``listMethods`` and
``allowedMethods`` are SOAP responses that echo the request's X-Road headers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

from lxml import etree

from .identifiers import ID_NS, XROAD_NS, ClientId, ServiceId

if TYPE_CHECKING:  # core reads conf values but never imports the conf package
    from ..conf.model import Federation, ServerConf

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_NSMAP = {"xrd": XROAD_NS, "id": ID_NS}
_OBJECT_TYPE = f"{{{ID_NS}}}objectType"

#: Service codes of the metaservices; never listed by listMethods/allowedMethods.
META_SERVICE_CODES = frozenset({"listMethods", "allowedMethods", "getWsdl"})


def list_clients_xml(federation: Federation, instance: str | None = None) -> bytes:
    """``xrd:clientList`` of every member and subsystem of ``instance`` (default: ours)."""
    wanted = instance or federation.instance
    root = etree.Element(f"{{{XROAD_NS}}}clientList", nsmap=_NSMAP)
    members = sorted(federation.members.values(), key=lambda m: str(m.id))
    for m in members:
        if m.id.instance != wanted:
            continue
        ids = [ClientId(m.id.instance, m.id.member_class, m.id.member_code)]
        ids += [ClientId(m.id.instance, m.id.member_class, m.id.member_code, s)
                for s in sorted(m.subsystems)]
        for cid in ids:
            member = etree.SubElement(root, f"{{{XROAD_NS}}}member")
            member.append(cid.to_xml(f"{{{XROAD_NS}}}id", nsmap=_NSMAP))
            etree.SubElement(member, f"{{{XROAD_NS}}}name").text = m.name
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def allowed_services(conf: ServerConf, caller: ClientId,
                     provider: ClientId | None = None) -> list[ServiceId]:
    """The local services ``caller`` may call (versions ignored, metaservices excluded).

    ``provider`` narrows the list to one provider's services (allowedMethods asks one).
    """
    granted = {rule.service.without_version()
               for rule in conf.access if caller in rule.clients}
    return [svc.id for key, svc in _ordered_services(conf)
            if key.without_version() in granted
            and (provider is None or svc.id.provider == provider)]


def provided_services(conf: ServerConf, provider: ClientId) -> list[ServiceId]:
    """Every local service of ``provider`` (for listMethods)."""
    return [svc.id for _, svc in _ordered_services(conf) if svc.id.provider == provider]


def _ordered_services(conf: ServerConf):
    return sorted(((k, v) for k, v in conf.services.items()
                   if k.service_code not in META_SERVICE_CODES), key=lambda kv: str(kv[0]))


def _method_list_response(wrapper: str, request_headers: Sequence[etree._Element],
                          services: Iterable[ServiceId]) -> bytes:
    # Only SOAP-ENV on the envelope: the copied headers keep their own prefixes.
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV})
    header = etree.SubElement(env, f"{{{SOAP_ENV}}}Header")
    for el in request_headers:
        header.append(_copy(el))
    body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    resp = etree.SubElement(body, f"{{{XROAD_NS}}}{wrapper}", nsmap=_NSMAP)
    for svc in services:
        resp.append(svc.to_xml(f"{{{XROAD_NS}}}service", nsmap=_NSMAP))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def _copy(el: etree._Element) -> etree._Element:
    # A deep copy keeps the original element intact in the caller's request tree.
    return etree.fromstring(etree.tostring(el))


def list_methods_response(request_headers: Sequence[etree._Element],
                          services: Iterable[ServiceId]) -> bytes:
    """SOAP response of ``listMethods``: the request headers echoed, then the services."""
    return _method_list_response("listMethodsResponse", request_headers, services)


def allowed_methods_response(request_headers: Sequence[etree._Element],
                             services: Iterable[ServiceId]) -> bytes:
    """SOAP response of ``allowedMethods``: the request headers echoed, then the services."""
    return _method_list_response("allowedMethodsResponse", request_headers, services)
