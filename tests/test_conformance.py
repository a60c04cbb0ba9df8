"""The conformance table (tests/cases.py) through every adapter, with real server interfaces.

- ``asgi``: a tiny Starlette app behind ``grip_asgi.middleware.GripMiddleware``;
- ``django-wsgi``: Django's ``WSGIHandler`` (GripMiddleware in sync mode, sync views);
- ``django-asgi``: Django's ``ASGIHandler`` (GripMiddleware in async mode, async views).

Each adapter gets the request exactly as a server hands it over (raw ASGI messages, a WSGI
environ), so repeated headers and a lying Content-Length reach them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import os
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception
from django.test import override_settings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from grip_asgi import GripConfig
from grip_asgi.middleware import GripMiddleware
from grip_asgi.testing import text_event
from tests.cases import (
    BEHAVIOURS,
    CASES,
    STREAM_TAIL,
    Case,
    Config,
    Expected,
    Reply,
    Request,
    websocket,
)
from tests.djangoapp import isolate_grip, setup_django

setup_django()

ADAPTERS = ("asgi", "django-wsgi", "django-asgi")
_KEPT_PREFIXES = ("grip-", "set-meta-", "sec-websocket-")
_KEPT_HEADERS = {"content-type", "keep-alive-interval"}


@dataclass(frozen=True)
class Observed:
    """A response, reduced to what GRIP decides: status, GRIP-related headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes
    #: The exception the app raised; the response is then the framework's own 500.
    error: type[BaseException] | None = None

    @classmethod
    def of(
        cls, status: int, headers: list[tuple[str, str]], body: bytes, error: BaseException | None
    ) -> Observed:
        names = [name.lower() for name, _ in headers]
        assert len(set(names)) == len(names), f"repeated headers: {headers}"
        lowered = {name.lower(): value for name, value in headers}
        if "content-length" in lowered:
            assert int(lowered["content-length"]) == len(body), "Content-Length is stale"
        if error is not None and status >= 500:
            # Each framework's own error page: only the status and the error compare.
            return cls(status, {}, b"", type(error))
        kept = {
            name: value
            for name, value in lowered.items()
            if name in _KEPT_HEADERS or name.startswith(_KEPT_PREFIXES)
        }
        return cls(status, kept, body, None if error is None else type(error))


@pytest.fixture(autouse=True)
def _isolated_grip(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_grip(monkeypatch)
    yield
    isolate_grip(monkeypatch)


# --- The adapters -----------------------------------------------------------------------------


async def _endpoint(request: StarletteRequest) -> Response:
    reply = BEHAVIOURS[request.path_params["behaviour"]](request.state.grip)
    headers = dict(reply.headers)
    if reply.streamed:
        return StreamingResponse(
            _chunks(reply), reply.status, headers, media_type=reply.content_type
        )
    return Response(reply.body, reply.status, headers, media_type=reply.content_type)


async def _chunks(reply: Reply) -> AsyncIterator[bytes]:
    yield reply.body
    if reply.mid_stream is not None:
        reply.mid_stream()
    yield STREAM_TAIL


@functools.cache
def _starlette_app(config: Config) -> Starlette:
    grip = Middleware(
        GripMiddleware,
        grip=_asgi_proxies(config),
        verify_key=config.verify_key,
        prefix=config.prefix,
        proxy_required=config.proxy_required,
        proxy_only=config.proxy_only,
        max_body_size=config.max_body_size,
    )
    route = Route("/case/{behaviour}", _endpoint, methods=["GET", "POST"])
    return Starlette(routes=[route], middleware=[grip])


def _asgi_proxies(config: Config) -> list[str | GripConfig] | None:
    """The middleware's ``grip`` argument; None reads the environment."""
    if config.grip_url is None and config.proxies is None:
        return None
    proxies: list[str | GripConfig] = [] if config.grip_url is None else [config.grip_url]
    proxies += [GripConfig.from_dict(dict(entry)) for entry in config.proxies or ()]
    return proxies


def _django_settings(config: Config) -> dict[str, Any]:
    # None leaves a setting to the environment.
    return {
        "GRIP_URL": config.grip_url,
        "GRIP_PROXIES": None if config.proxies is None else [dict(e) for e in config.proxies],
        "GRIP_VERIFY_KEY": config.verify_key,
        "GRIP_PREFIX": config.prefix,
        "GRIP_PROXY_REQUIRED": config.proxy_required,
        "GRIP_PROXY_ONLY": config.proxy_only,
        "GRIP_MAX_BODY_SIZE": config.max_body_size,
    }


@contextlib.contextmanager
def _django_errors() -> Iterator[list[BaseException]]:
    """Collect the exceptions Django turns into 500 responses."""
    errors: list[BaseException] = []

    def record(**kwargs: Any) -> None:
        errors.append(sys.exc_info()[1] or AssertionError("no exception"))

    got_request_exception.connect(record, weak=False)
    try:
        yield errors
    finally:
        got_request_exception.disconnect(record)


def _header_list(request: Request) -> list[tuple[str, str]]:
    headers = [("host", "testserver"), *request.headers]
    if request.body and not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("content-length", str(len(request.body))))
    return headers


