"""Leaner socket files for cheroot, our WSGI server.

Why: cheroot reads requests through ``_pyio`` (the pure-Python io module) and writes
the response head and body with two separate sends.  Under load that plumbing was a
large share of a security server's CPU.  Here the reader keeps one ``bytearray``
buffer and finds line ends in C; the writer holds the response head back and sends
it together with the first body bytes (one send, one TLS record), flushing whatever
is held when the request is done.  The header fields are cut from the buffer as one
block (``HeaderBlockReader``) instead of one ``readline`` per field.  Everything else
(request line, limits, keep-alive, timeouts) stays cheroot's.
"""
from __future__ import annotations

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server

_RECV_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024      # request line and header fields of one request
# A line read without a size (cheroot does so for chunk-size lines) longer than this
# is refused (ValueError, as cheroot's own malformed-chunk errors) instead of being
# buffered without end or silently cut.
MAX_LINE = 65536
# An unread request body larger than this is not drained after the answer: the
# connection is closed instead (cheroot would read it all into memory).
MAX_DRAIN = 65536
# Above this, the held response head is sent on its own instead of being copied
# in front of the body.
_JOIN_LIMIT = 65536


class SocketReader:
    """The buffered-reader subset cheroot uses: ``read``, ``readline``, ``has_data``."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.bytes_read = 0
        self.closed = False       # cheroot's forced close at stop asks for it

    def _fill(self) -> bool:
        data = self._sock.recv(_RECV_SIZE)
        if not data:
            return False
        self._buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.bytes_read += len(out)
        return out

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at end of stream (like a BufferedReader)."""
        buf = self._buf
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(buf))
        while len(buf) < size and self._fill():
            pass
        return self._take(min(size, len(buf)))

    def readline(self, size: int = -1) -> bytes:
        unbounded = size is None or size < 0
        if unbounded:
            size = MAX_LINE + 1
        buf = self._buf
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                n = end + 1
                break
            if 0 <= size <= len(buf):
                n = size
                break
            start = len(buf)
            if not self._fill():
                n = len(buf)
                break
        if 0 <= size < n:
            n = size
        if unbounded and n > MAX_LINE:
            raise ValueError(f"line longer than {MAX_LINE} bytes")
        return self._take(n)

    def read_header_block(self, limit: int) -> bytes:
        """The header fields and the empty line that ends them, at most ``limit``
        bytes (MaxSizeExceeded beyond); ValueError for a bare LF (cheroot's rule: every
        line ends in CRLF) or a stream that ends first."""
        buf = self._buf
        start = checked = 0     # each byte is searched once: a head sent a byte at a
        while True:             # time must not cost time quadratic in its size
            if buf[:2] == b"\r\n":
                n = 2
                break
            end = buf.find(b"\n\r\n", start)
            if end >= 0:
                n = end + 3
                break
            lf = buf.find(b"\n", checked)
            while lf >= 0:
                if lf == 0 or buf[lf - 1] != 0x0D:
                    raise ValueError("HTTP requires CRLF terminators")
                lf = buf.find(b"\n", lf + 1)
            if len(buf) > limit:
                raise cheroot_errors.MaxSizeExceeded
            start = checked = max(0, len(buf) - 2)
            if not self._fill():
                raise ValueError("Illegal end of headers.")
        if n > limit:
            raise cheroot_errors.MaxSizeExceeded
        block = self._take(n)
        if block.count(b"\n") != block.count(b"\r\n"):
            raise ValueError("HTTP requires CRLF terminators")
        return block

    def has_data(self) -> bool:
        return bool(self._buf)

    def close(self) -> None:
        self._buf.clear()
        self.closed = True


class SocketWriter:
    """Unbuffered writer that can hold the response head until the body follows."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self._held = b""
        self.holding = False
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        if self.holding:
            self._held += data
            return len(data)
        if self._held:
            held, self._held = self._held, b""
            if len(data) > _JOIN_LIMIT:
                self._sock.sendall(held)
                self.bytes_written += len(held)
            else:
                data = held + data
        self._sock.sendall(data)
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        if self._held and not self.holding:
            self.write(b"")

    def close(self) -> None:
        self.flush()


class HeaderBlockReader(cheroot_server.HeaderReader):
    """cheroot's header rules, applied to the whole header block at once.

    Three rules are stricter than cheroot's, as RFC 9112 (5.1, 5.2) lets or makes a
    server be: a field continued on an indented line (obsolete folding; cheroot let
    the continuation replace the value), whitespace between a field name and its
    colon (cheroot stripped it: a smuggling vector) and an empty field name are
    refused with 400.
    """

    def __call__(self, rfile, hdict=None):
        if hdict is None:
            hdict = {}
        reader = getattr(rfile, "rfile", None)
        if not isinstance(reader, SocketReader):      # not one of our connections
            return super().__call__(rfile, hdict)
        limit = rfile.maxlen - rfile.bytes_read if rfile.maxlen else MAX_HEAD_BYTES
        block = reader.read_header_block(limit)
        rfile.bytes_read += len(block)
        if len(block) == 2:
            return hdict
        comma_separated = cheroot_server.comma_separated_headers
        for line in block[:-4].split(b"\r\n"):
            if line[:1] in (b" ", b"\t"):
                raise ValueError("Header field continued on an indented line "
                                 "(obsolete line folding) is not accepted.")
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError("Illegal header line.")
            if not name or name != name.strip():
                raise ValueError("Illegal header field name.")
            key = self._transform_key(name)
            if not self._allow_header(key):
                continue
            value = value.strip()
            if key in comma_separated:
                existing = hdict.get(key)
                if existing:
                    value = b", ".join((existing, value))
            hdict[key] = value
        return hdict


def make_socket_file(sock, mode: str = "r", bufsize: int = -1):
    return SocketReader(sock) if "r" in mode else SocketWriter(sock)


class Request(cheroot_server.HTTPRequest):
    """cheroot's request, sending the response head together with the body.

    Also accepts absolute-form targets (``POST http://host:port/path HTTP/1.1``):
    clients that use the security server as their HTTP proxy (e.g. pyxroad) send
    them; cheroot refuses them unless in proxy mode, which changes nothing else for
    POST/GET (PATH_INFO is still the path of the target).
    """

    header_reader = HeaderBlockReader()

    def __init__(self, server, conn, proxy_mode=True, strict_mode=True):
        super().__init__(server, conn, proxy_mode=True, strict_mode=strict_mode)

    def send_headers(self) -> None:
        # A body the app did not read to its end must not be taken for the next
        # request: cheroot neither drains nor closes after a partly read chunked
        # body, and drains a Content-Length body of any size into memory.
        rfile = self.rfile
        if self.chunked_read:
            if not getattr(rfile, "closed", True):
                self.close_connection = True
        elif getattr(rfile, "remaining", 0) > MAX_DRAIN:
            self.close_connection = True
        wfile = self.conn.wfile
        wfile.holding = True
        try:
            super().send_headers()
        finally:
            wfile.holding = False

    def respond(self) -> None:
        try:
            super().respond()
        finally:
            self.conn.wfile.flush()


class Connection(cheroot_server.HTTPConnection):
    RequestHandlerClass = Request

    def __init__(self, server, sock, makefile=None) -> None:
        super().__init__(server, sock, make_socket_file)
