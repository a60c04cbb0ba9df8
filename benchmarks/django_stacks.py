"""Django: what grip_django and django-grip add to bare Django, under WSGI and under ASGI.

Django's own handlers are driven in-process: ``WSGIHandler`` with a WSGI environ, and
``ASGIHandler`` with raw ASGI on one event loop. The three stacks (bare, grip_django and
django-grip) share one settings object; each handler loads its middleware when it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

from ._harness import Batch, Result, Settings, interleave, median_difference
from .asgi import GRIP_KEY, GRIP_URL, grip_token

__all__ = (
    "STACKS",
    "DjangoRequest",
    "asgi_batch",
    "asgi_call",
    "django_settings",
    "handlers",
    "requests",
    "run",
    "wsgi_batch",
    "wsgi_call",
)

#: Middleware of each stack.
STACKS: dict[str, list[str]] = {
    "bare": [],
    "ours": ["grip_django.middleware.GripMiddleware"],
    "django-grip": ["django_grip.GripMiddleware"],
}

_SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "ALLOWED_HOSTS": ["testserver"],
    "ROOT_URLCONF": "benchmarks.django_urls",
    # GRIP_PROXIES stays unset, so django-grip does not grow it on every request (D1), and
    # key= is there because django-grip fails with KeyError on verify-key alone (D2).
    "GRIP_URL": f"{GRIP_URL}&key={GRIP_KEY}",
    "MIDDLEWARE": [],
}


@contextlib.contextmanager
def django_settings() -> Iterator[None]:
    """Django configured for the benchmark (configured here if nobody did it before)."""
    if not settings.configured:
        settings.configure(
            SECRET_KEY="grip-asgi-benchmarks",
            INSTALLED_APPS=["grip_django"],
            DATABASES={},
            USE_TZ=True,
            **_SETTINGS,
        )
        django.setup()
    with override_settings(**_SETTINGS):
        yield


def handlers(stacks: Sequence[str] = tuple(STACKS)) -> dict[str, tuple[WSGIHandler, ASGIHandler]]:
    """A WSGI and an ASGI handler for each stack; call inside :func:`django_settings`."""
    built = {}
    for name in stacks:
        with override_settings(MIDDLEWARE=STACKS[name]):
            built[name] = (WSGIHandler(), ASGIHandler())
    return built


@dataclass(frozen=True)
class DjangoRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    content_type: str = ""


_CLIENT_HEADERS = {
    "User-Agent": "python-httpx/0.28.1",
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "X-Forwarded-For": "127.0.0.1",
}


def requests(token: str, *, prefix: str = "") -> dict[str, DjangoRequest]:
    """The three requests, for the sync views (``prefix=""``) or async ones (``"/async"``)."""
    sig = {"Grip-Sig": token}
    return {
        "plain": DjangoRequest("GET", f"{prefix}/plain", _CLIENT_HEADERS),
        "signed hold": DjangoRequest("GET", f"{prefix}/hold", {**_CLIENT_HEADERS, **sig}),
        "WebSocket echo": DjangoRequest(
            "POST",
            f"{prefix}/echo",
            {**_CLIENT_HEADERS, **sig, "Connection-Id": "bench-1", "Meta-User": "alice"},
            b"TEXT 5\r\nhello\r\n",
            "application/websocket-events",
        ),
    }


# --- WSGI ----------------------------------------------------------------------------------


def _environ(request: DjangoRequest) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    if request.body:
        environ["CONTENT_LENGTH"] = str(len(request.body))
    if request.content_type:
        environ["CONTENT_TYPE"] = request.content_type
    return environ


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
) -> Callable[[bytes], object]:
    return _discard_write


def _discard_write(data: bytes) -> None:
    pass


def wsgi_call(handler: WSGIHandler, request: DjangoRequest) -> tuple[int, dict[str, str], bytes]:
    """One request through ``handler``: its status, headers and body."""
    environ = _environ(request)
    environ["wsgi.input"] = io.BytesIO(request.body)
    response: Any = handler(environ, _start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    return response.status_code, dict(response.items()), body


def wsgi_batch(handler: WSGIHandler, request: DjangoRequest) -> Batch:
    template = _environ(request)
    body = request.body

    def batch(n: int) -> None:
        for _ in range(n):
            environ = template.copy()
            environ["wsgi.input"] = io.BytesIO(body)
            response: Any = handler(environ, _start_response)
            for _chunk in response:
                pass
            response.close()

    return batch


# --- ASGI ----------------------------------------------------------------------------------


def _scope(request: DjangoRequest) -> dict[str, Any]:
    headers = [(b"host", b"testserver")]
    headers += [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    if request.body:
        headers.append((b"content-length", str(len(request.body)).encode()))
    if request.content_type:
        headers.append((b"content-type", request.content_type.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def _receiver(body: bytes) -> Any:
    """The server side of ``receive``: the body, then nothing until Django cancels the wait."""
    pending = True

    async def receive() -> dict[str, Any]:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        # Django listens for a disconnect while the view runs, and cancels the listener after.
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    return receive


async def asgi_call(
    handler: ASGIHandler, request: DjangoRequest
) -> tuple[int, dict[str, str], bytes]:
    """One request through ``handler``: its status, headers and body."""
    sent: list[dict[str, Any]] = []

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    await handler(_scope(request), _receiver(request.body), send)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def _discard(message: Mapping[str, Any]) -> None:
    pass


def asgi_batch(
    loop: asyncio.AbstractEventLoop, handler: ASGIHandler, request: DjangoRequest
) -> Batch:
    template = _scope(request)
    body = request.body

    async def run(n: int) -> None:
        for _ in range(n):
            await handler(dict(template), _receiver(body), _discard)

    def batch(n: int) -> None:
        loop.run_until_complete(run(n))

    return batch


# --- The benchmark -------------------------------------------------------------------------

_ECHO_REPLY = b"TEXT 7\r\nm:hello\r\n"


def check_reply(stack: str, case: str, reply: tuple[int, Mapping[str, str], bytes]) -> None:
    """Raise unless ``reply`` is what ``stack`` must answer to the ``case`` request."""
    status, headers, body = reply
    grip = stack != "bare"
    ok = status == 200
    if case == "signed hold":
        ok = ok and (headers.get("Grip-Hold") == "stream") == grip
    elif case == "WebSocket echo" and grip:
        ok = ok and body == _ECHO_REPLY
    if not ok:
        raise AssertionError(f"{stack}, {case}: unexpected reply {status} {headers} {body!r}")


def run(settings: Settings) -> list[Result]:
    loop = asyncio.new_event_loop()
    try:
        with django_settings():
            return _run(loop, settings)
    finally:
        loop.close()


def _run(loop: asyncio.AbstractEventLoop, settings: Settings) -> list[Result]:
    built = handlers()
    token = grip_token()
    results = []
    for mode, reqs in (("WSGI", requests(token)), ("ASGI", requests(token, prefix="/async"))):
        for case, request in reqs.items():
            batches: dict[str, Batch] = {}
            for stack, (wsgi, asgi) in built.items():
                if mode == "WSGI":
                    check_reply(stack, case, wsgi_call(wsgi, request))
                    batches[stack] = wsgi_batch(wsgi, request)
                else:
                    check_reply(stack, case, loop.run_until_complete(asgi_call(asgi, request)))
                    batches[stack] = asgi_batch(loop, asgi, request)
            times = interleave(batches, settings)
            ours = median_difference(times["ours"], times["bare"]) / 1000
            anchor = median_difference(times["django-grip"], times["bare"]) / 1000
            target = 5.0 if mode == "ASGI" else None if case == "plain" else 3.0
            bare_us = statistics.median(times["bare"]) / 1000
            results.append(
                Result(
                    f"django {mode}",
                    f"{case}: us added",
                    ours,
                    anchor,
                    "us",
                    target=target,
                    anchor_name="django-grip",
                    note=f"bare Django {bare_us:.1f} us per request",
                )
            )
    return results
