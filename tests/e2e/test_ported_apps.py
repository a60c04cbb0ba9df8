"""Apps written for the peers, ported by changing their imports, behind a real Pushpin.

- ``tests/e2e/ported/gripcontrol_app.py``: a gripcontrol app on a plain ``http.server``
  (gripcontrol's README style, with the seed article's WebSocket echo);
- ``tests/e2e/ported/django_grip_project``: django-grip's README views, under gunicorn
  (the imports changed, and the middleware's name in the settings);
- ``tests/e2e/ported/faas_chat.py``: faas-grip's README chat as an ASGI app, under uvicorn.

Real WebSocket and HTTP clients talk to Pushpin; publishes go through the apps' own routes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.compat.harness import original_source
from tests.compat.peers import build_site

from .servers import REPO_ROOT, GunicornServer, ProcessServer, ProxiedApp, ServerFactory

TIMEOUT = 15  # seconds any one test may take, start-up excluded
ProxiedAppFactory = Callable[..., ProxiedApp]
PORTED = Path(__file__).parent / "ported"


def gripcontrol_app(port: int, env: dict[str, str]) -> ProcessServer:
    argv = [sys.executable, "-m", "tests.e2e.ported.gripcontrol_app", str(port)]
    return ProcessServer(argv, port, "/", env)


def original_gripcontrol_app(site: Path, script: Path) -> ServerFactory:
    """The app before the port: the same file with gripcontrol's imports, on gripcontrol
    4.4.0's published code (fetched as ``tests/compat`` fetches it)."""
    script.write_text(original_source(PORTED / "gripcontrol_app.py"), encoding="utf-8")

    def factory(port: int, env: dict[str, str]) -> ProcessServer:
        path = os.pathsep.join([str(site), str(REPO_ROOT)])
        argv = [sys.executable, "-W", "ignore", str(script), str(port)]
        return ProcessServer(argv, port, "/", {**env, "PYTHONPATH": path})

    return factory


def django_grip_app(port: int, env: dict[str, str]) -> ProcessServer:
    app = "tests.e2e.ported.django_grip_project.wsgi:application"
    settings = "tests.e2e.ported.django_grip_project.settings"
    # One process (the long-poll's object lives in it), several threads.
    env = {**env, "DJANGO_SETTINGS_MODULE": settings}
    return GunicornServer(app, port=port, workers=1, env=env, extra_args=["--threads", "4"])


async def send_until(
    websocket: ClientConnection, received: anyio.Event, text: Callable[[int], str]
) -> None:
    """Send ``text(n)`` every quarter second until ``received``: the first messages may race
    the subscription (spec §6.1)."""
    attempt = 0
    while not received.is_set():
        await websocket.send(text(attempt))
        attempt += 1
        with anyio.move_on_after(0.25):
            await received.wait()


async def post_until(
    client: httpx.AsyncClient,
    url: str,
    received: anyio.Event,
    content: str | None = None,
    data: dict[str, str] | None = None,
) -> None:
    """POST every quarter second until ``received`` (a publish may race the subscription)."""
    while not received.is_set():
        response = await client.post(url, content=content, data=data)
        assert response.status_code == 200, response.text
        with anyio.move_on_after(0.25):
            await received.wait()


async def read_stream_until(
    client: httpx.AsyncClient, url: str, marker: str, received: anyio.Event
) -> str:
    text = ""
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert "grip-hold" not in response.headers  # the proxy took the instruct
        async for chunk in response.aiter_text():
            text += chunk
            if marker in text:
                received.set()
                return text
    raise AssertionError(f"the stream ended before {marker!r}: {text!r}")


async def echo_twice_then_close(app: ProxiedApp, path: str) -> ClientConnection:
    """Echo two messages, close, and return the connection (to see how the app closed it)."""
    with anyio.fail_after(TIMEOUT):
        async with connect(f"{app.ws_url}{path}", open_timeout=5) as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "hello"
            await websocket.send("é" * 100)
            assert await websocket.recv() == "é" * 100
    return websocket


def closed_normally(websocket: ClientConnection) -> None:
    # The handler answered the client's close with ws.close(): code 1000 (normal closure).
    assert websocket.protocol.close_rcvd is not None
    assert websocket.protocol.close_rcvd.code == 1000


# --- The gripcontrol app ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("peers") / "site")


@pytest.fixture(params=["ported", "original"])
def gripcontrol(
    request: pytest.FixtureRequest,
    proxied_app: ProxiedAppFactory,
    tmp_path: Path,
) -> ProxiedApp:
    """The ported app; and, so that the port is seen to change nothing, the original app on
    gripcontrol itself."""
    if request.param == "ported":
        return proxied_app(gripcontrol_app)
    site = request.getfixturevalue("peer_site")
    return proxied_app(original_gripcontrol_app(site, tmp_path / "gripcontrol_app.py"))


@pytest.mark.anyio
async def test_gripcontrol_app_echoes(
    gripcontrol: ProxiedApp, request: pytest.FixtureRequest
) -> None:
    websocket = await echo_twice_then_close(gripcontrol, "/echo")
    if request.node.callspec.params["gripcontrol"] == "ported":
        closed_normally(websocket)
    else:
        # The expected difference, end to end: gripcontrol's ws.close() sends close code 0,
        # which Pushpin does not pass on, so the client's connection ends without a close
        # frame (1006, abnormal closure).
        assert websocket.protocol.close_rcvd is None
        assert websocket.close_code == 1006


