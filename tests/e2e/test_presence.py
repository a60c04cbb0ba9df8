"""Presence through a real Pushpin 1.36: who is in a room, and how soon a member that went is gone.

Each app (:mod:`tests.e2e.presenceapp` on Starlette under uvicorn; :mod:`tests.e2e.presence_django`
with async views under uvicorn and with sync views under gunicorn, two workers) serves a
presence-enabled reliable WebSocket with ``keep_alive=20`` (Pushpin's minimum) and the default
``presence_margin`` of 10 s, the members kept in SQLite. The members are
``grip_asgi.client.ReliableClient``\\ s, in this process or in a subprocess, and a raw socket.

What Pushpin 1.36 does, checked by hand (the apps log every WebSocket-over-HTTP request's events,
:mod:`tests.e2e.presence_log`) before these tests were written:

- **A clean close**: the client's close frame reaches the app as ``CLOSE``; its leave is
  published in the answer to that request.
- **A killed client** (SIGKILL): the kernel closes its TCP connection and Pushpin sends
  ``DISCONNECT`` about 10 ms later; the leave is published at once (the other member had it
  0.03 to 0.05 s after the kill).
- **A client that vanishes without its TCP connection closing** (a raw socket that completed the
  handshake and never reads again, or a ``ReliableClient`` process frozen with SIGSTOP): Pushpin
  notices nothing and sends no ``DISCONNECT``. About once a second it makes a keep-alive request
  (no events) for each connection idle for 20 s; the app answers it with a PING, which a live
  client answers with a PONG (a request of its own, and the sign of life that keeps its
  membership). A live client's own traffic counts too: the ``websockets`` library PINGs every
  20 s, so a ``ReliableClient`` often gets no keep-alive request at all. The silent connection
  is idle, so it gets one every 20 s and answers none. Its membership expires 30 s after its
  last sign of life, and the next keep-alive request in the room (in practice its own, 40 s
  after it went quiet) sweeps it: measured 37 to 40 s after the client went quiet on every
  stack, within the documented bound of 2 x keep_alive + margin = 50 s. Its ``DISCONNECT`` comes
  only when the test finally closes the socket or kills the process.

The vanished-member test waits about 40 s, so it runs once, for every stack at the same time.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx
import pytest

from grip_asgi.client import Presence, ReliableClient

from .servers import REPO_ROOT, GunicornServer, ProcessServer, ProxiedApp, UvicornServer

ROOM = "lobby"
KEEP_ALIVE = 20  # the apps' keep_alive
MARGIN = 10  # presence_margin, the default
#: The documented bound: a member whose connection stays open but silent is announced gone
#: within this many seconds (its lease ends keep_alive + margin after its last sign of life; the
#: next keep-alive sweep, at most keep_alive later, announces it).
BOUND = 2 * KEEP_ALIVE + MARGIN
#: Seconds a closed or killed member's leave may take. Under the first keep-alive (20 s) and the
#: lease (30 s): a leave this early can only come from the CLOSE or DISCONNECT.
PROMPT = 10
TIMEOUT = 40  # seconds the joins and closes tests may take, start-up of the app excluded

ProxiedAppFactory = Callable[..., ProxiedApp]
ServerFactory = Callable[[int, dict[str, str]], ProcessServer]


def starlette(port: int, env: dict[str, str]) -> ProcessServer:
    return UvicornServer("tests.e2e.presenceapp:app", port=port, env=env)


def django_asgi(port: int, env: dict[str, str]) -> ProcessServer:
    env = {**env, "PRESENCE_DJANGO_VIEWS": "async"}
    app = "tests.e2e.presence_django:application"
    return UvicornServer(app, port=port, env=env, extra_args=["--lifespan", "off"])


def django_wsgi(port: int, env: dict[str, str]) -> ProcessServer:
    env = {**env, "PRESENCE_DJANGO_VIEWS": "sync"}
    app = "tests.e2e.presence_django:application"
    # Two workers: the members live in SQLite, not in a process.
    return GunicornServer(app, port=port, workers=2, env=env)


#: Each stack, and the ``info`` its members carry.
STACKS: dict[str, tuple[ServerFactory, dict[str, str]]] = {
    "starlette": (starlette, {"via": "starlette"}),
    "django-asgi": (django_asgi, {"via": "django-async"}),
    "django-wsgi": (django_wsgi, {"via": "django-sync"}),
}


@dataclass(frozen=True)
class Room:
    """The room of an app behind its Pushpin."""

    stack: str
    app: ProxiedApp

    @property
    def info(self) -> dict[str, str]:
        return STACKS[self.stack][1]

    def url(self, user: str) -> str:
        return f"{self.app.ws_url}/room/{ROOM}?user={user}"

    async def members(self) -> list[str]:
        """The users ``members()`` lists, through the app."""
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{self.app.http_url}/members/{ROOM}")
        response.raise_for_status()
        users: list[str] = response.json()
        return users

    def events_of(self, client: str) -> list[str]:
        """The WebSocket events the app has been sent for connection ``client`` so far."""
        marker = f" {client}: "
        return [
            line.split(marker, 1)[1]
            for line in self.app.server.read_log().splitlines()
            if line.startswith("presence-app ") and marker in line
        ]


def open_room(proxied_app: ProxiedAppFactory, stack: str, tmp_path: Path) -> Room:
    history_url = f"sqlite:///{tmp_path / f'{stack}.sqlite3'}"  # absolute: sqlite:////...
    app = proxied_app(STACKS[stack][0], env={"GRIP_HISTORY_URL": history_url})
    return Room(stack, app)


async def first_members(client: ReliableClient) -> list[dict[str, Any]]:
    """The ``members`` message the client got when it opened."""
    async for item in client:
        if isinstance(item, Presence):
            assert item.kind == "members", f"a {item.kind} before the members list: {item}"
            return list(item.members)
    raise AssertionError("the client's items ended before the members list")


async def notices(
    client: ReliableClient, wanted: Collection[tuple[str, str]], timeout: float
) -> dict[tuple[str, str], float]:
    """Read the client's items until it has had every ``(kind, user)`` notice in ``wanted``
    (``join`` or ``leave``); when each arrived (``time.monotonic()``)."""
    arrived: dict[tuple[str, str], float] = {}
    with anyio.move_on_after(timeout):
        async for item in client:
            if not isinstance(item, Presence):
                continue
            for member in item.members:
                key = (item.kind, member["user"])
                if key in wanted:
                    assert key not in arrived, f"{key} announced twice"
                    arrived[key] = time.monotonic()
            if arrived.keys() >= set(wanted):
                return arrived
    missing = sorted(set(wanted) - arrived.keys())
    raise AssertionError(
        f"no {missing} notice in {timeout} s; the client's members: {client.members}"
    )


def client_of(client: ReliableClient, user: str) -> str:
    """The connection id of ``user`` among the members ``client`` knows."""
    [connection] = [c for c, m in client.members[ROOM].items() if m["user"] == user]
    return connection


@contextlib.asynccontextmanager
async def member_process(url: str) -> AsyncIterator[anyio.abc.Process]:
    """A ``ReliableClient`` member in a subprocess (:mod:`tests.e2e.presence_member`), killed at
    the end if it still runs."""
    argv = [sys.executable, "-m", "tests.e2e.presence_member", url, ROOM]
    process = await anyio.open_process(
        argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()  # a stopped process too
        with anyio.CancelScope(shield=True):
            await process.wait()


@contextlib.asynccontextmanager
async def silent_websocket(url: str) -> AsyncIterator[None]:
    """A WebSocket through Pushpin that completes its handshake, then never reads (so never
    answers a ping) and never closes its TCP connection until the block ends."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    stream = await anyio.connect_tcp(parts.hostname, parts.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send(
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive()
        assert head.startswith(b"HTTP/1.1 101 "), f"the handshake failed: {head!r}"
        yield
    finally:
        await stream.aclose()


