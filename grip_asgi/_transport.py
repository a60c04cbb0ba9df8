"""How the Publisher posts to a plain ``http://`` publish endpoint: one short connection each.

Pushpin closes the connection after every publish, so a connection pool buys nothing there,
and httpx spends most of a millisecond of CPU per request around a new connection (anyio's
connect, the pool, its request and response models). On this path a publish is a POST
written by hand on a new asyncio connection, and the reply is read with a small strict
parser: a third of the CPU, so publishing keeps up with the proxy. Errors are httpx's own
exceptions and the reply an ``httpx.Response``, so retries and errors work as on httpx.
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

__all__ = ("MAX_REPLY_SIZE", "ReplyParseError", "parse_reply", "post", "post_blocking")

#: A publish reply is a short text; a longer one is a misbehaving server.
MAX_REPLY_SIZE = 1_048_576
_READ_SIZE = 65_536
_MAX_CHUNK_LINE = 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?")


class ReplyParseError(ValueError):
    """The bytes are not an HTTP/1.1 response."""


async def post(
    url: str, headers: Mapping[str, str], body: bytes, timeout: httpx.Timeout
) -> httpx.Response:
    """POST ``body`` to an ``http://`` ``url`` on a connection of its own; the reply.

    Raises the ``httpx.RequestError`` that httpx raises for the same failure
    (``ConnectError``, ``ConnectTimeout``, ``WriteError``, ``WriteTimeout``, ``ReadError``,
    ``ReadTimeout``, ``RemoteProtocolError``), so the caller cannot tell the two paths apart.
    One difference: ``timeout.read`` bounds the whole reply (httpx: each read), which for a
    publish reply of a few bytes is the same thing.
    """
    target = _target(url)
    phase = "connect"
    writer = None
    try:
        async with asyncio.timeout(timeout.connect):
            reader, writer = await asyncio.open_connection(target.host, target.port)
        phase = "write"
        async with asyncio.timeout(timeout.write):
            writer.write(_request_bytes(target, headers, body))
            await writer.drain()
        phase = "read"
        async with asyncio.timeout(timeout.read):
            reply = await _read_reply(reader)
    except (OSError, ReplyParseError) as exc:  # TimeoutError is an OSError
        raise _httpx_error(phase, exc, url) from exc
    finally:
        if writer is not None:
            writer.close()
    return _response(*reply)


def post_blocking(
    url: str, headers: Mapping[str, str], body: bytes, timeout: httpx.Timeout
) -> httpx.Response:
    """The blocking twin of :func:`post`, on a socket; ``timeout.read`` bounds each read."""
    target = _target(url)
    phase = "connect"
    sock = None
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout.connect)
        phase = "write"
        sock.settimeout(timeout.write)
        sock.sendall(_request_bytes(target, headers, body))
        phase = "read"
        sock.settimeout(timeout.read)
        reply = _read_reply_blocking(sock)
    except (OSError, ReplyParseError) as exc:  # socket.timeout is TimeoutError, an OSError
        raise _httpx_error(phase, exc, url) from exc
    finally:
        if sock is not None:
            sock.close()
    return _response(*reply)


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, content=body, extensions={"http_version": b"HTTP/1.1"}
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


def _read_reply_blocking(sock: socket.socket) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data = b""
    while True:
        chunk = sock.recv(_READ_SIZE)
        data += chunk
        reply = parse_reply(data, eof=not chunk)
        if reply is not None:
            return reply


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data = b""
    while True:
        chunk = await reader.read(_READ_SIZE)
        data += chunk
        reply = parse_reply(data, eof=not chunk)
        if reply is not None:
            return reply


def parse_reply(data: bytes, *, eof: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """Parse a whole HTTP/1.1 response: ``(status, headers, body)``, or None for "read more".

    ``eof`` says the server closed the connection after ``data``. Informational (1xx)
    responses are skipped. The body is framed by ``Transfer-Encoding: chunked``, else by
    ``Content-Length``, else by the end of the connection. Raises :class:`ReplyParseError`
    for anything that is not such a response, cut short or over :data:`MAX_REPLY_SIZE`.
    """
    if len(data) > MAX_REPLY_SIZE:
        raise ReplyParseError(f"the reply is over {MAX_REPLY_SIZE} bytes")
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            if eof:
                raise ReplyParseError("the connection closed before the reply's headers ended")
            return None
        lines = data[start:end].split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise ReplyParseError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(match[1])
        headers = [_header(line) for line in lines[1:]]
        start = end + 4
        if status >= 200:
            break
    body = _body(data[start:], headers, status, eof)
    return None if body is None else (status, headers, body)


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
        raise ReplyParseError(f"not a header line: {line[:80]!r}")
    return name, value.strip(b" \t")


def _body(rest: bytes, headers: list[tuple[bytes, bytes]], status: int, eof: bool) -> bytes | None:
    if status in (204, 304):
        return b""
    encodings = [v.lower() for n, v in headers if n.lower() == b"transfer-encoding"]
    lengths = {v for n, v in headers if n.lower() == b"content-length"}
    if encodings:
        if encodings[-1].rpartition(b",")[2].strip() != b"chunked":
            raise ReplyParseError("a Transfer-Encoding the reply does not end with chunked")
        return _dechunk(rest, eof)
    if lengths:
        value = lengths.pop()
        # 18 digits are plenty; int() of thousands is slow, and refused past 4300.
        if lengths or not value.isdigit() or len(value) > 18:
            raise ReplyParseError(f"a bad Content-Length: {sorted(lengths | {value})!r}")
        length = int(value)
        if len(rest) >= length:
            return rest[:length]
        if eof:
            raise ReplyParseError("the connection closed before the reply's body ended")
        return None
    return rest if eof else None


def _dechunk(rest: bytes, eof: bool) -> bytes | None:
    chunks: list[bytes] = []
    pos = 0
    while True:
        line_end = rest.find(b"\r\n", pos)
        if line_end < 0 and not eof and len(rest) - pos <= _MAX_CHUNK_LINE:
            return None  # the size line is still on its way
        if line_end < 0 or line_end - pos > _MAX_CHUNK_LINE:
            raise ReplyParseError("a bad or cut-short chunk size line in the reply")
        match = _CHUNK_SIZE.fullmatch(rest, pos, line_end)
        if match is None:
            raise ReplyParseError(f"a bad chunk size line: {rest[pos:line_end][:80]!r}")
        size = int(match[1], 16)
        pos = line_end + 2
        if size == 0:
            # Trailers may follow; nothing in them is needed, and the connection is closed.
            return b"".join(chunks)
        if len(rest) < pos + size + 2:
            if eof:
                raise ReplyParseError("the connection closed inside a chunk")
            return None
        if rest[pos + size : pos + size + 2] != b"\r\n":
            raise ReplyParseError("a chunk does not end with CRLF")
        chunks.append(rest[pos : pos + size])
        pos += size + 2
