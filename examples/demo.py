"""Run the example app behind a private Pushpin: ``./scripts/demo`` (``python -m examples.demo``).

Starts Pushpin on 127.0.0.1 (proxy port 7999, publish port 5561 when free) in front of
``examples.fastapi_app`` (or ``--django`` for the Django example) under uvicorn, prints what
to open and how to publish, and stops both on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from grip_asgi.history import DEFAULT_HISTORY_URL
from grip_asgi.pushpin import Pushpin

APPS = {
    "fastapi": "examples.fastapi_app:app",
    "starlette": "examples.starlette_app:app",
    "django": "examples.django_project.asgi:application",
}


def port_or_free(preferred: int) -> int:
    """``preferred`` if nothing listens there on loopback, else 0 (a free port)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: the app exited with status {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"demo: the app did not listen on port {port} within {timeout:.0f} s")


def instructions(app: str, pushpin: Pushpin, workers: int) -> str:
    """What to open and run against the demo (the Starlette example has fewer routes)."""
    url, ws_url = pushpin.http_url, pushpin.ws_url
    history = os.environ.get("GRIP_HISTORY_URL", DEFAULT_HISTORY_URL)
    lines = [
        f"grip-asgi demo: {app} example ({workers} workers) behind Pushpin",
        "",
        f"  chat page     {url}/?room=lobby&name=ann",
        f"                and {url}/?room=lobby&name=bob in a second tab: history on join,",
        "                who is here, joins and leaves; reload a tab or cut the network for a",
        "                while, and each message still shows once, in order",
        f"  chat client   python -m websockets '{ws_url}/chat/lobby?name=cli'",
        "                (the reliable protocol's JSON, which grip_asgi.client reads for",
        '                you; a chat message\'s data is {"user": <name>, "text": <message>})',
        f"  WebSocket     {ws_url}/echo   e.g. python -m websockets {ws_url}/echo",
        f"  HTTP stream   curl -N {url}/stream/news",
    ]
    if app != "starlette":
        lines += [
            f"  SSE           curl -N {url}/sse/news",
            f"  long-poll     curl {url}/poll/news",
            f"  recoverable   curl -N {url}/events/news",
            "                (SSE that loses nothing: stop it, publish, and resume with",
            f"                curl -N -H 'Last-Event-ID: news:1' {url}/events/news)",
            "",
            f"  publish       curl -d hello {url}/publish/lobby",
            "                (reliably: to the chat room lobby, shown there with no author,",
            "                and /events/lobby; and to the channel's streams, SSE and long-polls)",
        ]
    lines += [
        f"  plain publish GRIP_URL='{pushpin.grip_url}' \\",
        "                .venv/bin/python -m grip_asgi publish news hello",
        "                (to news's plain subscribers; the chat takes reliable publishes only)",
        "",
        f"The chat's history and member lists are kept in {history}.",
        "Ctrl-C stops Pushpin and the app.",
    ]
    return "\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=sorted(APPS), default="fastapi")
    parser.add_argument("--django", dest="app", action="store_const", const="django")
    parser.add_argument("--port", type=int, default=7999, help="proxy port to open in a browser")
    parser.add_argument("--control-port", type=int, default=5561, help="Pushpin publish port")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers for the app")
    args = parser.parse_args(argv)

    app_port = free_port()
    pushpin = Pushpin(
        backend=f"127.0.0.1:{app_port}",
        http_port=port_or_free(args.port),
        control_port=port_or_free(args.control_port),
    )
    env = {
        **os.environ,
        "GRIP_URL": pushpin.grip_url,
        "DJANGO_SETTINGS_MODULE": "examples.django_project.settings",
    }
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            APPS[args.app],
            "--host",
            "127.0.0.1",
            "--port",
            str(app_port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        wait_for_port(app_port, app)
        pushpin.start()
        print(instructions(args.app, pushpin, args.workers), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while app.poll() is None:
            time.sleep(0.5)
        print(f"demo: the app exited with status {app.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        pushpin.stop()
        if app.poll() is None:
            app.terminate()
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()


if __name__ == "__main__":
    raise SystemExit(main())
