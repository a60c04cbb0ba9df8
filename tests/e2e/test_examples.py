"""The examples behind a real Pushpin, with real WebSocket and HTTP clients.

Every test runs against the FastAPI example (uvicorn, two workers) and the Django example
under ASGI (uvicorn) and under WSGI (gunicorn, two workers): the same routes, the same
behaviour. The chat (a reliable WebSocket with history and presence) and its page run on the
Starlette example too, and its tests use the Python client, ``grip_asgi.client.ReliableClient``.
Publishes go through the example's own ``POST /publish/<channel>`` route and the chat route,
or through ``python -m grip_asgi publish`` from another process. Each test's app keeps its
channel history and member lists in a SQLite file of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.abc
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from examples.shared import CHAT_HISTORY
from grip_asgi.client import Event, Item, Presence, ReliableClient
from grip_asgi.testing import GripTestProxy, open_event

from .servers import REPO_ROOT, GunicornServer, ProcessServer, ProxiedApp, UvicornServer

TIMEOUT = 15  # seconds any one test may take, start-up excluded
ProxiedAppFactory = Callable[..., ProxiedApp]


def fastapi(port: int, env: dict[str, str]) -> ProcessServer:
    return UvicornServer("examples.fastapi_app:app", port=port, env=env, workers=2)


def django_asgi(port: int, env: dict[str, str]) -> ProcessServer:
    # Django has no lifespan support.
    app = "examples.django_project.asgi:application"
    return UvicornServer(app, port=port, env=env, workers=2, extra_args=["--lifespan", "off"])


def django_wsgi(port: int, env: dict[str, str]) -> ProcessServer:
    return GunicornServer("examples.django_project.wsgi:application", port=port, workers=2, env=env)


def starlette(port: int, env: dict[str, str]) -> ProcessServer:
    return UvicornServer("examples.starlette_app:app", port=port, env=env, workers=2)


SERVERS = [fastapi, django_asgi, django_wsgi]
SERVER_IDS = ["fastapi-uvicorn", "django-uvicorn", "django-gunicorn"]
#: The chat and its page are on the Starlette example too.
CHAT_SERVERS = [fastapi, starlette, django_asgi, django_wsgi]
CHAT_SERVER_IDS = ["fastapi-uvicorn", "starlette-uvicorn", "django-uvicorn", "django-gunicorn"]


@pytest.fixture(params=SERVERS, ids=SERVER_IDS)
def server(request: pytest.FixtureRequest) -> Callable[[int, dict[str, str]], ProcessServer]:
    factory: Callable[[int, dict[str, str]], ProcessServer] = request.param
    return factory


@pytest.fixture
def history_env(tmp_path: Path) -> dict[str, str]:
    """The channel history and the member lists, in this test's directory."""
    return {"GRIP_HISTORY_URL": f"sqlite:///{tmp_path}/history.sqlite3"}


@pytest.fixture
def app(
    proxied_app: ProxiedAppFactory,
    server: Callable[[int, dict[str, str]], ProcessServer],
    history_env: dict[str, str],
) -> ProxiedApp:
    return proxied_app(server, env=history_env)


@pytest.fixture(params=CHAT_SERVERS, ids=CHAT_SERVER_IDS)
def chat_app(
    proxied_app: ProxiedAppFactory, request: pytest.FixtureRequest, history_env: dict[str, str]
) -> ProxiedApp:
    return proxied_app(request.param, env=history_env)


