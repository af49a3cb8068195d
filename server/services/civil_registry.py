"""The demo provider backend: the civil registry of the demo instance KG.

A spyne SOAP 1.1 service in document/literal wrapped style whose operation names are
the X-Road service codes (``getBirthRecord``, ``getResidenceRecord``, ``echo``).
The data is a handful of fixed, made-up citizens so demos and tests are deterministic.
X-Road headers are not modelled in spyne (it cannot reference the identifier types of
another namespace faithfully): :mod:`.echo_headers` declares them in the WSDL and echoes
them in responses.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from spyne import (Application, ComplexModel, Date, DateTime, Decimal as SDecimal,
                   Fault, Unicode, rpc, ServiceBase)
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from .echo_headers import XRoadHeaderEcho

TNS = "http://registry.demo.tunduk.kg/"


def _req(model):
    """A required, non-nillable element of plain XSD type (no spyne helper namespace)."""
    return model.customize(min_occurs=1, nillable=False)


class Person(ComplexModel):
    __namespace__ = TNS
    _type_info = [
        ("personalCode", _req(Unicode)),
        ("firstName", _req(Unicode)),
        ("lastName", _req(Unicode)),
        ("relation", Unicode),
    ]


class BirthRecord(ComplexModel):
    __namespace__ = TNS
    _type_info = [
        ("personalCode", _req(Unicode)),
        ("firstName", _req(Unicode)),
        ("middleName", Unicode(min_occurs=0)),
        ("lastName", _req(Unicode)),
        ("birthDate", _req(Date)),
        ("placeOfBirth", _req(Unicode)),
        ("parents", Person.customize(max_occurs="unbounded", min_occurs=0)),
        ("registeredAt", _req(DateTime)),
    ]


class Address(ComplexModel):
    __namespace__ = TNS
    _type_info = [
        ("country", _req(Unicode)),
        ("region", Unicode(min_occurs=0)),
        ("city", _req(Unicode)),
        ("street", _req(Unicode)),
        ("building", _req(Unicode)),
        ("apartment", Unicode(min_occurs=0)),
        ("postalCode", Unicode(min_occurs=0)),
    ]


class ResidenceRecord(ComplexModel):
    __namespace__ = TNS
    _type_info = [
        ("personalCode", _req(Unicode)),
        ("address", Address.customize(min_occurs=1, nillable=False)),
        ("since", _req(Date)),
        ("fee", SDecimal(min_occurs=1, nillable=False)),
    ]


_UTC = dt.timezone.utc

# Deterministic demo citizens (fictional).
_BIRTHS: dict[str, dict] = {
    "21505198800011": dict(
        personalCode="21505198800011", firstName="Aibek", middleName="Nurlanovich",
        lastName="Sadyrov", birthDate=dt.date(1988, 5, 15), placeOfBirth="Bishkek",
        parents=[("11203196500022", "Nurlan", "Sadyrov", "father"),
                 ("21708196700033", "Gulnara", "Sadyrova", "mother")],
        registeredAt=dt.datetime(1988, 5, 20, 10, 30, 0, tzinfo=_UTC)),
    "12201199500044": dict(
        personalCode="12201199500044", firstName="Aigerim", middleName=None,
        lastName="Toktogulova", birthDate=dt.date(1995, 1, 22), placeOfBirth="Osh",
        parents=[("21111197000055", "Cholpon", "Toktogulova", "mother")],
        registeredAt=dt.datetime(1995, 1, 25, 8, 0, 0, tzinfo=_UTC)),
    "10101200000066": dict(
        personalCode="10101200000066", firstName="Timur", middleName=None,
        lastName="Asanov", birthDate=dt.date(2000, 1, 1), placeOfBirth="Karakol",
        parents=[], registeredAt=dt.datetime(2000, 1, 3, 9, 15, 45, tzinfo=_UTC)),
}

_RESIDENCES: dict[str, dict] = {
    "21505198800011": dict(
        address=dict(country="KG", region="Chuy", city="Bishkek", street="Chuy Avenue",
                     building="120", apartment="45", postalCode="720040"),
        since=dt.date(2015, 9, 1), fee=Decimal("150.50")),
    "12201199500044": dict(
        address=dict(country="KG", region=None, city="Osh", street="Kurmanjan Datka",
                     building="7", apartment=None, postalCode=None),
        since=dt.date(2019, 3, 12), fee=Decimal("0.00")),
}


def _not_found(kind: str, code: str) -> Fault:
    return Fault(faultcode="Client.NotFound",
                 faultstring=f"No {kind} record for personal code {code}")


class CivilRegistryService(ServiceBase):
    """Operations named like X-Road service codes."""

    @rpc(Unicode(max_len=32, min_occurs=1, nillable=False), _returns=BirthRecord, _body_style="wrapped")
    def getBirthRecord(ctx, personalCode):  # noqa: N802,N805 (X-Road service code)
        rec = _BIRTHS.get(personalCode)
        if rec is None:
            raise _not_found("birth", personalCode)
        data = dict(rec)
        data["parents"] = [Person(personalCode=p, firstName=f, lastName=l, relation=r)
                           for p, f, l, r in rec["parents"]]
        return BirthRecord(**data)

    @rpc(Unicode(max_len=32, min_occurs=1, nillable=False), _returns=ResidenceRecord, _body_style="wrapped")
    def getResidenceRecord(ctx, personalCode):  # noqa: N802,N805
        rec = _RESIDENCES.get(personalCode)
        if rec is None:
            raise _not_found("residence", personalCode)
        return ResidenceRecord(personalCode=personalCode, address=Address(**rec["address"]),
                               since=rec["since"], fee=rec["fee"])

    @rpc(Unicode, _returns=Unicode, _body_style="wrapped")
    def echo(ctx, text):  # noqa: N805
        return text


application = Application(
    [CivilRegistryService], tns=TNS, name="CivilRegistry",
    in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())

#: The spyne WSGI app wrapped so responses echo the X-Road headers and the WSDL
#: declares them.
wsgi_app = XRoadHeaderEcho(WsgiApplication(application))
