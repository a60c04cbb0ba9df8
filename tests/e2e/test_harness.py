"""The harness itself, through a real Pushpin in front of the hand-written raw ASGI app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import jwt
import pytest
from websockets.asyncio.client import connect

import grip_asgi.pushpin
from grip_asgi.pushpin import Pushpin, _command_line, main

from .servers import (
    REPO_ROOT,
    ProcessServer,
    ProxiedApp,
    UvicornServer,
    free_port,
    publish_until,
)

RAWAPP = "tests.e2e.rawapp:app"
# Characters Pushpin's ini parser treats specially, and long enough for PyJWT's HS256 check.
SIG_KEY = '@harness key "quoted" \\ ,;#%41$x and 32+ bytes'

ProxiedAppFactory = Callable[..., ProxiedApp]


def http_stream_item(channel: str, content: str) -> dict[str, object]:
    return {"channel": channel, "formats": {"http-stream": {"content": content}}}


@pytest.mark.anyio
async def test_stream_hold_receives_a_publish(proxied_app: ProxiedAppFactory) -> None:
    proxied = proxied_app(RAWAPP)
    received = anyio.Event()
    chunks: list[str] = []

    async def read_stream(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", f"{proxied.http_url}/stream/news") as response:
            assert response.status_code == 200
            async for chunk in response.aiter_text():
                chunks.append(chunk)
                if "hello" in "".join(chunks):
                    received.set()
                    return

    async with httpx.AsyncClient(timeout=5) as client, anyio.create_task_group() as tasks:
        with anyio.fail_after(10):
            tasks.start_soon(read_stream, client)
            while not chunks:
                await anyio.sleep(0.01)
            items = [http_stream_item("news", "hello\n")]
            await publish_until(client, proxied.publish_url, items, received)
    assert "".join(chunks).startswith("[open]\nhello\n")


@pytest.mark.anyio
async def test_websocket_over_http_echo_and_publish(proxied_app: ProxiedAppFactory) -> None:
    proxied = proxied_app(RAWAPP)
    with anyio.fail_after(10):
        async with connect(f"{proxied.ws_url}/ws", open_timeout=5) as websocket:
            await websocket.send("ping 1")
            assert await websocket.recv() == "ping 1"

            await websocket.send("subscribe:room")
            item = {"channel": "room", "formats": {"ws-message": {"content": "to the room"}}}
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(25):  # the subscription lands asynchronously (spec §6.1)
                    response = await client.post(proxied.publish_url, json={"items": [item]})
                    response.raise_for_status()
                    with anyio.move_on_after(0.2):
                        assert await websocket.recv() == "to the room"
                        break
                else:
                    pytest.fail("the published message never reached the WebSocket client")


def test_grip_sig_is_signed_with_the_key_and_client_forgeries_are_dropped(
    proxied_app: ProxiedAppFactory,
) -> None:
    proxied = proxied_app(RAWAPP, sig_key=SIG_KEY)
    # Signed with the empty key of Pushpin 1.36's default upstream_key (spec §2): without a
    # configured upstream_key Pushpin would trust this client and pass the forgery through.
    forged = hs256({"iss": "pushpin", "exp": int(time.time()) + 3600}, b"")
    response = httpx.get(f"{proxied.http_url}/sig", headers={"Grip-Sig": forged}, timeout=5)

    token = response.text
    assert response.status_code == 200
    assert token and token != forged
    claims = jwt.decode(token, SIG_KEY, algorithms=["HS256"], issuer="pushpin")
    assert 3590 <= claims["exp"] - time.time() <= 3610
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_restart_keeps_the_ports(proxied_app: ProxiedAppFactory) -> None:
    proxied = proxied_app(RAWAPP)
    pushpin = proxied.pushpin
    urls = (pushpin.http_url, pushpin.publish_url, pushpin.grip_url)
    first_pid = pushpin.pid

    pushpin.restart()

    assert (pushpin.http_url, pushpin.publish_url, pushpin.grip_url) == urls
    assert pushpin.pid != first_pid
    assert httpx.get(f"{pushpin.http_url}/health", timeout=5).text == "ok\n"
    assert httpx.post(pushpin.publish_url, json={"items": []}, timeout=5).status_code == 200


def test_a_server_factory_gets_the_port_and_grip_url(proxied_app: ProxiedAppFactory) -> None:
    env_seen: dict[str, str] = {}

    def uvicorn_with_two_workers(port: int, env: dict[str, str]) -> ProcessServer:
        env_seen.update(env)
        argv = [sys.executable, "-m", "uvicorn", RAWAPP, "--port", str(port), "--workers", "2"]
        return ProcessServer(argv, port, "/health", env)

    proxied = proxied_app(uvicorn_with_two_workers, env={"EXTRA": "1"})
    assert env_seen == {"GRIP_URL": proxied.grip_url, "EXTRA": "1"}
    assert httpx.get(f"{proxied.http_url}/health", timeout=5).text == "ok\n"

    group = proxied.server.pid
    assert group is not None and len(running_in_group(group)) == 4  # + resource tracker
    proxied.server.stop()
    deadline = time.monotonic() + 2  # a SIGKILLed process takes a moment to go
    while running_in_group(group) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running_in_group(group) == []


def test_pushpin_fails_over_to_the_next_backend(pushpin_factory: Callable[..., Pushpin]) -> None:
    with UvicornServer(RAWAPP) as server:
        pushpin = pushpin_factory(backends=[f"127.0.0.1:{free_port()}", f"127.0.0.1:{server.port}"])
        response = httpx.get(f"{pushpin.http_url}/health", timeout=5)
    assert response.text == "ok\n"


def test_start_twice_is_an_error_and_stop_is_idempotent(
    pushpin_factory: Callable[..., Pushpin],
) -> None:
    pushpin = pushpin_factory()
    with pytest.raises(RuntimeError, match="already started"):
        pushpin.start()
    run_dir = pushpin.run_dir
    assert run_dir is not None and pushpin.running

    pushpin.stop()
    pushpin.stop()

    assert not pushpin.running and pushpin.pid is None and pushpin.run_dir is None
    assert not os.path.exists(run_dir)
    assert "stopped" in pushpin.read_log()


def test_a_given_run_dir_is_kept(tmp_path: Path) -> None:
    run_dir = tmp_path / "pp"
    with Pushpin(run_dir=str(run_dir)) as pushpin:
        assert pushpin.run_dir == str(run_dir)
        assert pushpin.log_path == str(run_dir / "pushpin.log")
    assert (run_dir / "pushpin.log").exists() and (run_dir / "routes").exists()


def test_no_process_outlives_an_owner_that_is_killed() -> None:
    owner_code = (
        "from grip_asgi.pushpin import Pushpin\n"
        "pushpin = Pushpin()\n"
        "pushpin.start(timeout=20)\n"
        "print(pushpin.pid, pushpin.run_dir, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    argv = [sys.executable, "-c", owner_code]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=REPO_ROOT) as owner:
        try:
            assert owner.stdout is not None
            pid, run_dir = owner.stdout.readline().decode().split()
            marker = run_dir + os.sep
            pids = [int(pid)] + [int(f.read_text()) for f in Path(run_dir).glob("*.pid")]
            assert len(pids) == 5  # the runner, condure, zurl, pushpin-proxy, pushpin-handler
            assert all(marker in _command_line(pid) for pid in pids)
        finally:
            owner.kill()

    deadline = time.monotonic() + 10
    while os.path.exists(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(run_dir)
    assert not any(marker in _command_line(pid) for pid in pids)


def test_a_server_that_cannot_start_reports_its_log() -> None:
    server = UvicornServer("tests.e2e.no_such_module:app", timeout=10)
    with pytest.raises(RuntimeError, match=r"exited with code \d+:\n.*no_such_module"):
        server.start()
    assert server.log_path is None


def test_main_prints_the_urls_and_stops_on_sigterm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Pushpin] = []

    def follow_log(pushpin: Pushpin) -> None:
        seen.append(pushpin)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the SIGTERM handler

    monkeypatch.setattr("grip_asgi.pushpin._follow_log", follow_log)
    handler = signal.getsignal(signal.SIGTERM)
    code = main(["--backend", "127.0.0.1:9", "--port", "0", "--control-port", "0", "--key", "k"])

    assert code == 0
    [pushpin] = seen
    assert not pushpin.running
    out = capsys.readouterr().out
    assert f"GRIP_URL={pushpin.grip_url}\n" in out and pushpin.publish_url in out
    assert pushpin.grip_url.endswith("verify-key=k")
    assert signal.getsignal(signal.SIGTERM) is handler


def test_main_echoes_the_log_and_cleans_up_when_pushpin_dies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    follow_log = grip_asgi.pushpin._follow_log
    children: list[int] = []

    def kill_then_follow_log(pushpin: Pushpin) -> None:
        assert pushpin.pid is not None and pushpin.run_dir is not None
        children.extend(int(f.read_text()) for f in Path(pushpin.run_dir).glob("*.pid"))
        # Killed hard while the log is followed, the runner leaves its children running.
        killer = threading.Timer(0.5, os.kill, (pushpin.pid, signal.SIGKILL))
        killer.start()
        follow_log(pushpin)
        killer.join()

    monkeypatch.setattr("grip_asgi.pushpin._follow_log", kill_then_follow_log)
    code = main(["--port", "0", "--control-port", "0"])

    assert code == 1
    err = capsys.readouterr().err
    assert "[handler] started" in err and err.endswith("Pushpin exited unexpectedly\n")
    assert len(children) == 4
    deadline = time.monotonic() + 5
    while any(_command_line(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_command_line(pid) for pid in children)


def running_in_group(group: int) -> list[int]:
    """The processes of a process group that run (zombies do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # after "pid (name)": state, ppid, process group, ...
            state, _, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
        except OSError:
            continue  # gone while we looked
        if int(pgrp) == group and state != "Z":
            members.append(int(stat.parent.name))
    return members


def hs256(claims: dict[str, object], key: bytes) -> str:
    """A JWT signed by hand: PyJWT rightly refuses to sign with a short key."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    signing_input = header + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()
