"""The examples behind a real Pushpin, with real WebSocket and HTTP clients.

Every test runs against the FastAPI example (uvicorn, two workers) and the Django example
under ASGI (uvicorn) and under WSGI (gunicorn, two workers): the same routes, the same
behaviour. Publishes go through the example's own ``POST /publish/<channel>`` route and the
chat route, or through ``python -m grip_asgi publish`` from another process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version

import anyio
import anyio.abc
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from grip_asgi.testing import GripTestProxy, open_event

from .servers import REPO_ROOT, ProcessServer, ProxiedApp, UvicornServer

TIMEOUT = 15  # seconds any one test may take, start-up excluded
ProxiedAppFactory = Callable[..., ProxiedApp]


def fastapi(port: int, env: dict[str, str]) -> ProcessServer:
    return UvicornServer("examples.fastapi_app:app", port=port, env=env, workers=2)


def django_asgi(port: int, env: dict[str, str]) -> ProcessServer:
    # Django has no lifespan support.
    app = "examples.django_project.asgi:application"
    return UvicornServer(app, port=port, env=env, workers=2, extra_args=["--lifespan", "off"])


def django_wsgi(port: int, env: dict[str, str]) -> ProcessServer:
    app = "examples.django_project.wsgi:application"
    argv = [sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}", "-w", "2"]
    if int(version("gunicorn").split(".")[0]) >= 27:
        argv.append("--no-control-socket")  # else it opens ~/.gunicorn/gunicorn.ctl
    return ProcessServer(argv, port, "/", env)


SERVERS = [fastapi, django_asgi, django_wsgi]
SERVER_IDS = ["fastapi-uvicorn", "django-uvicorn", "django-gunicorn"]


@pytest.fixture(params=SERVERS, ids=SERVER_IDS)
def server(request: pytest.FixtureRequest) -> Callable[[int, dict[str, str]], ProcessServer]:
    factory: Callable[[int, dict[str, str]], ProcessServer] = request.param
    return factory


@pytest.fixture
def app(
    proxied_app: ProxiedAppFactory, server: Callable[[int, dict[str, str]], ProcessServer]
) -> ProxiedApp:
    return proxied_app(server)


@pytest.mark.anyio
async def test_chat_page(app: ProxiedApp) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{app.http_url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "grip-asgi chat" in response.text


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


@pytest.mark.anyio
async def test_server_close_code_reaches_the_client(app: ProxiedApp) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(f"{app.ws_url}/chat/closing", open_timeout=5) as websocket:
            await websocket.send("/leave")
            with pytest.raises(ConnectionClosed):
                await websocket.recv()
        assert websocket.protocol.close_rcvd is not None
        assert (websocket.protocol.close_rcvd.code, websocket.protocol.close_rcvd.reason) == (
            4000,
            "left the room",
        )


@pytest.mark.anyio
async def test_reject_on_open(app: ProxiedApp) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(InvalidStatus) as rejected:
        async with connect(f"{app.ws_url}/chat/not%20a%20room", open_timeout=5):
            pass  # pragma: no cover - the handshake fails
    assert rejected.value.response.status_code == 400
    assert b"room names are" in rejected.value.response.body


@pytest.mark.anyio
async def test_chat_fans_out_and_a_publish_reaches_every_member(app: ProxiedApp) -> None:
    url = f"{app.ws_url}/chat/lobby"
    with anyio.fail_after(TIMEOUT):
        async with (
            connect(url, open_timeout=5) as alice,
            connect(url, open_timeout=5) as bob,
            connect(url, open_timeout=5) as carol,
        ):
            bob_got = anyio.Event()
            # The first message may race Bob's subscription (spec §6.1): send until he has one.
            async with anyio.create_task_group() as tasks:

                async def bob_listens() -> None:
                    assert str(await bob.recv()).startswith("hi ")
                    bob_got.set()

                tasks.start_soon(bob_listens)
                attempt = 0
                while not bob_got.is_set():
                    await alice.send(f"hi {attempt}")
                    attempt += 1
                    with anyio.move_on_after(0.25):
                        await bob_got.wait()
            # Now everyone is subscribed: one publish reaches all three, in order.
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.post(f"{app.http_url}/publish/lobby", content="news!")
                assert response.status_code == 200
            for member in (alice, bob, carol):
                while (message := await member.recv()) != "news!":
                    assert str(message).startswith("hi ")


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
async def test_the_chat_history_survives_a_reload(app: ProxiedApp) -> None:
    room = f"history-{os.getpid()}"
    url = f"{app.ws_url}/chat/{room}"
    with anyio.fail_after(TIMEOUT):
        async with connect(url, open_timeout=5) as first_visit:
            await first_visit.send("said before the reload")
            assert await first_visit.recv() == "said before the reload"  # published back
        async with connect(url, open_timeout=5) as reloaded:
            assert await reloaded.recv() == "said before the reload"


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
