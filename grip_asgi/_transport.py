"""How the Publisher posts to a plain ``http://`` publish endpoint: one short connection each.

Pushpin closes the connection after every publish, so a connection pool buys nothing there,
and httpx spends most of a millisecond of CPU per request around a new connection (anyio's
connect, the pool, its request and response models). On this path a publish is a POST
written by hand on a new asyncio connection, and the reply is read with a small strict
parser: a third of the CPU, so publishing keeps up with the proxy. (The same reader on h11
makes the whole publish 20-30% slower: ``benchmarks/publish.py`` compares them.) Errors are
httpx's own exceptions and the reply an ``httpx.Response``, so retries and errors work as on
httpx; a reply that breaks off after its status line is returned, marked (:data:`BROKEN`).
``https`` (Fastly Fanout) and a client you pass to the Publisher go through httpx.
:func:`post_blocking` does the same on a plain socket for the SyncPublisher.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Mapping
from typing import NamedTuple

import httpx

__all__ = (
    "BROKEN",
    "MAX_REPLY_BODY",
    "MAX_REPLY_HEAD",
    "MAX_REPLY_SIZE",
    "Reply",
    "ReplyParseError",
    "parse_reply",
    "post",
    "post_blocking",
)

#: The head of a reply (status line and headers) is at most this long.
MAX_REPLY_HEAD = 65_536
#: How much of a reply's body is read: a publish reply is a short text, and a PublishError
#: keeps the first 500 characters of an error. The rest of a longer body is not waited for.
MAX_REPLY_BODY = 65_536
#: The most bytes read for one reply (chunk size lines count too).
MAX_REPLY_SIZE = 1_048_576
#: The extension of a returned ``httpx.Response`` whose reply began and then broke off: why.
BROKEN = "grip_reply_broken"
_READ_SIZE = 65_536
_MAX_CHUNK_LINE = 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?")
# ASCII digits only (RFC 9110 §8.6); 18 are plenty, and int() of thousands is slow.
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")
_CLOSED = "the connection closed mid-reply"


class ReplyParseError(ValueError):
    """The bytes are not an HTTP/1.1 response, or end before a status line did."""


class Reply(NamedTuple):
    """A reply as :func:`parse_reply` reads it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    #: The body, or its first :data:`MAX_REPLY_BODY` bytes.
    body: bytes
    #: Why the reply broke off after its status line (e.g. "the connection closed mid-reply");
    #: None when it arrived whole, or was only cut at :data:`MAX_REPLY_BODY`.
    broken: str | None = None


