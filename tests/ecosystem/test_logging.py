"""Logging: a named logger per module, a debug record for every Grip-Sig decision and every
publish attempt, and no secret in any record.

A secret is anything that lets someone pose as the proxy or publish: a verify or publish key,
a password, a ``Grip-Sig`` token, the JWT or Bearer token sent to publish, Basic credentials.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import logging
import pkgutil
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
import pytest

import grip_asgi
import grip_django
from grip_asgi import (
    GripContext,
    GripMiddleware,
    Publisher,
    PublishError,
    SyncPublisher,
    get_grip_context,
    text_formats,
)
from grip_asgi.middleware import Receive, Scope, Send
from grip_asgi.testing import GripTestProxy, make_grip_sig

from . import call_app, http_scope

# --- Logger names ----------------------------------------------------------------------------

PACKAGES = (grip_asgi, grip_django)


def library_modules() -> list[str]:
    return [
        f"{package.__name__}.{module.name}"
        for package in PACKAGES
        for module in pkgutil.iter_modules(package.__path__)
    ]


def logger_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    # type(), not isinstance(): the latter would make Django's lazy settings load.
    return [value.name for value in vars(module).values() if type(value) is logging.Logger]


def public_name(module_name: str) -> str:
    """``grip_asgi._publish`` → ``grip_asgi.publish``: what users configure."""
    package, _, module = module_name.rpartition(".")
    return f"{package}.{module.lstrip('_')}"


LOGGING_MODULES = [name for name in library_modules() if logger_names(name)]


@pytest.mark.parametrize("module_name", LOGGING_MODULES)
def test_each_module_logs_under_its_own_name(module_name: str) -> None:
    assert logger_names(module_name) == [public_name(module_name)]


def test_the_modules_that_log() -> None:
    # The inventory: a module that starts logging joins it once its records were reviewed.
    assert LOGGING_MODULES == [
        "grip_asgi._context",
        "grip_asgi._publish",
        "grip_asgi._recovery",
        "grip_asgi._reliable_ws",
        "grip_asgi._signature",
        "grip_asgi.client",
        "grip_asgi.metrics",
        "grip_asgi.middleware",
        "grip_django.middleware",
    ]


@pytest.mark.parametrize("module_name", library_modules())
def test_nothing_logs_through_the_root_logger(module_name: str) -> None:
    source = inspect.getsource(importlib.import_module(module_name))
    assert not re.search(r"\blogging\.(debug|info|warning|error|exception|critical|log)\(", source)


# --- What must never be logged ---------------------------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of the library's loggers, from DEBUG up (``logs.records``)."""
    for name in ("grip_asgi", "grip_django"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def texts_of(record: logging.LogRecord) -> list[str]:
    texts = [str(record.msg), record.getMessage(), repr(record.args)]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


def assert_no_secret(records: Iterable[logging.LogRecord], secrets: Iterable[str]) -> None:
    secrets = list(secrets)
    for record in records:
        for text in texts_of(record):
            assert_free_of(text, secrets, record.name)


def assert_free_of(text: str, secrets: Iterable[str], source: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{source} gave away {secret!r}: {text!r}"


def debug_messages(records: Iterable[logging.LogRecord], logger: str) -> list[str]:
    return [
        record.getMessage()
        for record in records
        if record.levelno == logging.DEBUG and record.name.startswith(logger)
    ]


# --- Grip-Sig decisions, through the ASGI middleware -----------------------------------------

VERIFY_KEY = "verify-key-4f1e9c"
GRIP_URL = f"http://pushpin.test:5561/?verify-iss=pushpin&verify-key={VERIFY_KEY}"


async def seen_context(middleware: GripMiddleware, grip_sigs: list[str]) -> GripContext:
    """Send a request with these ``Grip-Sig`` headers; the context the app saw."""
    scope = http_scope("GET", "/", {})
    scope["headers"] += [(b"grip-sig", sig.encode()) for sig in grip_sigs]
    await call_app(middleware, scope)
    return get_grip_context(scope)


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


REJECTED = {
    "forged": ([make_grip_sig("not-the-key")], "bad signature"),
    "expired": ([make_grip_sig(VERIFY_KEY, expires_in=-60)], "expired"),
    "wrong issuer": ([make_grip_sig(VERIFY_KEY, iss="mallory")], "wrong issuer"),
    "malformed": (["Bearer " + VERIFY_KEY], "malformed token"),
    "several": ([make_grip_sig(VERIFY_KEY), make_grip_sig(VERIFY_KEY)], "several Grip-Sig"),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("grip_sigs", "reason"), REJECTED.values(), ids=REJECTED.keys())
async def test_a_rejected_grip_sig_is_logged_with_its_reason(
    logs: pytest.LogCaptureFixture, grip_sigs: list[str], reason: str
) -> None:
    ctx = await seen_context(GripMiddleware(ok_app, grip=GRIP_URL), grip_sigs)
    assert not ctx.is_proxied
    messages = debug_messages(logs.records, "grip_asgi")
    assert any("Grip-Sig" in message and reason in message for message in messages), messages
    assert_no_secret(logs.records, [VERIFY_KEY, *grip_sigs])


ACCEPTED = {
    "signed": (GRIP_URL, make_grip_sig(VERIFY_KEY)),
    # With no key, any Grip-Sig counts (and a warning says so at start-up).
    "no key to verify": ("http://pushpin.test:5561/", make_grip_sig("anything")),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("grip_url", "grip_sig"), ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_an_accepted_grip_sig_is_logged(
    logs: pytest.LogCaptureFixture, grip_url: str, grip_sig: str
) -> None:
    ctx = await seen_context(GripMiddleware(ok_app, grip=grip_url), [grip_sig])
    assert ctx.is_proxied
    assert_no_secret(logs.records, [VERIFY_KEY, grip_sig])
    messages = debug_messages(logs.records, "grip_asgi")
    assert any("Grip-Sig accepted" in message for message in messages), messages


@pytest.mark.anyio
async def test_a_rejected_request_is_logged_without_secrets(
    logs: pytest.LogCaptureFixture,
) -> None:
    proxy = GripTestProxy(key=VERIFY_KEY)
    request = proxy.websocket()
    scope = http_scope("POST", "/", request.headers)
    sent = await call_app(GripMiddleware(ok_app, grip=GRIP_URL), scope, b"TEXT zz\r\n")
    assert sent[0]["status"] == 400
    assert any(
        "rejecting request" in m for m in debug_messages(logs.records, "grip_asgi.middleware")
    )
    assert_no_secret(logs.records, [VERIFY_KEY, request.headers["Grip-Sig"]])


# --- Publish attempts ------------------------------------------------------------------------

PUBLISH_KEY = "publish-key-8d2b71"
PASSWORD = "pa55word-c3a9"
AUTH_URLS = {
    "jwt": f"http://pushpin.test:5561/?iss=pushpin&key={PUBLISH_KEY}",
    "bearer": f"http://pushpin.test:5561/?key={PUBLISH_KEY}",
    "basic": f"http://publisher:{PASSWORD}@pushpin.test:5561/",
}


@dataclass
class FakeProxy:
    """A publish endpoint that fails as told, echoing the credentials it got."""

    auth: str
    failure: str
    authorizations: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        authorization = request.headers["authorization"]
        self.authorizations.append(authorization)
        echo = f"rejected: {authorization} (key {PUBLISH_KEY}, password {PASSWORD})"
        if self.failure == "connect":
            raise httpx.ConnectError(echo, request=request)
        if self.failure == "500":
            return httpx.Response(500, text=echo)
        return httpx.Response(200, text="Published\n")

    def secrets(self) -> list[str]:
        """The configured secret, and each token sent (a JWT, the key, base64 credentials)."""
        tokens = [authorization.partition(" ")[2] for authorization in self.authorizations]
        return [PASSWORD if self.auth == "basic" else PUBLISH_KEY, *tokens]


# failure: (attempts, what each is logged with). Every item has an id, so one retry is made.
OUTCOMES = {"ok": (1, "200"), "500": (2, "500"), "connect": (2, "ConnectError")}
ATTEMPT = re.compile(r"publish to http://pushpin\.test:5561: 1 item\(s\), attempt (\d+): (.+)")


def check_publish_logs(
    records: list[logging.LogRecord], fake: FakeProxy, attempts: int, outcome: str
) -> None:
    assert len(fake.authorizations) == attempts
    basic = "Basic " + base64.b64encode(f"publisher:{PASSWORD}".encode()).decode()
    for authorization in fake.authorizations:
        assert authorization.startswith("Bearer ") != (authorization == basic)
    messages = debug_messages(records, "grip_asgi.publish")
    matches = [match for match in map(ATTEMPT.fullmatch, messages) if match]
    assert len(matches) == len(messages), messages
    assert [int(match[1]) for match in matches] == list(range(1, attempts + 1))
    assert all(match[2].startswith(outcome) for match in matches), messages
    assert_no_secret(records, fake.secrets())


@pytest.mark.parametrize("failure", OUTCOMES)
@pytest.mark.parametrize("auth", AUTH_URLS)
def test_sync_publish_attempts_are_logged_without_secrets(
    logs: pytest.LogCaptureFixture, auth: str, failure: str
) -> None:
    fake = FakeProxy(auth, failure)
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        publisher = SyncPublisher(AUTH_URLS[auth], client=client, retries=1, backoff=0)
        if failure == "ok":
            publisher.publish_text("news", "hello", id="1")
        else:
            with pytest.raises(PublishError) as raised:
                publisher.publish_text("news", "hello", id="1")
            assert_free_of(str(raised.value), fake.secrets(), "PublishError")
    check_publish_logs(logs.records, fake, *OUTCOMES[failure])


@pytest.mark.anyio
@pytest.mark.parametrize("failure", OUTCOMES)
@pytest.mark.parametrize("auth", AUTH_URLS)
async def test_async_publish_attempts_are_logged_without_secrets(
    logs: pytest.LogCaptureFixture, auth: str, failure: str
) -> None:
    fake = FakeProxy(auth, failure)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        publisher = Publisher(AUTH_URLS[auth], client=client, retries=1, backoff=0)
        if failure == "ok":
            await publisher.publish_text("news", "hello", id="1")
        else:
            with pytest.raises(PublishError) as raised:
                await publisher.publish_text("news", "hello", id="1")
            assert_free_of(str(raised.value), fake.secrets(), "PublishError")
    check_publish_logs(logs.records, fake, *OUTCOMES[failure])


@pytest.mark.anyio
@pytest.mark.parametrize("auth", AUTH_URLS)
async def test_a_failed_queued_publish_is_logged_without_secrets(
    logs: pytest.LogCaptureFixture, auth: str
) -> None:
    fake = FakeProxy(auth, "500")

    def on_error(exc: Exception, batch: object) -> None:
        raise RuntimeError(f"alerting failed for: {exc}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        publisher = Publisher(AUTH_URLS[auth], client=client, retries=0, on_error=on_error)
        publisher.publish_nowait("news", text_formats("hello"))
        await publisher.flush()
    errors = [record for record in logs.records if record.levelno == logging.ERROR]
    assert [record.name for record in errors] == ["grip_asgi.publish"] * 2
    assert "queued publish of 1 item(s) failed" in errors[0].getMessage()
    assert errors[1].exc_info is not None  # the callback's traceback
    assert_no_secret(logs.records, fake.secrets())
