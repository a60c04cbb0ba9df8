"""App servers in subprocesses, and the glue that puts a private Pushpin in front of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import httpx

from grip_asgi.pushpin import (
    Pushpin,
    _dismiss_guard,
    _free_ports,
    _http_status,
    _shutdown,
    _spawn_guard,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
_STOP_GRACE = 5.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return _free_ports(1)[0]


class ProcessServer:
    """An HTTP server process on 127.0.0.1:``port``, e.g. gunicorn or uvicorn running an app.

    ``start()`` (or ``with``) runs ``argv`` in its own session from the repository root, with
    ``env`` added to this process's environment and output going to a log file, and returns once
    ``GET ready_path`` gets any HTTP response. ``stop()`` ends the whole process group (workers
    included). If the test process dies first, a watchdog stops it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        ready_path: str = "/",
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = 30,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.env = dict(env or {})
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._guard: subprocess.Popen[bytes] | None = None
        self._log_dir: str | None = None
        self._last_log = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {self.argv!r}>"

    @property
    def pid(self) -> int | None:
        """Process id of the server, which leads its process group; None when not started."""
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> str | None:
        return None if self._log_dir is None else os.path.join(self._log_dir, "server.log")

    def read_log(self) -> str:
        """The server's output so far; after ``stop()``, that of the run that stopped."""
        if self.log_path is None:
            return self._last_log
        return Path(self.log_path).read_text(errors="replace")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it to answer (see :meth:`wait_ready`)."""
        if self._process is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._log_dir = tempfile.mkdtemp(prefix="grip-e2e-server-")
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._guard = _spawn_guard(self._process.pid, self._marker, None, self._log_dir)

    def wait_ready(self) -> None:
        """Wait until the server answers HTTP; stop it and raise RuntimeError if it does not."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, guard, log_dir = self._process, self._guard, self._log_dir
        self._process = self._guard = self._log_dir = None
        if guard is not None:
            _dismiss_guard(guard)
        if process is not None:
            _shutdown(process.pid, self._marker, None, _STOP_GRACE)
            process.wait()
        if log_dir is not None:
            self._last_log = Path(log_dir, "server.log").read_text(errors="replace")
            shutil.rmtree(log_dir, ignore_errors=True)

    def __enter__(self) -> ProcessServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _marker(self) -> str:
        # The server's command line, for the pid-reuse check in _shutdown.
        return " ".join(self.argv)

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.timeout
        while _http_status(self.port, self.ready_path, f"127.0.0.1:{self.port}") is None:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self!r} exited with code {code}:\n{log_tail(self.read_log())}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{self!r} did not answer in {self.timeout} s:\n{log_tail(self.read_log())}"
                )
            time.sleep(0.05)


class UvicornServer(ProcessServer):
    """Uvicorn serving ``app`` (an import string such as ``tests.e2e.rawapp:app``)."""

    def __init__(
        self,
        app: str,
        *,
        port: int = 0,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/",
        extra_args: Sequence[str] = (),
        timeout: float = 30,
    ) -> None:
        port = port or free_port()
        argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        # A held response must not keep uvicorn from exiting.
        argv += ["--workers", str(workers), "--timeout-graceful-shutdown", "1", *extra_args]
        super().__init__(argv, port, ready_path, env, timeout=timeout)


class GunicornServer(ProcessServer):
    """Gunicorn serving the WSGI ``app`` (an import string) with ``workers`` processes."""

    def __init__(
        self,
        app: str,
        *,
        port: int,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        argv = [sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}"]
        argv += ["-w", str(workers), *extra_args]
        if int(version("gunicorn").split(".")[0]) >= 27:
            argv.append("--no-control-socket")  # else it opens ~/.gunicorn/gunicorn.ctl
        super().__init__(argv, port, "/", env)


def one_file_django_application(settings_module: str, *, wsgi: bool) -> object:
    """The WSGI (sync views) or ASGI (async views) application of a one-file Django project:
    a module that is its own settings and URLconf."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    if wsgi:
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


#: Builds the app server for a port and an environment (``GRIP_URL`` included).
ServerFactory = Callable[[int, dict[str, str]], ProcessServer]


@dataclass(frozen=True)
class ProxiedApp:
    """An app server with a private Pushpin in front of it; clients use the Pushpin URLs."""

    pushpin: Pushpin
    server: ProcessServer

    @property
    def http_url(self) -> str:
        return self.pushpin.http_url

    @property
    def ws_url(self) -> str:
        return self.pushpin.ws_url

    @property
    def publish_url(self) -> str:
        return self.pushpin.publish_url

    @property
    def grip_url(self) -> str:
        return self.pushpin.grip_url


def plan_proxied_app(
    app: str | ServerFactory,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    **pushpin_options: Any,
) -> ProxiedApp:
    """An unstarted :class:`ProxiedApp`: start ``server``, then ``pushpin``.

    Pushpin's ports are chosen first, so the app gets its ``GRIP_URL`` (overridable by
    ``env``) before either starts. ``pushpin_options`` are :class:`Pushpin` keyword options.
    """
    port = free_port()
    pushpin = Pushpin(f"127.0.0.1:{port}", **pushpin_options)
    app_env = {"GRIP_URL": pushpin.grip_url, **(env or {})}
    if isinstance(app, str):
        server: ProcessServer = UvicornServer(
            app, port=port, workers=workers, env=app_env, ready_path=ready_path
        )
    else:
        server = app(port, app_env)
    return ProxiedApp(pushpin, server)


async def publish_until(
    client: httpx.AsyncClient,
    publish_url: str,
    items: Sequence[Mapping[str, Any]],
    received: anyio.Event,
    *,
    interval: float = 0.2,
    timeout: float = 5,
) -> int:
    """Publish ``items`` every ``interval`` seconds until ``received`` is set; the count sent.

    A publish can race the subscription it is meant for (spec §6.1), so a test that publishes
    only once can flake. Raises TimeoutError after ``timeout`` seconds.
    """
    attempts = 0
    with anyio.fail_after(timeout):
        while not received.is_set():
            response = await client.post(publish_url, json={"items": list(items)})
            response.raise_for_status()
            attempts += 1
            with anyio.move_on_after(interval):
                await received.wait()
    return attempts


def log_tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