class _Buffer:
    """The bytes of one reply as they arrive."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, chunk: bytes) -> Reply | None:
        """The reply once it can be read (an empty ``chunk`` is the end of the connection)."""
        self.data += chunk
        return parse_reply(self.data, eof=not chunk)

    def cut_short(self, why: str) -> Reply | None:
        """The reply so far, marked broken by ``why``, if a status line had arrived."""
        try:
            reply = parse_reply(self.data, eof=True)
        except ReplyParseError:
            return None
        return None if reply is None else reply._replace(broken=why)


async def post(
    url: str, headers: Mapping[str, str], body: bytes, timeout: httpx.Timeout
) -> httpx.Response:
    """POST ``body`` to an ``http://`` ``url`` on a connection of its own; the reply.

    Raises the ``httpx.RequestError`` that httpx raises for the same failure
    (``ConnectError``, ``ConnectTimeout``, ``WriteError``, ``WriteTimeout``, ``ReadError``,
    ``ReadTimeout``, ``RemoteProtocolError``), so the caller cannot tell the two paths apart,
    as long as no status line arrived. Once one did, the status decides: a reply that breaks
    off after it (the connection closes, resets or times out, or the body is malformed) is
    returned with what arrived, and the reason in ``response.extensions[BROKEN]``. A body
    longer than :data:`MAX_REPLY_BODY` is returned cut there. ``timeout.read`` bounds the
    whole reply (httpx: each read), which for a publish reply of a few bytes is the same thing.
    """
    target = _target(url)
    phase = "connect"
    writer = None
    buffer = _Buffer()
    try:
        async with asyncio.timeout(timeout.connect):
            reader, writer = await asyncio.open_connection(target.host, target.port)
        phase = "write"
        async with asyncio.timeout(timeout.write):
            writer.write(_request_bytes(target, headers, body))
            await writer.drain()
        phase = "read"
        async with asyncio.timeout(timeout.read):
            while (reply := buffer.feed(await reader.read(_READ_SIZE))) is None:
                pass
    except (OSError, ReplyParseError) as exc:  # TimeoutError is an OSError
        reply = _broken_or_raise(phase, exc, url, buffer)
    finally:
        if writer is not None:
            writer.close()
    return _response(reply)


def post_blocking(
    url: str, headers: Mapping[str, str], body: bytes, timeout: httpx.Timeout
) -> httpx.Response:
    """The blocking twin of :func:`post`, on a socket; ``timeout.read`` bounds each read."""
    target = _target(url)
    phase = "connect"
    sock = None
    buffer = _Buffer()
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout.connect)
        phase = "write"
        sock.settimeout(timeout.write)
        try:
            sock.sendall(_request_bytes(target, headers, body))
        except ConnectionError:
            # A server that refuses a long body (Pushpin: over 1 MB) answers and closes before
            # reading the rest; its answer, when there is one, says more than the write error.
            reply = _early_reply(sock, buffer, timeout.read)
            if reply is None:
                raise
        else:
            phase = "read"
            sock.settimeout(timeout.read)
            while (reply := buffer.feed(sock.recv(_READ_SIZE))) is None:
                pass
    except (OSError, ReplyParseError) as exc:  # socket.timeout is TimeoutError, an OSError
        reply = _broken_or_raise(phase, exc, url, buffer)
    finally:
        if sock is not None:
            sock.close()
    return _response(reply)


def _early_reply(sock: socket.socket, buffer: _Buffer, seconds: float | None) -> Reply | None:
    sock.settimeout(seconds)
    try:
        while (reply := buffer.feed(sock.recv(_READ_SIZE))) is None:
            pass
    except ReplyParseError:
        return None
    except OSError as exc:
        return buffer.cut_short(f"mid-reply: {exc}")
    return reply


def _broken_or_raise(phase: str, exc: Exception, url: str, buffer: _Buffer) -> Reply:
    """A reply that broke off after its status line; any other failure raises httpx's error."""
    if phase == "read" and not isinstance(exc, ReplyParseError):
        why = "timed out mid-reply" if isinstance(exc, TimeoutError) else f"mid-reply: {exc}"
        reply = buffer.cut_short(why)
        if reply is not None:
            return reply
    raise _httpx_error(phase, exc, url) from exc


def _response(reply: Reply) -> httpx.Response:
    extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
    if reply.broken is not None:
        extensions[BROKEN] = reply.broken
    return httpx.Response(
        reply.status, headers=reply.headers, content=reply.body, extensions=extensions
    )


_ERRORS: dict[str, tuple[type[httpx.TransportError], type[httpx.TimeoutException], str]] = {
    "connect": (httpx.ConnectError, httpx.ConnectTimeout, "connecting"),
    "write": (httpx.WriteError, httpx.WriteTimeout, "sending the request"),
    "read": (httpx.ReadError, httpx.ReadTimeout, "reading the reply"),
}


