"""Plain HTTP helpers for tests: POST bytes, read a SOAP fault."""
from __future__ import annotations

import http.client

import httptools
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    @property
    def fault_code(self) -> str | None:
        fault = self.xml().find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
        return None if fault is None else fault.findtext("faultcode")

    @property
    def fault_string(self) -> str | None:
        fault = self.xml().find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
        return None if fault is None else fault.findtext("faultstring")


def post(url: str, body: bytes, content_type: str = "text/xml; charset=utf-8",
         headers: dict | None = None, method: str = "POST", context=None) -> Reply:
    u = urlsplit(url)
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=context, timeout=30)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    h = {"Content-Type": content_type}
    h.update(headers or {})
    try:
        conn.request(method, u.path or "/", body=body if method != "GET" else None, headers=h)
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


class AnswerReader:
    """httptools callbacks collecting (status, body) of each answer on a socket."""

    def __init__(self) -> None:
        self.done: list[tuple[int, bytes]] = []
        self.body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self.body))
        self.body = b""


def read_answers(sock, n: int) -> list[tuple[int, bytes]]:
    answers = AnswerReader()
    while len(answers.done) < n:
        data = sock.recv(65536)
        assert data, "server closed the connection early"
        answers.parser.feed_data(data)
    return answers.done
