"""The Publisher's own HTTP/1.1 path for ``http://`` proxies (``grip_asgi._transport``).

``parse_reply`` is checked against h11 on generated replies, cut at every offset and on
malformed ones; ``post`` and the Publisher against real asyncio servers on 127.0.0.1.
(h11 itself does not read the replies: it costs more than a tenth of the publish path, see
``benchmarks/publish.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grip_asgi import (
    PublishConnectionError,
    Publisher,
    PublishError,
    PublishTimeoutError,
    SyncPublisher,
)
from grip_asgi._errors import PublishReplyError
from grip_asgi._transport import (
    BROKEN,
    MAX_REPLY_BODY,
    MAX_REPLY_HEAD,
    MAX_REPLY_SIZE,
    Reply,
    ReplyParseError,
    parse_reply,
    post,
    post_blocking,
)

Parsed = tuple[int, list[tuple[bytes, bytes]], bytes]

# --- Generated replies ------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
VCHAR = "".join(map(chr, range(0x21, 0x7F)))
FRAMING_HEADERS = {"content-length", "transfer-encoding"}

tokens = st.text(TCHAR, min_size=1, max_size=10)
header_names = tokens.filter(lambda name: name.lower() not in FRAMING_HEADERS)
ows = st.sampled_from(["", " ", "\t", " \t "])


@st.composite
def header_values(draw: st.DrawFn) -> tuple[str, str]:
    """A field value as written (with optional surrounding whitespace) and as parsed."""
    words = draw(st.lists(st.text(VCHAR, min_size=1, max_size=6), max_size=3))
    value = ""
    for n, word in enumerate(words):
        value += (draw(st.sampled_from([" ", "\t", "  "])) if n else "") + word
    return draw(ows) + value + draw(ows), value


@st.composite
def header_lines(draw: st.DrawFn, names: st.SearchStrategy[str] = header_names) -> list[Any]:
    """``(line, (name, value))`` pairs: a header line and what a parser should report."""
    found = []
    for name, (written, value) in draw(st.lists(st.tuples(names, header_values()), max_size=5)):
        found.append((f"{name}:{written}\r\n", (name.encode(), value.encode())))
    return found


def chunk_size_line(draw: st.DrawFn, size: int) -> bytes:
    digits = format(size, draw(st.sampled_from(["x", "X"])))
    digits = "0" * draw(st.integers(0, 8 - len(digits))) + digits
    extensions = draw(st.lists(st.tuples(tokens, st.none() | tokens), max_size=2))
    line = digits + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in extensions)
    return (line + draw(ows) + "\r\n").encode()


@dataclass(frozen=True)
class Generated:
    data: bytes
    expected: Reply
    #: Where the final response's status line ends (after its CRLF).
    status_end: int
    #: Where the final response's head ends.
    head_end: int
    #: The shortest prefix that holds the whole reply; None: only the connection's end does.
    complete_at: int | None


@st.composite
def replies(draw: st.DrawFn, max_body: int = 200) -> Generated:
    data = b""
    for _ in range(draw(st.integers(0, 2))):  # 100 Continue, 103 Early Hints
        status = draw(st.sampled_from([100, 103]))
        data += f"HTTP/1.1 {status} Informational\r\n".encode()
        data += "".join(line for line, _ in draw(header_lines())).encode() + b"\r\n"

    status = draw(
        st.sampled_from([204, 304]) if draw(st.integers(0, 4)) == 0 else st.integers(200, 599)
    )
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    version = (
        "HTTP/1.1" if framing == "chunked" else draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    )
    reason = draw(st.none() | st.text(VCHAR + " \t", max_size=16))
    no_body = status in (204, 304)
    body = (
        b""
        if no_body
        else draw(st.integers(0, max_body).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    )

    lines = draw(header_lines())
    if framing == "length":
        name = draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
        value = str(draw(st.integers(0, 99)) if no_body else len(body))
        framing_header: Any = (f"{name}:{draw(ows)}{value}{draw(ows)}\r\n", (name, value))
    elif framing == "chunked":
        name = draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding"]))
        value = draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))
        framing_header = (f"{name}: {value}\r\n", (name, value))
    if framing != "close":
        line, (name, value) = framing_header
        lines.insert(draw(st.integers(0, len(lines))), (line, (name.encode(), value.encode())))

    status_line = f"{version} {status}" + ("" if reason is None else " " + reason)
    data += (status_line + "\r\n").encode()
    status_end = len(data)
    data += ("".join(line for line, _ in lines) + "\r\n").encode()
    head_end = len(data)
    expected = Reply(status, [parsed for _, parsed in lines], body)

    complete_at: int | None = len(data)
    if no_body:
        pass
    elif framing == "length":
        data += body
        complete_at = len(data)
    elif framing == "chunked":
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=6)))
        bounds = [0, *(cut for cut in cuts if cut < len(body)), len(body)]
        for start, end in zip(bounds, bounds[1:], strict=False):
            if end > start:
                data += chunk_size_line(draw, end - start) + body[start:end] + b"\r\n"
        data += chunk_size_line(draw, 0)
        complete_at = len(data)
        data += "".join(line for line, _ in draw(header_lines())).encode() + b"\r\n"  # trailers
    else:
        data += body
        complete_at = None
    return Generated(data, expected, status_end, head_end, complete_at)


def h11_reply(data: bytes, *, eof: bool) -> Parsed:
    """What h11, as the client of a POST, makes of ``data``."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("Host", "h"), ("Content-Length", "0")])
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    response = None
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            assert isinstance(event, h11.InformationalResponse), event
    assert response is not None
    return response.status_code, list(response.headers.raw_items()), body