def _httpx_error(phase: str, exc: Exception, url: str) -> httpx.RequestError:
    request = httpx.Request("POST", url)  # httpx's errors name the request
    if isinstance(exc, ReplyParseError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    error, timed_out, doing = _ERRORS[phase]
    if isinstance(exc, TimeoutError):
        return timed_out(f"timed out {doing}", request=request)
    return error(str(exc) or type(exc).__name__, request=request)


class _Target(NamedTuple):
    host: str
    port: int
    host_header: str
    path: str  # percent-encoded, with the query


@functools.lru_cache(maxsize=64)  # a publisher posts to the same few URLs
def _target(url: str) -> _Target:
    parsed = httpx.URL(url)  # encodes the path as httpx would send it
    return _Target(
        parsed.host,
        parsed.port or 80,
        parsed.netloc.decode("ascii"),  # host[:port], never the credentials
        parsed.raw_path.decode("ascii"),
    )


def _request_bytes(target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"Content-Length: {len(body)}",
    ]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise httpx.LocalProtocolError(f"the {name} header contains a line break")
        lines.append(f"{name}: {value}")
    lines.append("Connection: close\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


def parse_reply(data: bytes, *, eof: bool) -> Reply | None:
    """Parse an HTTP/1.1 response: a :class:`Reply`, or None for "read more".

    ``eof`` says the server closed the connection after ``data``. Informational (1xx)
    responses are skipped. The body is framed by ``Transfer-Encoding: chunked``, else by
    ``Content-Length``, else by the end of the connection, and read up to
    :data:`MAX_REPLY_BODY` bytes. Once the final status line is read, the reply is returned
    even if it breaks off (``Reply.broken`` says how). Raises :class:`ReplyParseError` for
    anything before that: a malformed or oversized head, or a connection closed before a
    status line.
    """
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        if end < 0 or end > MAX_REPLY_HEAD:  # informational heads count too
            return _head_cut_short(data, start, eof)
        lines = data[start:end].split(b"\r\n")
        status = _status(lines[0])
        headers = [_header(line) for line in lines[1:]]
        start = end + 4
        if status >= 200:
            break
    body, done, broken = _body(data[start:], headers, status)
    if broken is None and not done and len(body) < MAX_REPLY_BODY:
        if not eof and len(data) <= MAX_REPLY_SIZE:
            return None
        broken = _CLOSED if eof else f"the reply is over {MAX_REPLY_SIZE} bytes"
        done = eof and _ends_with_the_connection(headers)
    return Reply(status, headers, body[:MAX_REPLY_BODY], None if done else broken)


def _head_cut_short(data: bytes, start: int, eof: bool) -> Reply | None:
    if len(data) > MAX_REPLY_HEAD:
        raise ReplyParseError(f"the reply's head is over {MAX_REPLY_HEAD} bytes")
    if not eof:
        return None
    line_end = data.find(b"\r\n", start)
    if line_end >= 0:
        status = _status(data[start:line_end])
        if status >= 200:  # the status is known: the reply began
            return Reply(status, [], b"", _CLOSED)
    if not data:
        raise ReplyParseError("the connection closed before any reply")
    raise ReplyParseError("the connection closed before the reply's headers ended")


def _status(line: bytes) -> int:
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise ReplyParseError(f"not an HTTP/1.1 status line: {line[:80]!r}")
    return int(match[1])


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
        raise ReplyParseError(f"not a header line: {line[:80]!r}")
    return name, value.strip(b" \t")


def _ends_with_the_connection(headers: list[tuple[bytes, bytes]]) -> bool:
    """The body is framed by the end of the connection (no length, not chunked)."""
    return not any(n.lower() in (b"transfer-encoding", b"content-length") for n, _ in headers)


def _body(
    rest: bytes, headers: list[tuple[bytes, bytes]], status: int
) -> tuple[bytes, bool, str | None]:
    """``(body so far, whole, why it broke)``; raises for framing headers that make no sense."""
    if status in (204, 304):
        return b"", True, None
    encodings = [v.lower() for n, v in headers if n.lower() == b"transfer-encoding"]
    lengths = {v for n, v in headers if n.lower() == b"content-length"}
    if encodings:
        if encodings[-1].rpartition(b",")[2].strip() != b"chunked":
            raise ReplyParseError("a Transfer-Encoding the reply does not end with chunked")
        return _dechunk(rest)
    if lengths:
        value = lengths.pop()
        if lengths or not _CONTENT_LENGTH.fullmatch(value):
            raise ReplyParseError(f"a bad Content-Length: {sorted(lengths | {value})!r}")
        length = int(value)
        return rest[:length], len(rest) >= length, None
    return rest, False, None  # ends with the connection


def _dechunk(rest: bytes) -> tuple[bytes, bool, str | None]:
    chunks: list[bytes] = []
    pos = 0
    while True:
        line_end = rest.find(b"\r\n", pos)
        if line_end < 0 and len(rest) - pos <= _MAX_CHUNK_LINE:
            return b"".join(chunks), False, None  # the size line is still on its way
        if line_end < 0 or line_end - pos > _MAX_CHUNK_LINE:
            return b"".join(chunks), False, "a chunk size line over 1024 bytes"
        match = _CHUNK_SIZE.fullmatch(rest, pos, line_end)
        if match is None:
            return b"".join(chunks), False, f"a bad chunk size line: {rest[pos:line_end][:80]!r}"
        size = int(match[1], 16)
        pos = line_end + 2
        if size == 0:
            # Trailers may follow; nothing in them is needed, and the connection is closed.
            return b"".join(chunks), True, None
        chunks.append(rest[pos : pos + size])
        if len(rest) < pos + size + 2:
            return b"".join(chunks), False, None
        if rest[pos + size : pos + size + 2] != b"\r\n":
            return b"".join(chunks), False, "a chunk does not end with CRLF"
        pos += size + 2
