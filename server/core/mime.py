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

from . import content_type as content_type_mod
from . import errors
from .errors import XRoadError

MULTIPART_RELATED = "multipart/related"
ROOT_MEDIA_TYPES = ("text/xml", "application/xop+xml")
_ROOT_ENCODINGS = ("7bit", "8bit", "binary")
#: multipart/related parameters (RFC 2387) that tunduk reads and writes; others are
#: dropped, since what leaves the server is written from what was parsed
_RELATED_PARAMS = ("type", "start", "start-info")
#: part headers read here: a part that has one of them twice is refused (parsers
#: disagree on which one counts)
_SINGLE_HEADERS = ("content-type", "content-id", "content-transfer-encoding")


def media_type(content_type: Optional[str]) -> str:
    """The lower-cased media type of a Content-Type value ('' if none)."""
    return (content_type or "").split(";")[0].strip().lower()


def is_multipart_related(content_type: Optional[str]) -> bool:
    return media_type(content_type) == MULTIPART_RELATED


def content_type_params(content_type: Optional[str]) -> dict[str, str]:
    """Parameters of a Content-Type (names lower-cased, quotes removed), read strictly
    (core/content_type.py)."""
    return dict(content_type_mod.parse(content_type).params)


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
        """The (unfolded) value of header ``name``, or None; InvalidMessage if one of
        the headers read here (Content-Type, Content-ID, Content-Transfer-Encoding)
        is there twice."""
        wanted = name.lower().encode("ascii")
        block = self.header_block
        if b"\r" in block.replace(b"\r\n", b""):
            raise XRoadError(errors.INVALID_MESSAGE,
                             "a MIME part header of the multipart/related message holds a "
                             "carriage return that does not end a line: parsers split it "
                             "differently")
        lines = re.split(rb"\r?\n", block)
        found = None
        for i, line in enumerate(lines):
            if line[:1] in (b" ", b"\t"):
                continue        # a continuation line is never a header of its own
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == wanted:
                if found is not None:
                    raise XRoadError(errors.INVALID_MESSAGE,
                                     f"a MIME part of the multipart/related message has "
                                     f"{name} twice: send each part header once")
                for cont in lines[i + 1:]:
                    if cont[:1] in (b" ", b"\t"):
                        value += b" " + cont.strip()
                    else:
                        break
                found = value.strip().decode("latin-1")
                if wanted.decode() not in _SINGLE_HEADERS:
                    break
        return found

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
    """A split multipart/related message; ``params`` are the multipart/related
    parameters tunduk read (type, start, start-info) and writes again."""

    boundary: str
    parts: tuple[Part, ...]
    root_index: int
    params: tuple[tuple[str, str], ...] = ()

    @property
    def root(self) -> Part:
        return self.parts[self.root_index]

    @property
    def attachments(self) -> tuple[Part, ...]:
        """Every part but the root, in message order."""
        return self.parts[:self.root_index] + self.parts[self.root_index + 1:]

    @property
    def content_type(self) -> str:
        """The message's Content-Type as tunduk writes it (never the sender's string)."""
        return self.content_type_with(self.boundary)

    def content_type_with(self, boundary: str) -> str:
        params = {name.replace("-", "_"): value for name, value in self.params}
        return content_type_mod.ContentType(MULTIPART_RELATED).header(
            **params, boundary=boundary)

    def root_content_type(self) -> str:
        """The root part's Content-Type as tunduk writes it: media type, charset and
        (MTOM) type, from the part's header as split() checked it."""
        return root_content_type(self.root)


def root_content_type(part: Part, charset: Optional[str] = None) -> str:
    """Content-Type of a root part as tunduk writes it; ``charset`` replaces the part's
    own (None: the part's, if it names one)."""
    ct = content_type_mod.parse(part.content_type or "text/xml",
                                "Content-Type of the SOAP part")
    return ct.header(charset=charset or ct.charset, type=ct.params.get("type"))


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
    params = content_type_mod.parse(ct).params
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
    if b"\r--" + bnd in body:
        # a carriage return alone ends a line for the email package, not here
        raise XRoadError(errors.INVALID_MESSAGE,
                         f"the multipart/related body holds --{boundary} after a carriage "
                         "return that does not end a line: parsers split such a body "
                         "differently")
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
    _check_content_ids(parts)
    root_index = _root_index(parts, params.get("start"))
    root = parts[root_index]
    root_type = content_type_mod.parse(root.content_type or "text/xml",
                                       "Content-Type of the SOAP part").media_type
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
    related = tuple((name, params[name]) for name in _RELATED_PARAMS if name in params)
    return Multipart(boundary, tuple(parts), root_index, related)


def _check_content_ids(parts: list[Part]) -> None:
    seen = set()
    for part in parts:
        cid = part.content_id
        if cid is not None and cid in seen:
            raise XRoadError(errors.INVALID_MESSAGE,
                             f"two parts of the multipart/related message have Content-ID "
                             f"<{cid}>: each part needs its own")
        seen.add(cid)


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


def replace_root(msg: Multipart, content: bytes) -> tuple[bytes, str, str]:
    """(body, Content-Type, root part Content-Type) of ``msg`` with the root part's
    content replaced by ``content``, a UTF-8 serialisation.

    The root part gets a header block written here (:func:`root_header_block`) and
    goes first; the other parts are written back byte for byte, in their order.  The boundary is kept unless the new
    content happens to contain a delimiter line; then a fresh one is used.
    """
    # The root goes first: a receiver that ignores ``start`` takes the first part.
    root = make_part(root_header_block(msg.root), content)
    parts = [root, *msg.attachments]
    boundary = msg.boundary
    if _collides(parts, boundary):
        boundary = f"tunduk-{uuid.uuid4().hex}"
    return join(parts, boundary), msg.content_type_with(boundary), \
        root_content_type(root)


def root_header_block(part: Part) -> bytes:
    """The header block tunduk writes for a root part holding a UTF-8 serialisation:
    same media type, ``type`` and Content-ID, charset UTF-8, nothing else."""
    lines = [f"Content-Type: {root_content_type(part, 'utf-8')}",
             "Content-Transfer-Encoding: 8bit"]
    cid = part.content_id
    if cid is not None:
        lines.append(f"Content-ID: <{cid}>")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