# --- Joins, a clean close and a killed client: every stack --------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.anyio
async def test_a_member_sees_who_is_here_who_joins_and_who_closes(
    proxied_app: ProxiedAppFactory, stack: str, tmp_path: Path
) -> None:
    room = open_room(proxied_app, stack, tmp_path)
    with anyio.fail_after(TIMEOUT):
        async with ReliableClient(room.url("ann"), [ROOM]) as ann:
            assert [m["user"] for m in await first_members(ann)] == ["ann"]
            async with ReliableClient(room.url("bob"), [ROOM]) as bob:
                # The second member sees the first (and itself), in the order they joined...
                listed = await first_members(bob)
                assert [(m["user"], m["info"]) for m in listed] == [
                    ("ann", room.info),
                    ("bob", room.info),
                ]
                # ... and the first is told of the second, by the same connection id.
                await notices(ann, [("join", "bob")], PROMPT)
                assert ann.members[ROOM] == {m["client"]: m for m in listed}
                assert await room.members() == ["ann", "bob"]
                bob_id = client_of(ann, "bob")
            # Leaving the block closes bob's WebSocket with a close frame.
            await notices(ann, [("leave", "bob")], PROMPT)
            assert await room.members() == ["ann"]
            assert ann.members[ROOM].keys() == {client_of(ann, "ann")}
            assert room.events_of(bob_id) == ["OPEN", "CLOSE"]


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.anyio
async def test_a_killed_members_leave_is_announced_at_once(
    proxied_app: ProxiedAppFactory, stack: str, tmp_path: Path
) -> None:
    room = open_room(proxied_app, stack, tmp_path)
    with anyio.fail_after(TIMEOUT):
        async with ReliableClient(room.url("ann"), [ROOM]) as ann:
            await first_members(ann)
            async with member_process(room.url("bob")) as bob:
                await notices(ann, [("join", "bob")], PROMPT)
                bob_id = client_of(ann, "bob")
                bob.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                arrived = await notices(ann, [("leave", "bob")], PROMPT)
            took = arrived["leave", "bob"] - killed
            print(f"\npresence {stack}: a killed member's leave came {took:.3f} s after SIGKILL")
            assert room.events_of(bob_id) == ["OPEN", "DISCONNECT"]
            assert await room.members() == ["ann"]