@pytest.mark.anyio
async def test_gripcontrol_app_publishes_to_every_kind_of_subscriber(
    gripcontrol: ProxiedApp,
) -> None:
    publish = f"{gripcontrol.http_url}/publish/room"
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            # A WebSocket subscribed with a control message.
            async with connect(f"{gripcontrol.ws_url}/room", open_timeout=5) as websocket:
                received = anyio.Event()
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(post_until, client, publish, received, "news")
                    assert await websocket.recv() == "news"
                    received.set()
            # An HTTP stream held with Grip-* headers.
            received = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post_until, client, publish, received, "more")
                stream = f"{gripcontrol.http_url}/stream/room"
                text = await read_stream_until(client, stream, "more\n", received)
            assert text.startswith("[stream open]\n")
            # A long-poll held with an application/grip-instruct body.
            received = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post_until, client, publish, received, "polled")
                response = await client.get(f"{gripcontrol.http_url}/poll/room")
                received.set()
    assert (response.status_code, response.text) == (200, "polled\n")


@pytest.mark.anyio
async def test_gripcontrol_app_long_poll_times_out_with_its_response(
    gripcontrol: ProxiedApp,
) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        with anyio.fail_after(TIMEOUT):
            response = await client.get(f"{gripcontrol.http_url}/poll/quiet")
    assert (response.status_code, response.text) == (200, "timed out\n")


@pytest.mark.anyio
async def test_gripcontrol_app_refuses_a_direct_request(gripcontrol: ProxiedApp) -> None:
    direct = f"http://127.0.0.1:{gripcontrol.server.port}"
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{direct}/stream/room", headers={"Grip-Sig": "forged"})
    assert (response.status_code, response.text) == (501, "Not Implemented\n")
    assert not any(name.startswith("grip-") for name in response.headers)


# --- The django-grip app ------------------------------------------------------------------------


@pytest.fixture
def django_grip(proxied_app: ProxiedAppFactory) -> ProxiedApp:
    return proxied_app(django_grip_app)


@pytest.mark.anyio
async def test_django_grip_app_echoes(django_grip: ProxiedApp) -> None:
    closed_normally(await echo_twice_then_close(django_grip, "/echo"))


@pytest.mark.anyio
async def test_django_grip_app_broadcasts_to_the_echo_clients(django_grip: ProxiedApp) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            async with (
                connect(f"{django_grip.ws_url}/echo", open_timeout=5) as alice,
                connect(f"{django_grip.ws_url}/echo", open_timeout=5) as bob,
            ):
                received = anyio.Event()
                async with anyio.create_task_group() as tasks:
                    broadcast = f"{django_grip.http_url}/broadcast"
                    tasks.start_soon(post_until, client, broadcast, received, None, {"data": "hi"})
                    assert await alice.recv() == "hi"
                    assert await bob.recv() == "hi"
                    received.set()


@pytest.mark.anyio
async def test_django_grip_app_streams_what_is_posted(django_grip: ProxiedApp) -> None:
    url = f"{django_grip.http_url}/stream"
    received = anyio.Event()
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post_until, client, url, received, None, {"data": "posted"})
                text = await read_stream_until(client, url, "posted\n", received)
    assert text.startswith("[stream open]\n")


@pytest.mark.anyio
async def test_django_grip_app_long_poll_gets_the_new_object(django_grip: ProxiedApp) -> None:
    url = f"{django_grip.http_url}/longpoll"
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(TIMEOUT):
            first = await client.get(url)
            assert (first.text, first.headers["etag"]) == ("object v1\n", '"v1"')
            received = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post_until, client, url, received)
                held = await client.get(url, headers={"If-None-Match": '"v1"'})
                received.set()
    # The published object (or, if Pushpin asked again, the current one), with its ETag.
    match = re.fullmatch(r"object v(\d+)\n", held.text)
    assert held.status_code == 200 and match is not None, held.text
    assert int(match.group(1)) >= 2
    assert held.headers["etag"] == f'"v{match.group(1)}"'


@pytest.mark.anyio
async def test_django_grip_app_refuses_a_direct_request(django_grip: ProxiedApp) -> None:
    direct = f"http://127.0.0.1:{django_grip.server.port}"
    async with httpx.AsyncClient(timeout=5) as client:
        stream = await client.get(f"{direct}/stream", headers={"Grip-Sig": "forged"})
        echo = await client.post(
            f"{direct}/echo",
            content=b"OPEN\r\n",
            headers={"Content-Type": "application/websocket-events", "Connection-Id": "c1"},
        )
    # The README's own check, on request.grip_proxied; and websocket_only.
    assert (stream.status_code, stream.text) == (501, "Not Implemented\n")
    assert echo.status_code == 400


# --- faas-grip's chat, as an ASGI app ------------------------------------------------------------


@pytest.mark.anyio
async def test_faas_grip_chat_port_sets_nicks_and_fans_out(proxied_app: ProxiedAppFactory) -> None:
    app = proxied_app("tests.e2e.ported.faas_chat:app")
    with anyio.fail_after(TIMEOUT):
        async with (
            connect(f"{app.ws_url}/", open_timeout=5) as alice,
            connect(f"{app.ws_url}/", open_timeout=5) as bob,
        ):
            await alice.send("/nick alice")
            assert await alice.recv() == "nickname set to [alice]"
            received = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(send_until, alice, received, lambda n: f"hello {n}")
                while not str(message := await bob.recv()).startswith("alice: hello "):
                    pass  # pragma: no cover - only other members' messages
                received.set()
            assert re.fullmatch(r"alice: hello \d+", str(message))
