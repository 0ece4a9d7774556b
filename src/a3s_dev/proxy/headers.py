"""Header rules of the proxy: what is hop-by-hop, how a request head is rewritten for the
upstream and a response head for the client, and which requests the direct path may take.

Pure: bytes and strings in, bytes and strings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from multidict import CIMultiDict

from a3s_dev.control.api import parse_count

# RFC 9110 §7.6.1 hop-by-hop headers, never forwarded. Upgrade is handled by the WebSocket path.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """`data` framed as one chunk of a chunked body: size line, data, CRLF (three pieces, so
    that a large piece is never copied into a new bytes object)."""
    return b"%x\r\n" % len(data), data, b"\r\n"


REQUEST_DROP = HOP_BY_HOP | {"expect"}  # we answer 100-continue ourselves
WS_DROP = HOP_BY_HOP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",  # passed as `protocols`, negotiated per side
    "sec-websocket-accept",
}
RESPONSE_DROP = HOP_BY_HOP
# Headers a Connection token may never remove (SPEC §8): the message's framing and its Host.
# Dropping Content-Length on a kept-alive upstream connection would let a body be read as the
# next request (request smuggling); the X-Forwarded-* are the proxy's own to set.
NEVER_HOP_BY_HOP = frozenset(
    {"content-length", "transfer-encoding", "host", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
     "x-a3s-hops"}
)
# Always the proxy's own: whatever a client sends in these is dropped, never passed through.
FORWARDED_OWN = frozenset({"x-forwarded-host", "x-forwarded-proto", "x-a3s-hops"})
# How many times one request has been through the proxy: a service that sends a request on to
# its own address (a dev server's proxy pointed at its own subdomain) passes the header along,
# and past MAX_HOPS the proxy answers 508 instead of going round again.
HOPS = "X-A3s-Hops"
MAX_HOPS = 8


def hops_of(value: str | None) -> int:
    """The hop count a request arrived with: 0 when it has none, or none that is a small number."""
    count = parse_count(value) if value is not None else None
    return count if count is not None and count < 1000 else 0


def header_tokens(value: str | None) -> set[str]:
    """The comma-separated tokens of a header such as Connection, trimmed and lower-cased."""
    if not value:
        return set()
    return {t.strip().lower() for t in value.split(",")} - {""}


def connection_named(value: str | None) -> set[str]:
    """The extra hop-by-hop headers a Connection header names: its tokens minus `keep-alive`
    and `close`, and minus the headers no token may remove (NEVER_HOP_BY_HOP)."""
    return header_tokens(value) - NEVER_HOP_BY_HOP - {"keep-alive", "close"}


def forward_headers(
    headers: Mapping[str, str] | Any,
    drop: frozenset[str],
    client_ip: str | None,
    host: str | None,
    proto: str = "http",
    hops: int = 1,
) -> CIMultiDict[str]:
    """Copy request headers minus `drop` and those named in Connection; set X-Forwarded-* and
    the hop count."""
    out: CIMultiDict[str] = CIMultiDict()
    getall = getattr(headers, "getall", None)  # every Connection header, as the direct path reads them
    extra = connection_named(", ".join(getall("Connection", [])) if getall else headers.get("Connection"))
    for key, value in headers.items():
        low = key.lower()
        if low in drop or low in extra or low in FORWARDED_OWN:
            continue
        out.add(key, value)
    prior = ", ".join(out.popall("X-Forwarded-For", []))
    if client_ip:
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    elif prior:
        out["X-Forwarded-For"] = prior
    if host is not None:
        out["X-Forwarded-Host"] = host
    out["X-Forwarded-Proto"] = proto
    out[HOPS] = str(hops)
    return out


def request_head(
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    client_ip: str | None,
    *,
    chunked: bool,
    connection: str | None,
    proto: str = "http",
    hops: int = 1,
) -> bytes:
    """The upstream request head in one string: original headers (`(name, value)` pairs)
    minus hop-by-hop ones and those `connection` (the Connection header) names, the original
    Host kept, X-Forwarded-For appended to, X-Forwarded-Host/-Proto and the hop count set, and
    our own body framing. `path` is sent in origin form (`origin_form`)."""
    extra = connection_named(connection)
    parts = [f"{method} {origin_form(path)} HTTP/1.1\r\n"]
    prior: str | None = None
    host: str | None = None
    for key, value in headers:
        low = key.lower()
        if low in REQUEST_DROP or low in extra or (chunked and low == "content-length") or low in FORWARDED_OWN:
            continue
        if low == "x-forwarded-for":
            prior = f"{prior}, {value}" if prior else value
            continue
        if low == "host":
            host = value
        parts.append(f"{key}: {value}\r\n")
    if client_ip:
        parts.append(f"X-Forwarded-For: {prior}, {client_ip}\r\n" if prior else f"X-Forwarded-For: {client_ip}\r\n")
    elif prior:
        parts.append(f"X-Forwarded-For: {prior}\r\n")
    if host is not None:
        parts.append(f"X-Forwarded-Host: {host}\r\n")
    parts.append(f"X-Forwarded-Proto: {proto}\r\n{HOPS}: {hops}\r\n")
    if chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    parts.append("\r\n")
    # surrogateescape: aiohttp decoded the request that way, so odd bytes go out unchanged
    return "".join(parts).encode("utf-8", "surrogateescape")


def origin_form(target: str) -> str:
    """A request target as an origin server expects it: an absolute-form target
    (`http://host/x?q`) becomes `/x?q`; origin form and `*` are kept as they are."""
    if target.startswith("/") or target == "*":
        return target
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def response_headers(
    pairs: Iterable[tuple[str, str]], *, keep_length: bool, connection: str | None = None
) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop ones, those the Connection header (in `pairs`
    or given as `connection`) names, and Content-Length when we re-frame the body."""
    out: CIMultiDict[str] = CIMultiDict()
    extra = connection_named(connection)
    for key, value in pairs:
        low = key.lower()
        if low == "connection":
            extra |= connection_named(value)
            continue
        if low in RESPONSE_DROP or (not keep_length and low == "content-length"):
            continue
        out.add(key, value)
    for name in extra:  # rare: headers the upstream marked hop-by-hop in Connection
        out.popall(name, None)
    return out