def normalized(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Names lowercased, and the Transfer-Encoding value too (h11 lowercases it)."""
    out = []
    for name, value in headers:
        name = name.lower()
        out.append((name, value.lower() if name == b"transfer-encoding" else value))
    return out


@settings(max_examples=200, deadline=None)
@given(replies())
def test_parse_reply_agrees_with_h11(reply: Generated) -> None:
    eof = reply.complete_at is None
    status, headers, body = h11_reply(reply.data, eof=eof)
    assert parse_reply(reply.data, eof=eof) == reply.expected
    assert (status, normalized(headers), body) == (
        reply.expected[0],
        normalized(reply.expected[1]),
        reply.expected[2],
    )


@settings(max_examples=120, deadline=None)
@given(replies(max_body=40))
def test_parse_reply_on_every_prefix(reply: Generated) -> None:
    data, expected, complete_at = reply.data, reply.expected, reply.complete_at
    status, headers, body, _ = expected
    if complete_at is None:
        assert parse_reply(data, eof=False) is None
        assert parse_reply(data, eof=True) == expected
    else:
        assert parse_reply(data, eof=False) == expected
        assert parse_reply(data, eof=True) == expected
    for n in range(len(data)):
        prefix = data[:n]
        complete = complete_at is not None and n >= complete_at
        # More to come: "read more" until the reply is whole, then the reply, never an error.
        assert parse_reply(prefix, eof=False) == (expected if complete else None), n
        if complete:
            assert parse_reply(prefix, eof=True) == expected
        elif n < reply.status_end:  # closed before the status line: no reply at all
            with pytest.raises(ReplyParseError):
                parse_reply(prefix, eof=True)
        elif complete_at is None and n >= reply.head_end:  # the close ends such a body
            assert parse_reply(prefix, eof=True) == Reply(
                status, headers, body[: n - reply.head_end]
            )
        else:  # the status is known, and the rest broke off
            cut = parse_reply(prefix, eof=True)
            assert cut is not None and cut.broken == "the connection closed mid-reply", n
            assert cut.status == status
            assert cut.headers == (headers if n >= reply.head_end else [])
            assert body.startswith(cut.body)


fragments = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 404",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 204 No Content",
        b"\r\n",
        b"\r\n\r\n",
        b"Content-Length: 3",
        b"Content-Length: x",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",
        b"X: y",
        b"3",
        b"0",
        b"zz",
        b";ext",
        b":",
        b" ",
        b"abc",
        b"\r",
        b"\n",
    ]
) | st.binary(max_size=4)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(fragments, max_size=24).map(b"".join), st.lists(fragments, max_size=6).map(b"".join)
)
def test_parse_reply_answers_or_raises_reply_parse_error(data: bytes, more: bytes) -> None:
    for eof in (False, True):
        try:
            reply = parse_reply(data, eof=eof)
        except ReplyParseError:
            continue
        if reply is None:
            assert not eof  # a closed connection always ends in an answer or an error
            continue
        status, headers, body, broken = reply
        assert 200 <= status <= 999 and isinstance(body, bytes)
        assert all(name and b":" not in name for name, _ in headers)
        if not eof:  # once whole, or broken, later bytes change nothing
            assert parse_reply(data + more, eof=False) == reply
            assert parse_reply(data + more, eof=True) == reply


# --- Malformed replies ------------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "eof", "message"),
    [
        (b"FOO\r\n\r\n", False, r"not an HTTP/1\.1 status line: b'FOO'"),
        (b"HTTP/2 200\r\n\r\n", False, r"not an HTTP/1\.1 status line: b'HTTP/2 200'"),
        (b"HTTP/1.1 20 OK\r\n\r\n", False, r"not an HTTP/1\.1 status line: b'HTTP/1\.1 20 OK'"),
        (b"HTTP/1.1 200OK\r\n\r\n", False, r"not an HTTP/1\.1 status line"),
        (b"HTTP/1.1 100 Continue\r\n\r\nFOO\r\n\r\n", False, r"not an HTTP/1\.1 status line"),
        (b"FOO\r\n", True, r"not an HTTP/1\.1 status line: b'FOO'"),
        (OK + b"NoColon\r\n\r\n", False, r"not a header line: b'NoColon'"),
        (OK + b"X-A : 1\r\n\r\n", False, r"not a header line: b'X-A : 1'"),
        (OK + b": empty name\r\n\r\n", False, r"not a header line"),
        (OK + b"X A: 1\r\n\r\n", False, r"not a header line: b'X A: 1'"),
        (OK + b"X-A\x0c: 1\r\n\r\n", False, r"not a header line"),
        (OK + b"X-A: 1\r\n folded\r\n\r\n", False, r"not a header line: b' folded'"),
        (OK + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", False, "bad Content-Length"),
        (OK + b"Content-Length: abc\r\n\r\n", False, r"bad Content-Length: \[b'abc'\]"),
        (OK + b"Content-Length: -1\r\n\r\n", False, "bad Content-Length"),
        (OK + b"Content-Length: 1 2\r\n\r\n", False, "bad Content-Length"),
        (OK + b"Content-Length: +1\r\n\r\n", False, "bad Content-Length"),
        (OK[:-2], True, "closed before the reply's headers ended"),  # no CRLF yet
        (b"HTTP/1.1 1", True, "closed before the reply's headers ended"),
        (b"HTTP/1.1 100 Continue\r\n", True, "closed before the reply's headers ended"),
        (b"", True, "the connection closed before any reply"),
        (OK + b"Transfer-Encoding: gzip\r\n\r\nabc", True, "does not end with chunked"),
        (OK + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", False, "not end with chunked"),
        (OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", False, "chunked"),
    ],
)
def test_replies_without_a_usable_status_raise(data: bytes, eof: bool, message: str) -> None:
    with pytest.raises(ReplyParseError, match=message):
        parse_reply(data, eof=eof)


CLOSED = "the connection closed mid-reply"


@pytest.mark.parametrize(
    ("data", "eof", "body", "broken"),
    [
        (OK + b"Content-Le", True, b"", CLOSED),  # the status line arrived
        (OK, True, b"", CLOSED),
        (OK + b"Content-Length: 5\r\n\r\nabc", True, b"abc", CLOSED),
        (CHUNKED + b"zz\r\n", False, b"", "a bad chunk size line: b'zz'"),
        (CHUNKED + b"\r\n", False, b"", "a bad chunk size line: b''"),
        (CHUNKED + b"-1\r\n", False, b"", "a bad chunk size line: b'-1'"),
        (CHUNKED + b"123456789\r\nx", False, b"", "a bad chunk size line"),  # over 8 digits
        (CHUNKED + b"5", True, b"", CLOSED),
        (CHUNKED + b"5;" + b"x" * 1100, False, b"", "a chunk size line over 1024 bytes"),
        (CHUNKED + b"3\r\nabcX\r\n", False, b"abc", "a chunk does not end with CRLF"),
        (CHUNKED + b"3\r\nabc\n\r\n", False, b"abc", "a chunk does not end with CRLF"),
        (CHUNKED + b"5\r\nab", True, b"ab", CLOSED),
        (CHUNKED + b"2\r\nab\r\n", True, b"ab", CLOSED),
        (CHUNKED + b"2\r\nab\r\n1\r\nc\r\nzz\r\n", False, b"abc", "a bad chunk size line"),
    ],
)
def test_replies_that_break_after_the_status_line_keep_it(
    data: bytes, eof: bool, body: bytes, broken: str
) -> None:
    reply = parse_reply(data, eof=eof)
    assert reply is not None
    assert (reply.status, reply.body) == (200, body)
    assert reply.broken is not None and reply.broken.startswith(broken)


def test_the_last_transfer_coding_decides() -> None:
    data = (
        OK + b"Transfer-Encoding: gzip, Chunked\r\nContent-Length: 99\r\n\r\n2\r\nab\r\n0\r\n\r\n"
    )
    reply = parse_reply(data, eof=False)
    assert reply is not None and (reply.status, reply.body) == (200, b"ab")  # chunked wins


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_long_body_is_read_up_to_max_reply_body(framing: str) -> None:
    body = bytes(range(256)) * (2 * MAX_REPLY_BODY // 256)
    head = {
        "length": f"Content-Length: {len(body)}\r\n\r\n".encode(),
        "chunked": b"Transfer-Encoding: chunked\r\n\r\n",
        "close": b"\r\n",
    }[framing]
    wire = body
    if framing == "chunked":
        wire = b"".join(
            b"1000\r\n" + body[n : n + 4096] + b"\r\n" for n in range(0, len(body), 4096)
        )
    data = b"HTTP/1.1 413 Too Large\r\n" + head + wire
    short_of_it = data[: len(data) - len(wire) + MAX_REPLY_BODY - 1]
    assert parse_reply(short_of_it, eof=False) is None
    reply = parse_reply(data[: len(data) - len(wire) // 2], eof=False)  # half of it arrived
    assert reply == Reply(413, reply.headers if reply else [], body[:MAX_REPLY_BODY])


def test_a_head_over_max_reply_head() -> None:
    head = OK + b"X: " + b"x" * MAX_REPLY_HEAD
    with pytest.raises(ReplyParseError, match=f"the reply's head is over {MAX_REPLY_HEAD} bytes"):
        parse_reply(head, eof=False)
    informational = b"HTTP/1.1 100 Continue\r\nX: " + b"x" * 1000 + b"\r\n\r\n"
    with pytest.raises(ReplyParseError, match="head is over"):  # 1xx heads count too
        parse_reply(informational * (MAX_REPLY_HEAD // 1000), eof=False)


def test_a_reply_over_max_reply_size_stops_being_read() -> None:
    tiny_chunks = CHUNKED + b"1;" + b"e" * 1000 + b"\r\nx\r\n"
    data = tiny_chunks + (b"1;" + b"e" * 1000 + b"\r\nx\r\n") * (MAX_REPLY_SIZE // 1000)
    reply = parse_reply(data, eof=False)
    assert reply is not None and reply.broken == f"the reply is over {MAX_REPLY_SIZE} bytes"
    assert reply.status == 200 and set(reply.body) == {ord("x")}


def test_a_content_length_too_long_for_int() -> None:
    with pytest.raises(ReplyParseError, match="Content-Length"):
        parse_reply(OK + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", eof=False)


# --- A local server ---------------------------------------------------------------------------


@dataclass
class Serve:
    """What the server does on one connection, once it read the request."""

    #: The reply: bytes, pieces written a moment apart, or made from the request's bytes.
    data: bytes | list[bytes] | Callable[[bytes], bytes] = b""
    #: False: keep the connection open until the client closes it.
    close: bool = True
    #: Answer after this many bytes of the request, without reading the rest (None: all).
    read_only: int | None = None


@dataclass
class Server:
    replies: list[Serve]
    port: int = 0
    connections: int = 0
    finished: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        reply = self.replies[min(self.connections, len(self.replies) - 1)]
        self.connections += 1
        raw = b""
        try:
            raw = await (
                read_request(reader) if reply.read_only is None else reader.read(reply.read_only)
            )
            data = reply.data(raw) if callable(reply.data) else reply.data
            if raw:
                for n, piece in enumerate(data if isinstance(data, list) else [data]):
                    if n:
                        await asyncio.sleep(0.005)
                    writer.write(piece)
                    await writer.drain()
            if not reply.close:
                await reader.read()  # until the client closes
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.finished.put_nowait(raw)

    async def requests(self, count: int) -> list[bytes]:
        """The bytes of the first ``count`` connections, once each has finished."""
        async with asyncio.timeout(2):
            return [await self.finished.get() for _ in range(count)]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's bytes (its head and Content-Length body), or what came before EOF."""
    data = b""
    while True:
        head, blank, rest = data.partition(b"\r\n\r\n")
        if blank:
            length = re.search(rb"(?im)^content-length:[ \t]*([0-9]+)", head)
            if len(rest) >= (int(length[1]) if length else 0):
                return data
        chunk = await reader.read(65536)
        if not chunk:
            return data
        data += chunk


@contextlib.asynccontextmanager
async def serve(*replies: Serve) -> AsyncIterator[Server]:
    server = Server(list(replies))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()
        pending: set[asyncio.Task[Any]] = set()
        if server.tasks:  # let each connection finish: the client has closed its end
            _, pending = await asyncio.wait(server.tasks, timeout=2)
        for task in pending:
            task.cancel()
    assert not pending, "a connection was still open"


def parse_request(raw: bytes) -> tuple[h11.Request, bytes]:
    """The one request in ``raw``, read by h11 as a server would."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    body = b""
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)
    assert conn.trailing_data == (b"", False)  # nothing after it
    return request, body


def http_reply(status: int, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in headers)
    return f"HTTP/1.1 {status} X\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


TIMEOUT = httpx.Timeout(2)

# --- post and post_blocking ------------------------------------------------------------------

SendPost = Callable[[str, dict[str, str], bytes, httpx.Timeout], Awaitable[httpx.Response]]


@pytest.fixture(params=["post", "post_blocking"])
def send_post(request: pytest.FixtureRequest) -> SendPost:
    """Each server test runs with the asyncio post and, in a thread, its blocking twin."""
    if request.param == "post":
        return post

    async def blocking(
        url: str, headers: dict[str, str], body: bytes, timeout: httpx.Timeout
    ) -> httpx.Response:
        return await asyncio.to_thread(post_blocking, url, headers, body, timeout)

    return blocking


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "target"),
    [("/publish/?x=1&y=a%20b", b"/publish/?x=1&y=a%20b"), ("", b"/"), ("?x=1", b"/?x=1")],
)
async def test_post_sends_one_request_and_returns_the_reply(
    send_post: SendPost, path: str, target: bytes
) -> None:
    reply = http_reply(202, b"Published\n", "Content-Type: text/plain", "X-Reply:  yes ")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t0k"}
    async with serve(Serve(reply)) as server:
        url = f"http://user:pw@127.0.0.1:{server.port}{path}"
        response = await send_post(url, headers, b'{"items":[]}', TIMEOUT)
        [raw] = await server.requests(1)
    assert server.connections == 1
    request, body = parse_request(raw)
    assert (request.method, request.target, request.http_version) == (b"POST", target, b"1.1")
    assert sorted(request.headers) == sorted(
        [
            (b"host", f"127.0.0.1:{server.port}".encode()),
            (b"content-length", b"12"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer t0k"),
            (b"connection", b"close"),
        ]
    )
    assert body == b'{"items":[]}'
    assert response.status_code == 202
    assert response.http_version == "HTTP/1.1"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-reply"] == "yes"
    assert response.text == "Published\n"


@pytest.mark.anyio
async def test_post_reads_a_chunked_reply_arriving_in_pieces(send_post: SendPost) -> None:
    pieces = [
        OK + b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        b"\r\n5\r\nPubl",
        b"i\r\n5;ext=1\r\nshed\n\r\n0",
        b"\r\nX-Trailer: t\r\n\r\n",
    ]
    async with serve(Serve(pieces)) as server:
        response = await send_post(server.url, {}, b"", TIMEOUT)
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "Published\n"


@pytest.mark.anyio
async def test_post_reads_a_reply_ended_by_the_close(send_post: SendPost) -> None:
    async with serve(Serve([OK + b"\r\nPubli", b"shed\n"])) as server:
        response = await send_post(server.url, {}, b"", TIMEOUT)
    assert (response.status_code, response.text) == (200, "Published\n")


@pytest.mark.anyio
async def test_post_returns_once_the_reply_is_whole_though_the_server_keeps_it_open(
    send_post: SendPost,
) -> None:
    async with serve(Serve(http_reply(200, b"Published\n"), close=False)) as server:
        started = time.monotonic()
        response = await send_post(server.url, {}, b"x", httpx.Timeout(5, read=2))
        elapsed = time.monotonic() - started
        [raw] = await server.requests(1)  # the client closed its end
    assert (response.status_code, response.text) == (200, "Published\n")
    assert elapsed < 1
    assert parse_request(raw)[1] == b"x"


@pytest.mark.anyio
async def test_post_to_a_closed_port_is_a_connect_error(send_post: SendPost) -> None:
    url = f"http://127.0.0.1:{refused_port()}/publish/"
    with pytest.raises(httpx.ConnectError) as info:
        await send_post(url, {}, b"", TIMEOUT)
    assert str(info.value)
    assert (info.value.request.method, str(info.value.request.url)) == ("POST", url)


@pytest.mark.anyio
async def test_post_to_a_silent_server_is_a_read_timeout(send_post: SendPost) -> None:
    async with serve(Serve(b"", close=False)) as server:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout, match="timed out reading the reply"):
            await send_post(server.url, {}, b"x", httpx.Timeout(5, read=0.2))
        elapsed = time.monotonic() - started
        [raw] = await server.requests(1)
    assert 0.2 <= elapsed < 1.5
    assert parse_request(raw)[1] == b"x"  # the request went out whole


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Serve(b"garbage\r\n\r\n"), r"not an HTTP/1\.1 status line: b'garbage'"),
        (Serve(b"SSH-2.0-OpenSSH_9.6\r\n"), r"not an HTTP/1\.1 status line: b'SSH-2\.0"),
        (Serve(b"HTTP/1.1 5"), "closed before the reply's headers ended"),
        (Serve(b""), "the connection closed before any reply"),
        (Serve(OK + b"X: " + b"x" * MAX_REPLY_HEAD, close=False), "head is over"),
    ],
)
async def test_post_turns_a_reply_without_a_status_into_a_remote_protocol_error(
    send_post: SendPost, reply: Serve, message: str
) -> None:
    async with serve(reply) as server:
        with pytest.raises(httpx.RemoteProtocolError, match=message) as info:
            await send_post(server.url + "/publish/", {}, b"", TIMEOUT)
        await server.requests(1)
    assert isinstance(info.value.__cause__, ReplyParseError)
    assert str(info.value.request.url) == server.url + "/publish/"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "status", "body", "broken"),
    [
        (Serve(CHUNKED + b"zz\r\n", close=False), 200, b"", "a bad chunk size line"),
        (Serve(b"HTTP/1.1 503 X\r\nContent-Length: 10\r\n\r\nbusy"), 503, b"busy", CLOSED),
        (Serve(CHUNKED + b"a\r\nPubl"), 200, b"Publ", CLOSED),
        (Serve(CHUNKED + b"4\r\nPubl\r\n"), 200, b"Publ", CLOSED),
        (Serve(b"HTTP/1.1 502 Bad Gateway\r\nX-A: 1"), 502, b"", CLOSED),
    ],
)
async def test_post_returns_a_reply_that_broke_after_its_status_line(
    send_post: SendPost, reply: Serve, status: int, body: bytes, broken: str
) -> None:
    async with serve(reply) as server:
        response = await send_post(server.url + "/publish/", {}, b"", TIMEOUT)
        await server.requests(1)
    assert (response.status_code, response.content) == (status, body)
    assert response.extensions[BROKEN].startswith(broken)


@pytest.mark.anyio
async def test_post_reads_a_long_reply_only_up_to_max_reply_body(send_post: SendPost) -> None:
    body = b"e" * (MAX_REPLY_SIZE * 2)
    async with serve(Serve(http_reply(500, body), close=False)) as server:
        response = await send_post(server.url, {}, b"", TIMEOUT)
        await server.requests(1)  # the client hung up without reading the rest
    assert response.status_code == 500
    assert response.content == body[:MAX_REPLY_BODY]
    assert BROKEN not in response.extensions


@pytest.mark.anyio
@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r"])
async def test_a_line_break_in_a_header_value_sends_nothing(
    send_post: SendPost, line_break: str
) -> None:
    async with serve(Serve(http_reply(200, b""))) as server:
        with pytest.raises(httpx.LocalProtocolError, match="X-Bad header contains a line break"):
            await send_post(server.url, {"X-Bad": f"a{line_break}Injected: 1"}, b"body", TIMEOUT)
        assert await server.requests(1) == [b""]


class FakeWriter:
    """Stands in for the connection's StreamWriter."""

    def __init__(self, drain: Callable[[], Any]) -> None:
        self.drain = drain
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


async def hang() -> None:
    await asyncio.Event().wait()


async def refuse() -> None:
    raise ConnectionRefusedError(111, "Connect call failed")


async def broken_pipe() -> None:
    raise BrokenPipeError(32, "Broken pipe")


async def nothing() -> None:
    pass


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("connect", "drain", "read", "error", "message"),
    [
        (refuse, nothing, nothing, httpx.ConnectError, "Connect call failed"),
        (hang, nothing, nothing, httpx.ConnectTimeout, "timed out connecting"),
        (nothing, broken_pipe, nothing, httpx.WriteError, "Broken pipe"),
        (nothing, hang, nothing, httpx.WriteTimeout, "timed out sending the request"),
        (nothing, nothing, hang, httpx.ReadTimeout, "timed out reading the reply"),
        (nothing, nothing, broken_pipe, httpx.ReadError, "Broken pipe"),
    ],
)
async def test_each_phase_raises_its_httpx_error(
    monkeypatch: pytest.MonkeyPatch,
    connect: Callable[[], Any],
    drain: Callable[[], Any],
    read: Callable[[], Any],
    error: type[httpx.RequestError],
    message: str,
) -> None:
    writer = FakeWriter(drain)

    class Reader:
        async def read(self, size: int) -> bytes:
            await read()
            return http_reply(200, b"")

    async def open_connection(host: str, port: int) -> tuple[Reader, FakeWriter]:
        assert (host, port) == ("pushpin.test", 80)
        await connect()
        return Reader(), writer

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    with pytest.raises(error, match=message):
        await post("http://pushpin.test/publish/", {}, b"", httpx.Timeout(0.05))
    assert writer.closed is (connect is nothing)