async def _call_asgi(app: Callable[..., Any], path: str, request: Request) -> Observed:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in _header_list(request)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [{"type": "http.request", "body": request.body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # no disconnect: the server waits until cancelled
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    error: BaseException | None = None
    with _django_errors() as django_errors:
        try:
            await asyncio.wait_for(app(scope, receive, send), 5)
        except Exception as exc:  # Starlette re-raises after its 500
            error = exc
            # Django's ASGIHandler leaves the request body file open when a streaming
            # body raises; collect it here, not in whichever test runs next.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
    start = sent[0]
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Observed.of(start["status"], headers, body, error or next(iter(django_errors), None))


def _call_wsgi(app: WSGIHandler, path: str, request: Request) -> Observed:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in _header_list(request):
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        # WSGI servers join repeated headers with commas.
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))

    chunks: list[bytes] = []
    error: BaseException | None = None
    with _django_errors() as errors:
        result = app(environ, start_response)
        try:
            chunks.extend(result)
        except Exception as exc:  # a streaming body that fails: the server's to report
            error = exc
        finally:
            result.close()
    status, headers = started[0]
    error = error or next(iter(errors), None)
    return Observed.of(int(status.split()[0]), headers, b"".join(chunks), error)


@functools.cache
def _wsgi_handler() -> WSGIHandler:
    return WSGIHandler()


@functools.cache
def _asgi_handler() -> ASGIHandler:
    return ASGIHandler()


def observe(adapter: str, case: Case) -> Observed:
    path = f"/case/{case.behaviour}"
    config = case.config
    with mock.patch.dict(os.environ, config.environ):
        if adapter == "asgi":
            return asyncio.run(_call_asgi(_starlette_app(config), path, case.request))
        with override_settings(**_django_settings(config)):
            if adapter == "django-wsgi":
                return _call_wsgi(_wsgi_handler(), path, case.request)
            return asyncio.run(_call_asgi(_asgi_handler(), "/async" + path, case.request))


# --- The tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_adapter_gives_the_expected_response(case: Case, adapter: str) -> None:
    observed = observe(adapter, case)
    expected = case.expected
    assert (observed.status, observed.error) == (expected.status, expected.error), observed
    for name, value in expected.headers.items():
        assert observed.headers.get(name) == value, (name, observed)
    if expected.body is not None:
        assert observed.body == expected.body
    assert expected.body_contains in observed.body


@pytest.mark.parametrize("adapter", ["asgi", "django-wsgi"])
def test_a_meta_header_written_with_underscores_reads_as_dashes(adapter: str) -> None:
    """Pushpin sends back what a peer library set as ``user_id``. (Django under ASGI drops
    header names with ``_`` itself; grip-asgi never writes one, see ``meta_name``.)"""
    request = websocket(text_event("x"))
    request = Request("POST", (*request.headers, ("Meta-User_Id", "7")), request.body)
    observed = observe(adapter, Case("meta", "ws_say_meta", request, Expected(200)))
    assert observed.body == b'TEXT 21\r\nm:{"user": "ann", "user-id": "7"}\r\n'


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_adapters_agree(case: Case) -> None:
    """Not only the expected parts: every GRIP-related header and the body are the same."""
    observed = {adapter: observe(adapter, case) for adapter in ADAPTERS}
    assert observed["django-wsgi"] == observed["asgi"]
    assert observed["django-asgi"] == observed["asgi"]