def response_head(
    status: int, reason: str, lines: bytes, *, connection: str | None, chunked: bool, close: bool
) -> bytes:
    """A response head for the client in one block, for the direct path: the upstream's header
    `lines` (each led by CRLF, hop-by-hop ones already cut by the pool) minus any header the
    upstream's `connection` names, then our own framing and connection headers."""
    if connection and connection.lower() not in ("keep-alive", "close"):
        named = connection_named(connection)
        if named:  # rare: headers the upstream marked hop-by-hop in Connection
            names = b"|".join(re.escape(n.encode("latin-1")) for n in sorted(named))
            lines = re.sub(rb"\r\n(?:" + names + rb")[ \t]*:[^\r\n]*", b"", lines, flags=re.IGNORECASE)
    return b"HTTP/1.1 %d %s%s%s%s\r\n\r\n" % (
        status,
        reason.encode("utf-8"),
        lines,
        b"\r\nTransfer-Encoding: chunked" if chunked else b"",
        b"\r\nConnection: close" if close else b"",
    )


class PlainRequest(NamedTuple):
    """A request head the direct path forwards itself (see `plain_request`)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    host: str | None
    connection: str | None  # the Connection header, whose tokens name more hop-by-hop headers
    close: bool  # the client asked to close the connection after this exchange


# Requests with these methods and no body may be sent upstream again when the upstream closed
# the connection without answering (RFC 9110 §9.2.2); no other request is ever sent twice.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT", "TRACE"})

# One pass over the whole head: an origin-form HTTP/1.1 request line with an idempotent method
# (RFC 9110 §9.2.2: one the direct path may hand to aiohttp's path to send again when the
# upstream dropped it unanswered), then header lines whose names are tokens and whose values
# hold no control characters (no obs-fold, no bare CR/LF). Anything else is for aiohttp's
# parser, which accepts or rejects it by the book.
_PLAIN_HEAD = re.compile(
    r"(?:GET|HEAD|OPTIONS|DELETE) /[!-~]* HTTP/1\.1"
    r"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*)*"
)
# Headers that mean more than "forward me": a body to stream, an interim response to send,
# a protocol switch. Requests carrying them take aiohttp's path.
# A request already through the proxy (its hop count) is aiohttp's too, which counts hops.
_NOT_PLAIN = frozenset({"transfer-encoding", "upgrade", "expect", "http2-settings", "x-a3s-hops"})


def plain_request(raw: bytes) -> PlainRequest | None:
    """Parse a request head (without its final blank line) for the proxy's direct path, or
    return None to leave the request to aiohttp.

    The direct path takes the common case only: HTTP/1.1, GET/HEAD/OPTIONS/DELETE, origin-form
    target, no body (no Transfer-Encoding, Content-Length absent or 0), no Expect, no Upgrade,
    exactly one Host.
    Everything else, including every malformed head, is None: aiohttp's parser handles it."""
    text = raw.decode("utf-8", "surrogateescape")
    if _PLAIN_HEAD.fullmatch(text) is None:
        return None
    lines = text.split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers: list[tuple[str, str]] = []
    host: str | None = None
    hosts = 0
    connection: str | None = None
    for line in lines[1:]:
        key, _, value = line.partition(":")
        value = value.strip(" \t")
        low = key.lower()
        if low == "host":
            host = value
            hosts += 1
        elif low == "content-length":
            if value != "0":
                return None
        elif low == "connection":
            connection = f"{connection}, {value}" if connection else value
        elif low in _NOT_PLAIN:
            return None
        headers.append((key, value))
    if hosts != 1:
        return None
    close = "close" in header_tokens(connection)
    return PlainRequest(method, target, headers, host, connection, close)