# --- A member that vanishes with its connection open: all stacks at once ------------------------


@pytest.mark.anyio
async def test_a_vanished_members_leave_is_announced_within_the_bound(
    proxied_app: ProxiedAppFactory, tmp_path: Path
) -> None:
    rooms = [open_room(proxied_app, stack, tmp_path) for stack in STACKS]
    report: list[str] = []
    with anyio.fail_after(BOUND + 15 + PROMPT):
        async with anyio.create_task_group() as tasks:
            for room in rooms:
                tasks.start_soon(_vanish, room, report)
    print("\n" + "\n".join(sorted(report)))


async def _vanish(room: Room, report: list[str]) -> None:
    """In ``room``: ann stays; "silent" (a raw socket) and "frozen" (a client process under
    SIGSTOP) go quiet with their TCP connections open; ann must hear both leave in the bound."""
    async with (
        ReliableClient(room.url("ann"), [ROOM]) as ann,
        member_process(room.url("frozen")) as frozen,
    ):
        await first_members(ann)
        async with silent_websocket(room.url("silent")):
            silent_since = time.monotonic()
            await notices(ann, [("join", "silent"), ("join", "frozen")], PROMPT)
            frozen.send_signal(signal.SIGSTOP)
            frozen_since = time.monotonic()
            gone = [client_of(ann, "silent"), client_of(ann, "frozen")]
            arrived = await notices(ann, [("leave", "silent"), ("leave", "frozen")], BOUND + 15)
            # Pushpin did not notice them: the leaves came from the lease and the sweep.
            for connection in gone:
                assert not {"CLOSE", "DISCONNECT"} & set(room.events_of(connection))
            assert await room.members() == ["ann"]
    took = {
        "silent": arrived["leave", "silent"] - silent_since,
        "frozen": arrived["leave", "frozen"] - frozen_since,
    }
    report.append(
        f"presence {room.stack}: leave of a raw socket that never reads {took['silent']:.1f} s "
        f"after its handshake, of a SIGSTOPped client {took['frozen']:.1f} s after SIGSTOP "
        f"(bound {BOUND} s)"
    )
    for who, seconds in took.items():
        assert seconds <= BOUND, f"{room.stack}: {who}'s leave took {seconds:.1f} s, over {BOUND}"
