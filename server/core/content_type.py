"""Content-Type values, read strictly and written by tunduk alone.

What tunduk checks and what a backend (or, for answers, the client) parses must be the
same message.  Parsers disagree on Content-Type values outside the plain grammar: a
repeated parameter (``cgi.parse_header`` keeps the last, ``email`` the first), RFC 2231
``name*=`` parameters (only ``email`` decodes them), backslash escapes in quoted
strings, a ``;`` inside quotes (naive splitters break there), spaces around ``=``.
So a value is accepted only in the subset of RFC 9110 section 8.3 that every common
parser reads the same way, and what leaves the server is never the sender's string but
:meth:`ContentType.header`, written from what was parsed.

The charset is another such point: only charsets every parser decodes alike (UTF-8,
US-ASCII, ISO-8859-x, windows-125x, KOI8; UTF-16 with a byte order mark) are accepted;
UTF-7, UTF-32, EBCDIC and the stateful ISO-2022 family are refused.  No I/O.
"""
from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from . import errors
from .errors import XRoadError

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*")
# a parameter: name=token or name="quoted" where the quoted text holds no backslash,
# no double quote, no ';' and only printable ASCII (parsers agree on nothing else)
_PARAM = re.compile(
    rf";[ \t]*(?:({_TOKEN})=(?:({_TOKEN})|\"([ \t!#-:<-\[\]-~]*)\")[ \t]*|(?=;|$))")

#: Python codec name → the name tunduk writes (IANA), for every accepted charset.
_CHARSETS = {
    "utf-8": "utf-8", "ascii": "us-ascii",
    **{f"iso8859-{n}": f"iso-8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14,
                                                 15, 16)},
    **{f"cp{n}": f"windows-{n}" for n in range(1250, 1259)},
    "koi8-r": "koi8-r", "koi8-u": "koi8-u",
    "utf-16": "utf-16", "utf-16-le": "utf-16", "utf-16-be": "utf-16",
}


@functools.lru_cache(maxsize=256)
def charset_name(label: str, where: str) -> str:
    """The name tunduk uses for charset ``label`` (from ``where``), or InvalidContentType
    for a charset that parsers do not all decode alike."""
    try:
        python_name = codecs.lookup(label).name
    except LookupError:
        python_name = None
    name = _CHARSETS.get(python_name or "")
    if name is None:
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"{where} names charset {label!r}, which this server does not "
                         "accept: send the message in UTF-8")
    return name


@dataclass(frozen=True)
class ContentType:
    """A parsed Content-Type: lower-cased media type, parameters by lower-cased name."""

    media_type: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def charset(self) -> Optional[str]:
        """The charset as tunduk names it (see :func:`charset_name`), or None."""
        label = self.params.get("charset")
        return None if label is None else charset_name(label, "the Content-Type")

    def header(self, **params: Optional[str]) -> str:
        """The value tunduk writes: this media type with ``params`` (None: left out;
        ``_`` in a name is written ``-``), each value quoted but a charset."""
        out = [self.media_type]
        for name, value in params.items():
            if value is not None:
                name = name.replace("_", "-")
                out.append(f"{name}={value}" if name == "charset" else f'{name}="{value}"')
        return "; ".join(out)


def parse(value: Optional[str], what: str = "Content-Type") -> ContentType:
    """``value`` parsed strictly (see the module docstring); InvalidContentType, naming
    what is wrong, for anything else.  The few values a server sees are parsed once
    (do not change the result's ``params``)."""
    return _parse(value, what)


@functools.lru_cache(maxsize=512)
def _parse(value: Optional[str], what: str) -> ContentType:
    if value is None or not value.strip():
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"the {what} is missing: send the SOAP message as "
                         "text/xml; charset=utf-8")
    m = _MEDIA_TYPE.match(value)
    if m is None:
        raise _invalid(value, what, "it does not start with a media type type/subtype")
    media = f"{m.group(1)}/{m.group(2)}".lower()
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        p = _PARAM.match(value, pos)
        if p is None:
            raise _invalid(value, what, _why_not_a_parameter(value[pos:]))
        name = p.group(1)
        if name is not None:
            name = name.lower()
            if "*" in name:
                raise _invalid(value, what, f"parameter {name} uses RFC 2231 encoding; "
                                            "send it as a plain name=value")
            if name in params:
                raise _invalid(value, what, f"parameter {name} is given more than once")
            params[name] = p.group(2) if p.group(2) is not None else p.group(3)
        pos = p.end()
    return ContentType(media, params)


def soap_request(content_type: Optional[str]) -> ContentType:
    """The Content-Type of a plain SOAP 1.1 request, strictly parsed; InvalidContentType
    for another media type or a value parsers could read differently."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media.startswith("multipart/"):
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"{media} is not accepted here: send a SOAP message as text/xml, "
                         "or one with attachments as multipart/related (not on legacy "
                         "alias paths)")
    ct = parse(content_type)
    if ct.media_type == "application/soap+xml":
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         "application/soap+xml is SOAP 1.2; send SOAP 1.1 as text/xml")
    if ct.media_type not in ("text/xml", "application/xml"):
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"Content-Type {content_type!r} is not a SOAP 1.1 message: "
                         "POST the X-Road request as text/xml; charset=utf-8")
    return ct


def _why_not_a_parameter(rest: str) -> str:
    if not rest.startswith(";"):
        return f"{rest[:20]!r} is not a ';'-separated parameter"
    body = rest[1:].lstrip(" \t")
    name, eq, val = body.partition("=")
    if not eq:
        return f"parameter {body.split(';')[0][:20]!r} has no '=value'"
    if name != name.rstrip(" \t") or val[:1] in (" ", "\t"):
        return f"parameter {name.strip()} has spaces around '='; write name=value"
    if val.startswith('"'):
        return (f"the quoted value of parameter {name} holds a backslash, a quote, "
                "a ';' or a non-ASCII character, or is not closed")
    return f"the value of parameter {name} is not a token: quote it"


def _invalid(value: str, what: str, why: str) -> XRoadError:
    shown = value if len(value) <= 200 else value[:200] + "…"
    return XRoadError(errors.INVALID_CONTENT_TYPE,
                      f"the {what} {shown!r} is ambiguous or malformed: {why}")