@pytest.mark.anyio
async def test_post_blocking_reports_the_answer_given_before_the_body_was_read() -> None:
    """Pushpin answers a body over 1 MB with 400 and closes without reading the rest."""
    refused = http_reply(400, b"Request body too large.\n")
    async with serve(Serve(refused, read_only=65_536)) as server:
        body = b"x" * 16_000_000  # more than the socket buffers take before the reset
        response = await asyncio.to_thread(post_blocking, server.url, {}, body, TIMEOUT)
        await server.requests(1)
    assert (response.status_code, response.text) == (400, "Request body too large.\n")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "broken", "error"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), "mid-reply: [Errno 104]", None),
        (hang, "timed out mid-reply", None),
        (ConnectionResetError(104, "Connection reset by peer"), None, httpx.ReadError),
        (hang, None, httpx.ReadTimeout),
    ],
)
async def test_a_read_that_fails_after_the_status_line_returns_what_arrived(
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception | Callable[[], Any],
    broken: str | None,
    error: type[httpx.RequestError] | None,
) -> None:
    """Reset or timed out: with a status line read, the reply is returned, marked broken."""
    first = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 20\r\n\r\nbo"
    pieces = [first if broken else b"HTTP/1.1 5"]

    class Reader:
        async def read(self, size: int) -> bytes:
            if pieces:
                return pieces.pop()
            if isinstance(failure, Exception):
                raise failure
            await failure()
            return b""

    async def open_connection(host: str, port: int) -> tuple[Reader, FakeWriter]:
        return Reader(), FakeWriter(nothing)

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    if error is not None:
        with pytest.raises(error):
            await post("http://pushpin.test/publish/", {}, b"", httpx.Timeout(0.05))
        return
    response = await post("http://pushpin.test/publish/", {}, b"", httpx.Timeout(0.05))
    assert (response.status_code, response.content) == (500, b"bo")
    assert response.extensions[BROKEN].startswith(broken)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
