"""multipart/related messages (SOAP with attachments, MTOM), split and joined as raw bytes.

Why not the ``email`` package: it re-serialises parts and rewrites their headers
(folding, case, order), and attachments must pass through byte for byte, with their MIME
part headers unchanged.  Here a body part (RFC 2046 section 5.1.1) is kept as the exact
bytes between its delimiter line and the CRLF before the next delimiter: header block,
blank line, content.  Only the root (SOAP) part is ever replaced; every other part is
written back exactly as it came.  No I/O.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Optional

from . import errors
from .errors import XRoadError

MULTIPART_RELATED = "multipart/related"
ROOT_MEDIA_TYPES = ("text/xml", "application/xop+xml")
_ROOT_ENCODINGS = ("7bit", "8bit", "binary")
_TOKEN = re.compile(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def media_type(content_type: Optional[str]) -> str:
    """The lower-cased media type of a Content-Type value ('' if none)."""
    return (content_type or "").split(";")[0].strip().lower()


def is_multipart_related(content_type: Optional[str]) -> bool:
    return media_type(content_type) == MULTIPART_RELATED


def content_type_params(content_type: Optional[str]) -> dict[str, str]:
    """Parameters of a Content-Type (names lower-cased, quotes removed)."""
    params: dict[str, str] = {}
    rest = (content_type or "").partition(";")[2]
    pos = 0
    while pos < len(rest):
        m = _TOKEN.match(rest, pos)
        if m is None:
            nxt = rest.find(";", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        name, value = m.group(1).lower(), m.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name, value)
        pos = m.end()
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        if pos < len(rest) and rest[pos] == ";":
            pos += 1
    return params


def with_boundary(content_type: str, boundary: str) -> str:
    """``content_type`` with its boundary parameter replaced (other parameters kept)."""
    pattern = re.compile(r'(;\s*boundary\s*=\s*)("(?:[^"\\]|\\.)*"|[^;]*)', re.IGNORECASE)
    new, n = pattern.subn(lambda m: f'{m.group(1)}"{boundary}"', content_type, count=1)
    return new if n else f'{content_type}; boundary="{boundary}"'


def normalise_cid(value: Optional[str]) -> Optional[str]:
    """A Content-ID (or ``start``/``cid:`` reference) without angle brackets."""
    if value is None:
        return None
    value = value.strip()
    if value.lower().startswith("cid:"):
        value = value[4:]
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip() or None


@dataclass(frozen=True)
class Part:
    """One body part: ``raw`` is exactly what travelled between its delimiters."""

    raw: bytes
    header_end: int      # offset of the content in ``raw`` (after the blank line)

    @property
    def header_block(self) -> bytes:
        return self.raw[:self.header_end]

    @property
    def content(self) -> bytes:
        return self.raw[self.header_end:]

    def header(self, name: str) -> Optional[str]:
        """The (unfolded) value of the first header ``name``, or None."""
        wanted = name.lower().encode("ascii")
        lines = re.split(rb"\r?\n", self.header_block)
        for i, line in enumerate(lines):
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == wanted:
                for cont in lines[i + 1:]:
                    if cont[:1] in (b" ", b"\t"):
                        value += b" " + cont.strip()
                    else:
                        break
                return value.strip().decode("latin-1")
        return None

    @property
    def content_type(self) -> Optional[str]:
        return self.header("Content-Type")

    @property
    def content_id(self) -> Optional[str]:
        """Content-ID without angle brackets."""
        return normalise_cid(self.header("Content-ID"))


def make_part(header_block: bytes, content: bytes) -> Part:
    """A part from its header block (ending with the blank line) and content."""
    return Part(header_block + content, len(header_block))


def _part_from_raw(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        return Part(raw, 2)
    if raw.startswith(b"\n"):
        return Part(raw, 1)
    m = re.search(rb"\r?\n\r?\n", raw)
    if m is None:
        raise XRoadError(errors.INVALID_MESSAGE,
                         "a MIME part of the multipart/related message has no blank line "
                         "between its headers and its content")
    return Part(raw, m.end())


@dataclass(frozen=True)
class Multipart:
    """A split multipart/related message."""

    content_type: str
    boundary: str
    parts: tuple[Part, ...]
    root_index: int

    @property
    def root(self) -> Part:
        return self.parts[self.root_index]

    @property
    def attachments(self) -> tuple[Part, ...]:
        """Every part but the root, in message order."""
        return self.parts[:self.root_index] + self.parts[self.root_index + 1:]

    def root_content_type(self) -> str:
        return self.root.content_type or "text/xml"


def _delimiters(boundary: bytes) -> re.Pattern:
    # A delimiter line: at the start of the body or after a line break, "--" boundary,
    # "--" for the closing one, optional transport padding, then a line break or the end.
    return re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")


def split(body: bytes, content_type: Optional[str]) -> Multipart:
    """Split a multipart/related body; the root is the ``start`` part or the first one.

    Raises InvalidContentType when the Content-Type or the body is not multipart as
    announced, or the root is not an XML (SOAP or XOP) part; InvalidMessage when the
    structure is broken (no closing delimiter, no parts, unknown ``start``).
    """
    ct = content_type or ""
    if not is_multipart_related(ct):
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"Content-Type {ct or '(none)'!r} is not multipart/related")
    params = content_type_params(ct)
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         "multipart/related without a valid boundary parameter (1 to 70 "
                         "characters, RFC 2046): add boundary=\"...\" to the Content-Type")
    try:
        bnd = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         "the multipart boundary must be ASCII") from None
    found = list(_delimiters(bnd).finditer(body))
    if not found:
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"the Content-Type says multipart/related with boundary "
                         f"{boundary!r}, but the body has no such delimiter line: send "
                         "the MIME parts, or a plain SOAP message as text/xml")
    parts = []
    closed = False
    for here, nxt in zip(found, found[1:] + [None]):
        if here.group(1):       # the close delimiter: the rest is the epilogue
            closed = True
            break
        if nxt is None:
            break
        parts.append(_part_from_raw(body[here.end():nxt.start()]))
    if not closed:
        raise XRoadError(errors.INVALID_MESSAGE,
                         f"the multipart/related body has no closing delimiter "
                         f"--{boundary}--: the message is truncated or malformed")
    if not parts:
        raise XRoadError(errors.INVALID_MESSAGE, "the multipart/related body has no parts")
    root_index = _root_index(parts, params.get("start"))
    root = parts[root_index]
    root_type = media_type(root.content_type or "text/xml")
    if root_type not in ROOT_MEDIA_TYPES:
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"the root part of the multipart/related message is {root_type}; "
                         "it must be the SOAP envelope as text/xml (or application/xop+xml "
                         "for MTOM)")
    encoding = (root.header("Content-Transfer-Encoding") or "8bit").strip().lower()
    if encoding not in _ROOT_ENCODINGS:
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"the SOAP part has Content-Transfer-Encoding {encoding}; send it "
                         "as 8bit")
    return Multipart(ct, boundary, tuple(parts), root_index)


def _root_index(parts: list[Part], start: Optional[str]) -> int:
    wanted = normalise_cid(start)
    if wanted is None:
        return 0
    for i, part in enumerate(parts):
        if part.content_id == wanted:
            return i
    raise XRoadError(errors.INVALID_MESSAGE,
                     f"the start parameter names part <{wanted}>, but no part has that "
                     "Content-ID")


def join(parts: tuple[Part, ...] | list[Part], boundary: str) -> bytes:
    """The multipart body of ``parts`` (each written exactly as its ``raw``)."""
    delim = b"--" + boundary.encode("ascii")
    out = [delim + b"\r\n"]
    for i, part in enumerate(parts):
        if i:
            out.append(b"\r\n" + delim + b"\r\n")
        out.append(part.raw)
    out.append(b"\r\n" + delim + b"--\r\n")
    return b"".join(out)


def _collides(parts, boundary: str) -> bool:
    pattern = re.compile(rb"(?:^|\n)--" + re.escape(boundary.encode("ascii")))
    return any(pattern.search(p.raw) for p in parts)


def replace_root(msg: Multipart, content: bytes,
                 header_block: Optional[bytes] = None) -> tuple[bytes, str]:
    """Body and Content-Type of ``msg`` with the root part's content replaced.

    The root keeps its header block unless ``header_block`` is given; the other parts
    are written back byte for byte.  The boundary (and so the Content-Type) is kept
    unless the new content happens to contain a delimiter line; then a fresh one is used.
    """
    root = make_part(msg.root.header_block if header_block is None else header_block,
                     content)
    parts = list(msg.parts)
    parts[msg.root_index] = root
    boundary, content_type = msg.boundary, msg.content_type
    if _collides(parts, boundary):
        boundary = f"tunduk-{uuid.uuid4().hex}"
        content_type = with_boundary(content_type, boundary)
    return join(parts, boundary), content_type


def replace_root_utf8(msg: Multipart, content: bytes) -> tuple[bytes, str, str]:
    """``replace_root`` with a re-serialised (UTF-8) root, plus the root part's own
    Content-Type as the receiver's ``split`` reads it (what a signature over the root
    part names), without splitting the new body again."""
    block = utf8_root_header_block(msg.root)
    body, content_type = replace_root(msg, content, block)
    root = make_part(msg.root.header_block if block is None else block, b"")
    return body, content_type, root.content_type or "text/xml"


def utf8_root_header_block(part: Part) -> Optional[bytes]:
    """A header block for a re-serialised (UTF-8) root part, or None to keep the original.

    The security server writes every SOAP envelope in UTF-8; a root part that declared
    another charset gets fresh headers (same media type, ``type`` and Content-ID).
    """
    ctype = part.content_type or "text/xml"
    params = content_type_params(ctype)
    if params.get("charset", "utf-8").lower() in ("utf-8", "utf8"):
        return None
    value = f"{media_type(ctype)}; charset=UTF-8"
    if "type" in params:
        value += f'; type="{params["type"]}"'
    lines = [f"Content-Type: {value}", "Content-Transfer-Encoding: 8bit"]
    cid = part.header("Content-ID")
    if cid is not None:
        lines.append(f"Content-ID: {cid}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
