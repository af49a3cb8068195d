"""Access decision: may this client call this service?  Default deny."""
from __future__ import annotations

from ..conf.model import ServerConf
from .identifiers import ClientId, ServiceId


def is_allowed(conf: ServerConf, client: ClientId, service: ServiceId) -> bool:
    """True only if a rule for the service (any version) names this exact client.

    A MEMBER identifier in a rule admits the member itself, not its subsystems:
    X-Road grants rights to each subsystem explicitly.
    """
    target = service.without_version()
    return any(rule.service.without_version() == target and client in rule.clients
               for rule in conf.access)


def member_may_use(conf: ServerConf, client: ClientId, service: ServiceId) -> bool:
    """True if a rule for the service names the client's member or any of its
    subsystems: who may see a service's WSDL (getWsdl)."""
    target, member = service.without_version(), client.member
    return any(rule.service.without_version() == target and
               any(c.member == member for c in rule.clients) for rule in conf.access)


def allowed_services(conf: ServerConf, client: ClientId) -> list[ServiceId]:
    return [svc.id for key, svc in conf.services.items() if is_allowed(conf, client, key)]