@pytest.mark.anyio
async def test_chat_page_and_its_client_script(chat_app: ProxiedApp) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        page = await client.get(f"{chat_app.http_url}/")
        script = await client.get(f"{chat_app.http_url}/static/grip-client.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "grip-asgi chat" in page.text
    assert '<script src="/static/grip-client.js"></script>' in page.text
    assert "GripClient.ReliableSocket" in page.text
    # The installed package's own client, as JavaScript.
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.content == files("grip_asgi").joinpath("static/grip-client.js").read_bytes()


# --- The chat: a reliable WebSocket with history and presence ---------------------------------


def chat_url(app: ProxiedApp, room: str, name: str) -> str:
    return f"{app.ws_url}/chat/{room}?name={quote(name)}"


async def read_items(client: ReliableClient, done: Callable[[list[Item]], bool]) -> list[Item]:
    """The client's items until ``done(items)``.

    A publish can race the subscription it is meant for (spec §6.1), and the protocol learns
    of a lost *last* message only from the next tip: when a second passes without an item,
    the client asks for what it lacks, as Pushpin's keep-alive call would make it, later.
    """
    items: list[Item] = []
    while not done(items):
        item: Item | None = None
        with anyio.move_on_after(1):
            item = await anext(client)
        if item is None:
            await client.sync()
        else:
            items.append(item)
    return items


def events_of(items: list[Item]) -> list[Event]:
    return [item for item in items if isinstance(item, Event)]


def said(event: Event) -> tuple[str, str]:
    """A member's chat message: (its author, its text), from the event's JSON data."""
    message = json.loads(event.data)
    assert isinstance(message, dict) and message.keys() == {"user", "text"}, event.data
    return message["user"], message["text"]


def text_of(event: Event) -> str:
    """A chat event's text: a member's is in its JSON; a plain publish's is its data."""
    try:
        message = json.loads(event.data)
    except ValueError:
        return event.data
    return str(message["text"]) if isinstance(message, dict) else event.data


def has_event(text: str) -> Callable[[list[Item]], bool]:
    return lambda items: any(text_of(event) == text for event in events_of(items))


def presence_of(items: list[Item], kind: str) -> list[Presence]:
    return [item for item in items if isinstance(item, Presence) and item.kind == kind]


def has_presence(kind: str, user: str | None = None) -> Callable[[list[Item]], bool]:
    def done(items: list[Item]) -> bool:
        changes = presence_of(items, kind)
        return any(user in (None, m["user"]) for change in changes for m in change.members)

    return done


def users(presence: Presence) -> list[str]:
    return sorted(str(member["user"]) for member in presence.members)


#: A member's message that looks like another's: the app wraps it as text, with its author.
FORGED = json.dumps({"user": "bob", "text": "not from bob"})


@pytest.mark.anyio
async def test_a_chat_message_reaches_every_member_once_in_order(chat_app: ProxiedApp) -> None:
    room = "lobby"
    with anyio.fail_after(TIMEOUT):
        async with (
            ReliableClient(chat_url(chat_app, room, "ann"), channels=[room]) as ann,
            ReliableClient(chat_url(chat_app, room, "bob"), channels=[room]) as bob,
        ):
            for text in ("one", "two", FORGED):
                await ann.send(text)
            # The sender gets its own messages too: every member does, each with its author.
            for member in (ann, bob):
                events = events_of(await read_items(member, has_event(FORGED)))
                assert [(e.channel, e.id, said(e)) for e in events] == [
                    (room, 1, ("ann", "one")),
                    (room, 2, ("ann", "two")),
                    (room, 3, ("ann", FORGED)),  # a text that looks like JSON stays text
                ]
                assert member.positions == {room: 3}


@pytest.mark.anyio
async def test_a_new_member_gets_the_rooms_latest_messages_first(chat_app: ProxiedApp) -> None:
    room = "history"
    sent = [f"message {number}" for number in range(CHAT_HISTORY + 5)]
    with anyio.fail_after(TIMEOUT):
        async with ReliableClient(chat_url(chat_app, room, "ann"), channels=[room]) as ann:
            for text in sent:
                await ann.send(text)
            await read_items(ann, has_event(sent[-1]))  # all stored
        async with ReliableClient(chat_url(chat_app, room, "bob"), channels=[room]) as bob:
            # The open answer: the latest messages, the tip, then the members.
            opened = await read_items(bob, has_presence("members"))
    backlog = [(event.id, said(event)) for event in events_of(opened)]
    assert backlog == [(number + 1, ("ann", sent[number])) for number in range(5, CHAT_HISTORY + 5)]
    assert bob.positions == {room: CHAT_HISTORY + 5}


@pytest.mark.anyio
async def test_a_member_that_comes_back_gets_what_it_missed_once(chat_app: ProxiedApp) -> None:
    """A reload or a dropped network: the client reconnects at its positions."""
    room = "resume"
    with anyio.fail_after(TIMEOUT):
        async with ReliableClient(chat_url(chat_app, room, "ann"), channels=[room]) as ann:
            await ann.send("before")
            await read_items(ann, has_event("before"))
        left_at = ann.positions
        async with ReliableClient(chat_url(chat_app, room, "bob"), channels=[room]) as bob:
            for text in ("missed 1", "missed 2"):
                await bob.send(text)
            await read_items(bob, has_event("missed 2"))
        back = ReliableClient(chat_url(chat_app, room, "ann"), channels=[room], positions=left_at)
        async with back:
            resumed = await read_items(back, has_presence("members"))
            await back.send("after")
            later = await read_items(back, has_event("after"))
    assert left_at == {room: 1}
    # Exactly what it missed: no history again, nothing twice.
    assert [(e.id, said(e)) for e in events_of(resumed)] == [
        (2, ("bob", "missed 1")),
        (3, ("bob", "missed 2")),
    ]
    assert [(e.id, said(e)) for e in events_of(later)] == [(4, ("ann", "after"))]


@pytest.mark.anyio
async def test_members_see_who_is_here_and_who_joins_and_leaves(chat_app: ProxiedApp) -> None:
    room = "presence"
    with anyio.fail_after(TIMEOUT):
        async with ReliableClient(chat_url(chat_app, room, "ann"), channels=[room]) as ann:
            [alone] = presence_of(await read_items(ann, has_presence("members")), "members")
            assert (alone.channel, users(alone)) == (room, ["ann"])

            async with ReliableClient(chat_url(chat_app, room, "bob"), channels=[room]) as bob:
                [both] = presence_of(await read_items(bob, has_presence("members")), "members")
                assert users(both) == ["ann", "bob"]
                await read_items(ann, has_presence("join", "bob"))
                assert sorted(m["user"] for m in ann.members[room].values()) == ["ann", "bob"]
            await read_items(ann, has_presence("leave", "bob"))
            assert [m["user"] for m in ann.members[room].values()] == ["ann"]

            # "/leave" makes the app close the connection (4000): a leave for the others.
            async with connect(chat_url(chat_app, room, "carol"), open_timeout=5) as carol:
                await read_items(ann, has_presence("join", "carol"))
                await carol.send("/leave")
                with pytest.raises(ConnectionClosed):
                    while True:
                        await carol.recv()
            await read_items(ann, has_presence("leave", "carol"))
    assert carol.protocol.close_rcvd is not None
    assert (carol.protocol.close_rcvd.code, carol.protocol.close_rcvd.reason) == (
        4000,
        "left the room",
    )


@pytest.mark.anyio
async def test_the_publish_route_reaches_the_chat_room(app: ProxiedApp) -> None:
    """``POST /publish/<room>`` (FastAPI and Django) is a reliable publish: a chat event.

    Its data is the body as sent, not a member's JSON: the page shows it with no author.
    """
    room = "news"
    with anyio.fail_after(TIMEOUT):
        async with (
            ReliableClient(chat_url(app, room, "ann"), channels=[room]) as ann,
            httpx.AsyncClient(timeout=5) as client,
        ):
            response = await client.post(f"{app.http_url}/publish/{room}", content="news!")
            assert (response.status_code, response.text) == (200, "published\n")
            events = events_of(await read_items(ann, has_event("news!")))
    assert [(event.id, event.data) for event in events] == [(1, "news!")]


@pytest.mark.anyio
async def test_a_bad_room_or_name_is_refused_on_open(chat_app: ProxiedApp) -> None:
    refused = {
        "/chat/not%20a%20room?name=ann": "room names are 1-64 letters",
        "/chat/lobby": "a name is needed",
        "/chat/lobby?name=": "a name is needed",
        f"/chat/lobby?name={'n' * 33}": "the name is 33 characters long; the limit is 32",
        "/chat/lobby?name=bell%07": "cannot be shown",
        "/chat/lobby?name=%20%20": "only white space",
    }
    with anyio.fail_after(TIMEOUT):
        for path, problem in refused.items():
            with pytest.raises(InvalidStatus) as rejected:
                async with connect(chat_app.ws_url + path, open_timeout=5):
                    pass  # pragma: no cover - the handshake fails
            response = rejected.value.response
            assert (response.status_code, path) == (400, path)
            assert problem in response.body.decode(), path
        # The longest name, in any script, is welcome, and signs its messages.
        name = "Zoë " + "é" * 28
        async with ReliableClient(chat_url(chat_app, "lobby", name), channels=["lobby"]) as zoe:
            [members] = presence_of(await read_items(zoe, has_presence("members")), "members")
            await zoe.send("γειά σου 😀")
            [event] = events_of(await read_items(zoe, has_event("γειά σου 😀")))
    assert users(members) == [name]
    assert said(event) == (name, "γειά σου 😀")


async def read_until(response: httpx.Response, marker: str, received: anyio.Event) -> str:
    text = ""
    async for chunk in response.aiter_text():
        text += chunk
        if marker in text:
            received.set()
            break
    return text


async def publish_until(
    client: httpx.AsyncClient, app: ProxiedApp, channel: str, text: str, received: anyio.Event
) -> int:
    """POST to the example's publish route until ``received`` is set (spec §6.1 race)."""
    attempts = 0
    while not received.is_set():
        response = await client.post(f"{app.http_url}/publish/{channel}", content=text)
        assert (response.status_code, response.text) == (200, "published\n")
        attempts += 1
        with anyio.move_on_after(0.25):
            await received.wait()
    return attempts


@pytest.mark.anyio
async def test_websocket_echo_text_and_binary(app: ProxiedApp) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(f"{app.ws_url}/echo", open_timeout=5) as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "hello"
            await websocket.send(b"\x00\xff binary")
            assert await websocket.recv() == b"\x00\xff binary"
            await websocket.send("é" * 8000)  # 16,000 bytes: Pushpin 1.36's safe maximum
            assert await websocket.recv() == "é" * 8000
        assert websocket.close_code == 1000


@pytest.mark.anyio
async def test_client_close_code_is_echoed(app: ProxiedApp) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(f"{app.ws_url}/echo", open_timeout=5) as websocket:
            await websocket.send("ping")
            assert await websocket.recv() == "ping"
            await websocket.close(4001, "bye")
        assert websocket.protocol.close_rcvd is not None
        assert (websocket.protocol.close_rcvd.code, websocket.protocol.close_rcvd.reason) == (
            4001,
            "bye",
        )


@pytest.mark.parametrize(
    ("path", "marker"),
    [("/stream/{ch}", "data: hello"), ("/sse/{ch}", "data: hello\n\n")],
)
@pytest.mark.anyio
async def test_stream_and_sse_receive_a_publish(app: ProxiedApp, path: str, marker: str) -> None:
    channel = "news-" + path.split("/")[1]
    received = anyio.Event()
    headers = {"Last-Event-ID": "7"} if path.startswith("/sse") else {}
    async with httpx.AsyncClient(timeout=5) as client:
        with anyio.fail_after(TIMEOUT):
            url = app.http_url + path.format(ch=channel)
            async with client.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                assert "grip-hold" not in response.headers  # the proxy consumed the instruct
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(publish_until, client, app, channel, "hello", received)
                    text = await read_until(response, marker, received)
    if path.startswith("/sse"):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert text.startswith(": resumed after 7\nevent: stream-open\ndata: open\n\n")
    else:
        assert text.startswith("[stream open]\n")


async def read_sse_ids(response: httpx.Response, until: str) -> list[tuple[str, str]]:
    """The (id, data) of each SSE event, until one whose data is ``until``."""
    events: list[tuple[str, str]] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line and not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
        elif not line and "data" in fields:
            events.append((fields.get("id", ""), fields["data"]))
            if fields["data"] == until:
                return events
            fields = {}
    raise AssertionError(f"the stream ended before {until!r}: {events}")


@pytest.mark.anyio
async def test_recoverable_events_resume_where_the_client_left(app: ProxiedApp) -> None:
    """The example's /events: a client that reconnects with Last-Event-ID misses nothing."""
    channel = "resume"
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            received = anyio.Event()
            async with client.stream("GET", f"{app.http_url}/events/{channel}") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async with anyio.create_task_group() as tasks:
                    # The first publish may race the subscription (spec §6.1): recovery
                    # would deliver it later anyway; publish until one arrives live.
                    tasks.start_soon(publish_until, client, app, channel, "first", received)
                    first = await read_sse_ids(response, "first")
                    received.set()
            last_id = first[-1][0]
            assert re.fullmatch(rf"{channel}:\d+", last_id), first
            # Away: two messages, one with a % (Pushpin's id template) and non-ASCII text.
            for text in ("missed 100%", "missed ünïcode"):
                response = await client.post(f"{app.http_url}/publish/{channel}", content=text)
                assert response.status_code == 200
            headers = {"Last-Event-ID": last_id}
            url = f"{app.http_url}/events/{channel}"
            async with client.stream("GET", url, headers=headers) as response:
                resumed = await read_sse_ids(response, "missed ünïcode")
    number = int(last_id.split(":")[1])
    assert resumed == [
        (f"{channel}:{number + 1}", "missed 100%"),
        (f"{channel}:{number + 2}", "missed ünïcode"),
    ]


@pytest.mark.anyio
async def test_long_poll_receives_a_publish(app: ProxiedApp) -> None:
    received = anyio.Event()
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tasks:
                # Pushpin re-requests a new long-poll about 1 s in (spec §6.1); keep publishing.
                tasks.start_soon(publish_until, client, app, "poll-news", "hello", received)
                response = await client.get(f"{app.http_url}/poll/poll-news")
                received.set()
    assert (response.status_code, response.text) == (200, "hello\n")


@pytest.mark.anyio
async def test_long_poll_times_out_with_the_original_response(app: ProxiedApp) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        with anyio.fail_after(TIMEOUT):
            started = anyio.current_time()
            response = await client.get(f"{app.http_url}/poll/quiet?timeout=5")
    assert (response.status_code, response.text) == (200, "timeout\n")
    assert anyio.current_time() - started >= 4  # Pushpin's minimum is 5 s, less 0-1 s jitter


@pytest.mark.anyio
async def test_forged_or_missing_signature_is_not_proxied(app: ProxiedApp) -> None:
    """Straight to the app, around the proxy: a forged Grip-Sig gets nothing GRIP."""
    direct = f"http://127.0.0.1:{app.server.port}"
    forged = GripTestProxy(key="not-the-key-pushpin-signs-with")
    async with httpx.AsyncClient(timeout=5) as client:
        for headers in ({}, forged.headers(), {"Grip-Sig": "garbage"}):
            response = await client.get(f"{direct}/stream/x", headers=headers)
            assert response.status_code == 501
            assert not any(k.lower().startswith("grip-") for k in response.headers)
        request = forged.websocket(open_event())
        response = await client.post(f"{direct}/echo", **request.kwargs())
        assert response.status_code == 400
        assert "Not a WebSocket-over-HTTP request" in response.text


@pytest.mark.anyio
async def test_proxy_with_the_wrong_key_is_refused(
    proxied_app: ProxiedAppFactory, server: Callable[[int, dict[str, str]], ProcessServer]
) -> None:
    wrong = "http://127.0.0.1:1/?verify-iss=pushpin&verify-key=other"
    app = proxied_app(server, env={"GRIP_URL": wrong})
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{app.http_url}/stream/x")
    assert response.status_code == 501


@pytest.mark.anyio
async def test_two_workers_and_a_publish_from_another_process(app: ProxiedApp) -> None:
    received = anyio.Event()
    channel = "workers"

    def publish_from_cli() -> None:
        subprocess.run(
            [sys.executable, "-m", "grip_asgi", "publish", channel, "from the cli"],
            env={**os.environ, "GRIP_URL": app.grip_url},
            cwd=REPO_ROOT,
            check=True,
            timeout=10,
        )

    async def publish_until_received() -> None:
        while not received.is_set():
            await anyio.to_thread.run_sync(publish_from_cli)
            with anyio.move_on_after(0.25):
                await received.wait()

    async with httpx.AsyncClient(timeout=5) as client:
        with anyio.fail_after(TIMEOUT):
            # Several streams, so both workers answer some of the hold requests.
            async with anyio.create_task_group() as tasks:
                streams = [
                    await tasks.start(_hold_stream, client, f"{app.http_url}/stream/{channel}")
                    for _ in range(6)
                ]
                tasks.start_soon(publish_until_received)
                for stream in streams:
                    await stream.wait()
                received.set()
    log = app.server.read_log()
    assert log.count("Started server process") + log.count("Booting worker") == 2


async def _hold_stream(
    client: httpx.AsyncClient, url: str, *, task_status: anyio.abc.TaskStatus[anyio.Event]
) -> None:
    done = anyio.Event()
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        task_status.started(done)
        await read_until(response, "from the cli", done)