@pytest.mark.parametrize("path", ["/a b", "/\u20ac"])
async def test_the_request_target_is_encoded_as_httpx_does(path: str) -> None:
    async with serve(Serve(http_reply(200, b"Published\n"))) as server:
        async with Publisher(server.url + path) as publisher:
            await publisher.publish_websocket("c", "hi")
        [raw] = await server.requests(1)
    expected = httpx.URL(server.url + path + "/publish/").raw_path  # what httpx sends
    assert raw.startswith(b"POST " + expected + b" HTTP/1.1\r\n")


# --- The Publisher on this path ---------------------------------------------------------------


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_publisher_retries_a_500_for_an_item_with_an_id() -> None:
    replies = Serve(http_reply(500, b"busy")), Serve(http_reply(200, b"Published\n"))
    async with serve(*replies) as server:
        async with Publisher(server.url, backoff=0) as publisher:
            assert publisher._direct_http
            await publisher.publish_websocket("c", "hi", id="1")
        raws = await server.requests(2)
    assert publisher._client is None  # no httpx client was made
    requests = [parse_request(raw) for raw in raws]
    assert [request.target for request, _ in requests] == [b"/publish/", b"/publish/"]
    assert requests[0][1] == requests[1][1]
    assert b'"id":"1"' in requests[0][1]


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_publisher_does_not_retry_a_500_without_an_id() -> None:
    async with serve(Serve(http_reply(500, b"proxy error: busy"))) as server:
        with pytest.raises(PublishError) as info:
            async with Publisher(server.url, backoff=0) as publisher:
                await publisher.publish_websocket("c", "hi")
        await server.requests(1)
    assert server.connections == 1
    assert info.value.status == 500
    assert info.value.body == "proxy error: busy"
    assert str(info.value) == f"{server.url} answered 500: proxy error: busy"


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_publisher_to_a_closed_port() -> None:
    port = refused_port()
    publisher = Publisher(f"http://user:s3cret@127.0.0.1:{port}/", retries=1, backoff=0)
    with pytest.raises(PublishConnectionError) as info:
        await publisher.publish_websocket("c", "hi")
    await publisher.aclose()
    proxy = f"http://127.0.0.1:{port}"
    assert info.value.proxy == proxy
    assert str(info.value).startswith(f"could not reach {proxy}: ")
    assert str(info.value).endswith("(after 2 attempts)")
    assert "s3cret" not in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_sync_publisher_posts_directly_retries_and_names_failures() -> None:
    replies = (
        Serve(http_reply(500, b"busy")),
        Serve(http_reply(200, b"Published\n")),
        Serve(http_reply(400, b"bad item")),
    )
    async with serve(*replies) as server:

        def publish_twice() -> SyncPublisher:
            with SyncPublisher(server.url, backoff=0) as publisher:
                assert publisher._direct_http
                publisher.publish_websocket("c", "hi", id="1")  # 500, then 200
                with pytest.raises(PublishError, match="answered 400: bad item"):
                    publisher.publish_websocket("c", "again", id="2")  # a 4xx is final
            return publisher

        publisher = await asyncio.to_thread(publish_twice)
        raws = await server.requests(3)
    assert publisher._client is None  # no httpx client was made
    bodies = [parse_request(raw)[1] for raw in raws]
    assert bodies[0] == bodies[1] and b'"id":"1"' in bodies[0] and b'"id":"2"' in bodies[2]
    port = refused_port()
    refused = SyncPublisher(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(PublishConnectionError, match=f"could not reach http://127.0.0.1:{port}"):
        refused.publish_websocket("c", "hi")
    refused.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_publisher_to_a_silent_server_times_out() -> None:
    async with serve(Serve(b"", close=False)) as server:
        publisher = Publisher(server.url, timeout=httpx.Timeout(5, read=0.2), retries=0)
        with pytest.raises(PublishTimeoutError, match=r"did not answer in time \(ReadTimeout\)"):
            await publisher.publish_websocket("c", "hi")
        await publisher.aclose()
        await server.requests(1)


@pytest.mark.usefixtures("no_env_proxy")
def test_direct_http_only_without_a_client_or_an_env_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Publisher("http://pushpin.test:5561")._direct_http is True
    client = httpx.AsyncClient()
    assert Publisher("http://pushpin.test:5561", client=client)._direct_http is False
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")  # http:// goes direct anyway
    assert Publisher("http://pushpin.test:5561")._direct_http is True


@pytest.mark.usefixtures("no_env_proxy")
@pytest.mark.parametrize("name", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_an_env_proxy_turns_direct_http_off(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://127.0.0.1:3128")
    assert Publisher("http://pushpin.test:5561")._direct_http is False


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_a_given_client_gets_the_publish() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="Published\n")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    url = f"http://127.0.0.1:{refused_port()}"  # nothing listens: a direct post would fail
    async with Publisher(url, client=client) as publisher:
        await publisher.publish_websocket("c", "hi")
    await client.aclose()
    [request] = seen
    assert str(request.url) == url + "/publish/"
    assert (
        request.content == b'{"items":[{"channel":"c","formats":{"ws-message":{"content":"hi"}}}]}'
    )


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
async def test_an_env_http_proxy_gets_the_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve(Serve(http_reply(200, b"Published\n"))) as forward_proxy:
        monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
        async with Publisher("http://pushpin.invalid:5561") as publisher:
            await publisher.publish_websocket("c", "hi")
        [raw] = await forward_proxy.requests(1)
    request, body = parse_request(raw)
    assert request.target == b"http://pushpin.invalid:5561/publish/"  # absolute-form: proxied
    assert b'"content":"hi"' in body


def echo_authorization(raw: bytes) -> bytes:
    request, _ = parse_request(raw)
    auth = dict(request.headers)[b"authorization"]
    return http_reply(400, b"bad credentials: " + auth)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
@pytest.mark.parametrize(
    "grip", ["{url}/?key=tok-ssssssssssss", "{url}/?iss=realm&key={key}", "http://u:pass-w0rd@{hp}"]
)
async def test_secrets_stay_out_of_errors_on_the_direct_path(grip: str) -> None:
    async with serve(Serve(echo_authorization)) as server:
        grip = grip.format(url=server.url, hp=server.url[7:], key="k" * 32)
        with pytest.raises(PublishError) as info:
            async with Publisher(grip) as publisher:
                await publisher.publish_websocket("c", "hi")
        [raw] = await server.requests(1)
    credentials = dict(parse_request(raw)[0].headers)[b"authorization"].decode()
    secrets = [credentials.partition(" ")[2], "tok-ssssssssssss", "k" * 32, "pass-w0rd"]
    assert info.value.status == 400
    assert info.value.body.startswith("bad credentials: ")
    assert "***" in info.value.body and "***" in str(info.value)
    for secret in secrets:
        assert secret not in str(info.value)
        assert secret not in info.value.body


# --- Replies that start and break, or are large (issue 16) ------------------------------------


async def publish_once(mode: str, url: str, **kwargs: Any) -> None:
    """One publish with an id, by the Publisher or (in a thread) the SyncPublisher."""
    if mode == "async":
        async with Publisher(url, backoff=0, **kwargs) as publisher:
            await publisher.publish_websocket("c", "hi", id="1")
        return

    def blocking() -> None:
        with SyncPublisher(url, backoff=0, **kwargs) as publisher:
            publisher.publish_websocket("c", "hi", id="1")

    await asyncio.to_thread(blocking)


modes = pytest.mark.parametrize("mode", ["async", "sync"])


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
@modes
async def test_a_reply_cut_short_after_its_status_says_so_and_keeps_the_status(
    mode: str,
) -> None:
    cut = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nproxy err"
    async with serve(Serve(cut)) as server:
        with pytest.raises(PublishError) as info:
            await publish_once(mode, server.url, retries=0)
        await server.requests(1)
    error = info.value
    assert type(error) is PublishReplyError  # not "could not reach"
    assert not isinstance(error, PublishConnectionError)
    assert error.status == 500
    assert error.body == "proxy err"
    assert str(error) == (
        f"{server.url}'s reply broke off after status 500: "
        "the connection closed mid-reply: proxy err"
    )
    assert [item.id for _, item in error.unsure_items] == ["1"]  # a 500 may have published it


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
@modes
async def test_a_connection_closed_without_a_reply_is_not_could_not_reach(mode: str) -> None:
    async with serve(Serve(b"")) as server:
        with pytest.raises(PublishError) as info:
            await publish_once(mode, server.url, retries=0)
        await server.requests(1)
    assert type(info.value) is PublishReplyError
    assert info.value.status is None
    assert str(info.value) == (
        f"{server.url} sent no usable reply: the connection closed before any reply"
    )


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
@modes
async def test_a_large_error_reply_is_read_in_part_and_reported_with_its_status(
    mode: str,
) -> None:
    body = b"request body too large; " + b"x" * (2 * MAX_REPLY_SIZE)
    async with serve(Serve(http_reply(413, body), close=False)) as server:
        with pytest.raises(PublishError) as info:
            await publish_once(mode, server.url)
        await server.requests(1)
    assert type(info.value) is PublishError  # a 4xx is final: no retry, nothing unsure
    assert info.value.status == 413
    assert info.value.body == body[:500].decode()
    assert str(info.value).startswith(f"{server.url} answered 413: request body too large; xxx")
    assert server.connections == 1


@pytest.mark.anyio
@pytest.mark.usefixtures("no_env_proxy")
@modes
async def test_a_success_whose_reply_body_breaks_is_delivered_once(mode: str) -> None:
    """The status says the proxy took the items: resending them would publish them twice."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nPubl"
    async with serve(Serve(cut)) as server:
        await publish_once(mode, server.url)
        await server.requests(1)
    assert server.connections == 1


def test_a_content_length_in_other_scripts_digits_is_refused() -> None:
    for digits in ("\u0661\u0660", "\u00b2", "\uff11"):  # Arabic-Indic, superscript, fullwidth
        head = OK + b"Content-Length: " + digits.encode() + b"\r\n\r\n"
        with pytest.raises(ReplyParseError, match="Content-Length"):
            parse_reply(head + b"x" * 10, eof=True)
