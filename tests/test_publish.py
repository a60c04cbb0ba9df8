"""Publisher and SyncPublisher: one table of cases, run through both clients on MockTransport."""

from __future__ import annotations

import asyncio
import base64
import gc
import http.server
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from grip_asgi._config import GripConfig, GripSettings
from grip_asgi._errors import (
    GripConfigError,
    MultiPublishError,
    PublishConnectionError,
    PublishError,
    PublishReplyError,
    PublishTimeoutError,
)
from grip_asgi._publish import (
    DEFAULT_TIMEOUT,
    HttpResponseFormat,
    HttpStreamFormat,
    Item,
    Publisher,
    PublishRequest,
    RetryPolicy,
    SyncPublisher,
    WebSocketMessageFormat,
    authorization_header,
    build_publish_requests,
    publish_flow,
)

URL = "http://pushpin.test:5561"
LONG_KEY = "k" * 32  # PyJWT warns about HS256 keys under 32 bytes
Answer = int | tuple[int, str] | Exception
Handler = Callable[[httpx.Request], httpx.Response]


class Proxy:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(
                answer, text="Published\n" if answer == 200 else f"error {answer}"
            )
        status, text = answer
        return httpx.Response(status, text=text)

    def items(self, index: int = 0) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.requests[index].content)["items"]
        return items


class Driver:
    """Runs a publisher method to completion, awaiting it on the async client."""

    def __init__(self, mode: str, handler: Handler, grip: Any = URL, **kwargs: Any) -> None:
        self.mode = mode
        transport = httpx.MockTransport(handler)
        self.publisher: Publisher | SyncPublisher
        if mode == "async":
            self.publisher = Publisher(
                grip, client=httpx.AsyncClient(transport=transport), **kwargs
            )
        else:
            self.publisher = SyncPublisher(grip, client=httpx.Client(transport=transport), **kwargs)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> None:
        result = getattr(self.publisher, method)(*args, **kwargs)
        if self.mode == "async":
            asyncio.run(result)


DriverFactory = Callable[..., Driver]


@pytest.fixture(params=["async", "sync"])
def drive(request: pytest.FixtureRequest) -> DriverFactory:
    def make(handler: Handler, grip: Any = URL, **kwargs: Any) -> Driver:
        kwargs.setdefault("backoff", 0)
        return Driver(request.param, handler, grip, **kwargs)

    return make


# --- What goes on the wire --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "item"),
    [
        (
            "publish_websocket",
            ("room", "hi"),
            {},
            {"channel": "room", "formats": {"ws-message": {"content": "hi"}}},
        ),
        (
            "publish_websocket",
            ("room", b"\x00\xff"),
            {"id": "1"},
            {"channel": "room", "id": "1", "formats": {"ws-message": {"content-bin": "AP8="}}},
        ),
        (
            "publish_text",
            ("news", "hi"),
            {"id": "7"},
            {
                "channel": "news",
                "id": "7",
                "formats": {
                    "ws-message": {"content": "hi"},
                    "http-stream": {"content": "data: hi\n\n"},
                    "http-response": {"body": "hi\n"},
                },
            },
        ),
        (
            "publish_stream",
            ("s", "line\n"),
            {"prev_id": "0"},
            {"channel": "s", "prev-id": "0", "formats": {"http-stream": {"content": "line\n"}}},
        ),
        (
            "publish_stream",
            ("s", b"\x01"),
            {},
            {"channel": "s", "formats": {"http-stream": {"content-bin": "AQ=="}}},
        ),
        (
            "publish_sse",
            ("s", "hi"),
            {"event": "news", "sse_id": "7", "id": "7"},
            {
                "channel": "s",
                "id": "7",
                "formats": {"http-stream": {"content": "event: news\nid: 7\ndata: hi\n\n"}},
            },
        ),
        (
            "publish_response",
            ("lp", "done\n"),
            {},
            {"channel": "lp", "formats": {"http-response": {"code": 200, "body": "done\n"}}},
        ),
        (
            "publish_response",
            ("lp", b"\xff"),
            {"code": 201, "headers": {"X-A": "1"}, "no_seq": True},
            {
                "channel": "lp",
                "formats": {
                    "http-response": {"code": 201, "headers": {"X-A": "1"}, "body-bin": "/w=="}
                },
                "no-seq": True,
            },
        ),
        (
            "publish_http_response",
            ("lp", "x"),
            {},
            {"channel": "lp", "formats": {"http-response": {"body": "x"}}},
        ),
        (
            "publish_http_response",
            ("lp", HttpResponseFormat(action="hint")),
            {},
            {"channel": "lp", "formats": {"http-response": {"action": "hint"}}},
        ),
        (
            "publish_http_stream",
            ("s", "x"),
            {"meta": {"sender": "bob"}},
            {
                "channel": "s",
                "formats": {"http-stream": {"content": "x"}},
                "meta": {"sender": "bob"},
            },
        ),
        (
            "publish_http_stream",
            ("s", HttpStreamFormat(close=True)),
            {},
            {"channel": "s", "formats": {"http-stream": {"action": "close"}}},
        ),
        (
            "publish",
            ("c", WebSocketMessageFormat(action="close", code=4001, reason="bye")),
            {"id": "2", "prev_id": "1", "meta": {"sender": "a"}, "no_seq": True},
            {
                "channel": "c",
                "id": "2",
                "prev-id": "1",
                "formats": {"ws-message": {"action": "close", "code": 4001, "reason": "bye"}},
                "meta": {"sender": "a"},
                "no-seq": True,
            },
        ),
        (
            "publish",
            ("c", [HttpStreamFormat("a\n"), WebSocketMessageFormat("a")]),
            {},
            {
                "channel": "c",
                "formats": {"http-stream": {"content": "a\n"}, "ws-message": {"content": "a"}},
            },
        ),
        (
            "publish",
            ("c", Item(WebSocketMessageFormat(action="refresh"), id="9")),
            {},
            {"channel": "c", "id": "9", "formats": {"ws-message": {"action": "refresh"}}},
        ),
    ],
)
def test_publish_sends_one_json_item(
    drive: DriverFactory, method: str, args: Any, kwargs: Any, item: dict[str, Any]
) -> None:
    proxy = Proxy()
    drive(proxy)(method, *args, **kwargs)

    [request] = proxy.requests
    assert request.method == "POST"
    assert str(request.url) == URL + "/publish/"
    assert request.headers["Content-Type"] == "application/json"
    # Pushpin refuses a chunked body (411): the length must be declared.
    assert request.headers["Content-Length"] == str(len(request.content))
    assert "Authorization" not in request.headers
    assert proxy.items() == [item]


def test_item_fields_cannot_be_given_twice(drive: DriverFactory) -> None:
    proxy = Proxy()
    with pytest.raises(ValueError, match="to the Item, not alongside it"):
        drive(proxy)("publish", "c", Item(HttpStreamFormat("x")), id="1")
    assert proxy.requests == []


@pytest.mark.parametrize(
    ("grip", "prefix", "channel"),
    [
        (URL, "app-", "app-c"),
        (GripSettings.build(URL, prefix="env-"), None, "env-c"),
        (GripSettings.build(URL, prefix="env-"), "arg-", "arg-c"),
        (GripSettings.build(URL, prefix="env-"), "", "c"),
    ],
)
def test_channel_prefix(drive: DriverFactory, grip: Any, prefix: str | None, channel: str) -> None:
    proxy = Proxy()
    drive(proxy, grip, prefix=prefix)("publish_websocket", "c", "x")
    assert proxy.items()[0]["channel"] == channel


def test_prefix_defaults_to_the_environment(
    drive: DriverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIP_URL", URL)
    monkeypatch.setenv("GRIP_PREFIX", "env-")
    monkeypatch.delenv("GRIP_PROXIES", raising=False)
    proxy = Proxy()
    drive(proxy, None)("publish_websocket", "c", "x")
    assert str(proxy.requests[0].url) == URL + "/publish/"
    assert proxy.items()[0]["channel"] == "env-c"


# --- Auth -------------------------------------------------------------------------------------


def decode_jwt(token: str, key: str | bytes) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=["HS256"])
    return claims


@pytest.mark.parametrize(
    ("grip", "key"),
    [
        (f"{URL}/?iss=realm&key={LONG_KEY}", LONG_KEY),
        # Pushpin's example key: short, and signing it must not warn (warnings are errors).
        (f"{URL}/?iss=realm&key=changeme", "changeme"),
        (f"{URL}/?iss=realm&key=base64:AWGA/g==", b"\x01a\x80\xfe"),
    ],
)
def test_iss_and_key_sign_a_jwt(drive: DriverFactory, grip: str, key: str | bytes) -> None:
    proxy = Proxy()
    before = int(time.time())
    drive(proxy, grip)("publish_websocket", "c", "x")
    scheme, _, token = proxy.requests[0].headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = decode_jwt(token, key)
    assert claims["iss"] == "realm"
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600
    assert set(claims) == {"iss", "exp"}
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize(
    ("grip", "authorization"),
    [
        (f"{URL}/?key=api-token", "Bearer api-token"),
        (GripConfig.fastly("SID", "fastly-token"), "Bearer fastly-token"),
        (GripConfig(URL, key=b"bytes-token"), "Bearer bytes-token"),
        (
            "http://user:p%40ss@pushpin.test:5561",
            "Basic " + base64.b64encode(b"user:p@ss").decode(),
        ),
        ("http://user@pushpin.test:5561", "Basic " + base64.b64encode(b"user:").decode()),
    ],
)
def test_bearer_and_basic_auth(drive: DriverFactory, grip: Any, authorization: str) -> None:
    proxy = Proxy()
    drive(proxy, grip)("publish_websocket", "c", "x")
    assert proxy.requests[0].headers["Authorization"] == authorization


def test_basic_credentials_decode_to_user_and_password() -> None:
    header = authorization_header(GripConfig(URL, user="ann", password="s:cret"), now=0)
    assert header is not None
    assert base64.b64decode(header.removeprefix("Basic ")) == b"ann:s:cret"


def test_no_credentials_no_authorization_header() -> None:
    assert authorization_header(GripConfig(URL), now=0) is None
    # An issuer without a key cannot sign anything.
    assert authorization_header(GripConfig(URL, control_iss="realm"), now=0) is None


def test_a_binary_key_cannot_be_a_bearer_token() -> None:
    config = GripConfig(URL, key=b"\xff\xfe-secret")
    with pytest.raises(GripConfigError, match="binary") as info:
        authorization_header(config, now=0)
    assert "secret" not in str(info.value)


def test_jwt_expiry_follows_the_clock_passed_in() -> None:
    header = authorization_header(GripConfig(URL, control_iss="i", key=LONG_KEY), now=1_000.9)
    assert header is not None
    claims = jwt.decode(
        header.removeprefix("Bearer "),
        LONG_KEY,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert claims == {"iss": "i", "exp": 1600}


# --- Several proxies --------------------------------------------------------------------------


def several(proxies: dict[str, Proxy]) -> Handler:
    """One handler that dispatches on the host, so one client can reach several proxies."""

    def route(request: httpx.Request) -> httpx.Response:
        return proxies[request.url.host](request)

    return route


def test_every_proxy_gets_the_item(drive: DriverFactory) -> None:
    a, b = Proxy(), Proxy()
    drive(several({"a": a, "b": b}), ["http://a", "http://b?key=tok"])(
        "publish_websocket", "c", "x"
    )
    assert a.items() == b.items() == [{"channel": "c", "formats": {"ws-message": {"content": "x"}}}]
    assert "Authorization" not in a.requests[0].headers
    assert b.requests[0].headers["Authorization"] == "Bearer tok"


def test_one_failing_proxy_does_not_hide_the_others(drive: DriverFactory) -> None:
    a, b, c = Proxy(500), Proxy(), Proxy()
    driver = drive(several({"a": a, "b": b, "c": c}), ["http://a", "http://b", "http://c"])
    with pytest.raises(MultiPublishError) as info:
        driver("publish_websocket", "ch", "x")

    error = info.value
    assert [e.proxy for e in error.errors] == ["http://a"]
    assert error.errors[0].status == 500
    assert error.succeeded == ["http://b", "http://c"]
    assert str(error).startswith("publish failed on 1 of 3 proxies (http://a answered 500")
    assert len(b.requests) == len(c.requests) == 1


def test_every_proxy_failing(drive: DriverFactory) -> None:
    a, b = Proxy(400), Proxy(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    driver = drive(several({"a": a, "b": b}), ["http://a", "http://b"], retries=1)
    with pytest.raises(MultiPublishError) as info:
        driver("publish_websocket", "ch", "x")
    assert [type(e) for e in info.value.errors] == [PublishError, PublishConnectionError]
    assert info.value.succeeded == []


def test_one_proxy_raises_its_own_error(drive: DriverFactory) -> None:
    with pytest.raises(PublishError) as info:
        drive(Proxy(400))("publish_websocket", "c", "x")
    assert type(info.value) is PublishError


def test_proxies_are_published_to_concurrently() -> None:
    # Each proxy answers only once both requests arrived: sequential sends would time out.
    arrived: list[str] = []
    both = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        arrived.append(request.url.host)
        if len(arrived) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 2)
        return httpx.Response(200)

    async def scenario() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with Publisher(["http://a", "http://b"], client=client) as publisher:
            await publisher.publish_websocket("c", "x")

    asyncio.run(scenario())
    assert sorted(arrived) == ["a", "b"]


# --- Retries, timeouts and errors -------------------------------------------------------------


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


@pytest.mark.parametrize(
    ("answers", "item_id", "sent", "error", "status"),
    [
        # A 5xx is retried only when the item has an id: Pushpin then drops a duplicate.
        ([503, 200], "1", 2, None, None),
        ([503], None, 1, PublishError, 503),
        ([502, 500, 200], "1", 3, None, None),
        ([503, 503, 503], "1", 3, PublishError, 503),
        # A refused connection sent nothing, so it is always safe to retry.
        ([connect_error(), 200], "1", 2, None, None),
        ([connect_error(), 200], None, 2, None, None),
        ([httpx.ConnectTimeout("slow"), 200], None, 2, None, None),
        ([connect_error()] * 3, None, 3, PublishConnectionError, None),
        ([httpx.ConnectTimeout("slow")] * 3, "1", 3, PublishTimeoutError, None),
        # Once the request may have arrived, only an id makes a resend safe.
        ([httpx.ReadTimeout("slow"), 200], "1", 2, None, None),
        ([httpx.ReadTimeout("slow")], None, 1, PublishTimeoutError, None),
        ([httpx.WriteTimeout("slow")], None, 1, PublishTimeoutError, None),
        ([httpx.ReadError("reset"), 200], "1", 2, None, None),
        ([httpx.ReadError("reset")], None, 1, PublishReplyError, None),
        ([httpx.RemoteProtocolError("bad")], None, 1, PublishReplyError, None),
        ([httpx.WriteError("pipe")], None, 1, PublishConnectionError, None),
        # A 4xx is final.
        ([400], "1", 1, PublishError, 400),
        ([429], "1", 1, PublishError, 429),
        ([404], None, 1, PublishError, 404),
    ],
)
def test_retry_rules(
    drive: DriverFactory,
    answers: list[Answer],
    item_id: str | None,
    sent: int,
    error: type[PublishError] | None,
    status: int | None,
) -> None:
    proxy = Proxy(*answers)
    driver = drive(proxy)
    if error is None:
        driver("publish_websocket", "c", "x", id=item_id)
    else:
        with pytest.raises(error) as info:
            driver("publish_websocket", "c", "x", id=item_id)
        assert type(info.value) is error
        assert info.value.proxy == URL
        assert info.value.status == status
        assert (f"(after {sent} attempts)" in str(info.value)) is (sent > 1)
    assert len(proxy.requests) == sent
    assert all(r.content == proxy.requests[0].content for r in proxy.requests)


def test_retries_can_be_turned_off(drive: DriverFactory) -> None:
    proxy = Proxy(connect_error())
    with pytest.raises(PublishConnectionError):
        drive(proxy, retries=0)("publish_websocket", "c", "x", id="1")
    assert len(proxy.requests) == 1


def test_retries_wait_between_attempts(drive: DriverFactory) -> None:
    proxy = Proxy(503, 503, 200)
    started = time.monotonic()
    drive(proxy, backoff=0.02)("publish_websocket", "c", "x", id="1")
    assert len(proxy.requests) == 3
    assert time.monotonic() - started < 1


def test_a_batch_with_one_item_lacking_an_id_is_not_retried(drive: DriverFactory) -> None:
    proxy = Proxy(503)
    items = [("c", Item(HttpStreamFormat("a"), id="1")), ("c", Item(HttpStreamFormat("b")))]
    with pytest.raises(PublishError):
        drive(proxy)("publish_many", items)
    assert len(proxy.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            (400, "Invalid format: no formats specified\n"),
            PublishError,
            f"{URL} answered 400: Invalid format: no formats specified",
        ),
        ((502, ""), PublishError, f"{URL} answered 502: (empty body)"),
        (
            (500, "line one\nline two\n"),
            PublishError,
            f"{URL} answered 500: line one line two",
        ),
        (
            connect_error(),
            PublishConnectionError,
            f"could not reach {URL}: [Errno 111] Connection refused",
        ),
        (httpx.ReadError(""), PublishReplyError, f"{URL} sent no usable reply: ReadError"),
        (
            httpx.WriteError("[Errno 32] Broken pipe"),
            PublishConnectionError,
            f"lost the connection to {URL}: [Errno 32] Broken pipe",
        ),
        (httpx.ReadTimeout(""), PublishTimeoutError, f"{URL} did not answer in time (ReadTimeout)"),
    ],
)
def test_error_messages_are_one_line(
    drive: DriverFactory, answer: Answer, error: type[PublishError], message: str
) -> None:
    with pytest.raises(error) as info:
        drive(Proxy(answer), retries=0)("publish_websocket", "c", "x")
    assert str(info.value) == message


def test_error_keeps_the_status_and_the_start_of_the_body(drive: DriverFactory) -> None:
    body = "x" * 2000
    with pytest.raises(PublishError) as info:
        drive(Proxy((413, body)))("publish_websocket", "c", "x")
    assert info.value.status == 413
    assert info.value.body == body[:500]
    assert len(str(info.value)) < 600


def test_transport_error_is_the_cause(drive: DriverFactory) -> None:
    cause = connect_error()
    with pytest.raises(PublishConnectionError) as info:
        drive(Proxy(cause), retries=0)("publish_websocket", "c", "x")
    assert info.value.__cause__ is cause


def test_proxy_name_has_no_credentials_or_query(drive: DriverFactory) -> None:
    grip = GripConfig("http://user:pw@pushpin.test:5561/base?token=t1", user="u", password="pw")
    proxy = Proxy(400)
    with pytest.raises(PublishError) as info:
        drive(proxy, grip)("publish_websocket", "c", "x")
    assert info.value.proxy == "http://pushpin.test:5561/base"
    assert str(proxy.requests[0].url) == "http://user:pw@pushpin.test:5561/base/publish/?token=t1"


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (DEFAULT_TIMEOUT, {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 10.0}),
        (2.5, {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}),
        (httpx.Timeout(1, read=30), {"connect": 1, "read": 30, "write": 1, "pool": 1}),
    ],
)
def test_timeout_applies_to_every_request(
    drive: DriverFactory, timeout: httpx.Timeout | float, expected: dict[str, float]
) -> None:
    proxy = Proxy()
    drive(proxy, timeout=timeout)("publish_websocket", "c", "x")
    assert proxy.requests[0].extensions["timeout"] == expected


# --- Batching ---------------------------------------------------------------------------------


def test_publish_many_sends_one_request_per_proxy(drive: DriverFactory) -> None:
    a, b = Proxy(), Proxy()
    items = [(f"c{n}", Item(HttpStreamFormat(f"{n}\n"), id=str(n))) for n in range(5)]
    drive(several({"a": a, "b": b}), ["http://a", "http://b"], prefix="p-")("publish_many", items)
    assert len(a.requests) == len(b.requests) == 1
    assert [item["channel"] for item in a.items()] == [f"p-c{n}" for n in range(5)]
    assert a.requests[0].content == b.requests[0].content


def test_publish_many_with_nothing_sends_nothing(drive: DriverFactory) -> None:
    proxy = Proxy()
    drive(proxy)("publish_many", [])
    assert proxy.requests == []


def test_big_batches_are_split_under_the_body_limit(drive: DriverFactory) -> None:
    proxy = Proxy()
    items = [("c", Item(HttpStreamFormat("x" * 100), id=str(n))) for n in range(10)]
    drive(proxy, max_body_size=500)("publish_many", items)

    assert len(proxy.requests) > 2
    assert all(len(r.content) <= 500 for r in proxy.requests)
    sent = [item["id"] for n in range(len(proxy.requests)) for item in proxy.items(n)]
    assert sent == [str(n) for n in range(10)]


def test_a_failed_chunk_stops_the_later_ones(drive: DriverFactory) -> None:
    proxy = Proxy(200, 400)
    items = [("c", Item(HttpStreamFormat("x" * 100))) for _ in range(10)]
    with pytest.raises(PublishError):
        drive(proxy, max_body_size=300)("publish_many", items)
    assert len(proxy.requests) == 2


@pytest.mark.parametrize(
    ("entries", "error", "message"),
    [
        ([("c", HttpStreamFormat("x"))], TypeError, "expected an Item"),
        (["c"], TypeError, r"expected \(channel, Item\) pairs"),
        ([("", Item(HttpStreamFormat("x")))], ValueError, "non-empty str"),
        ([(b"c", Item(HttpStreamFormat("x")))], ValueError, "non-empty str"),
    ],
)
def test_publish_many_checks_its_entries(
    drive: DriverFactory, entries: Any, error: type[Exception], message: str
) -> None:
    proxy = Proxy()
    with pytest.raises(error, match=message):
        drive(proxy)("publish_many", entries)
    assert proxy.requests == []


# --- Configuration and lifecycle --------------------------------------------------------------


@pytest.mark.parametrize("grip", [[], GripSettings()])
def test_no_proxy_is_an_error_at_publish_time(drive: DriverFactory, grip: Any) -> None:
    driver = drive(Proxy(), grip)  # constructing is fine
    with pytest.raises(GripConfigError, match="no GRIP proxy is configured"):
        driver("publish_websocket", "c", "x")


def test_no_proxy_in_the_environment(drive: DriverFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRIP_URL", "GRIP_PROXIES", "GRIP_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(GripConfigError, match="set GRIP_URL"):
        drive(Proxy(), None)("publish_websocket", "c", "x")


def test_a_bad_grip_url_fails_at_construction(drive: DriverFactory) -> None:
    with pytest.raises(GripConfigError):
        drive(Proxy(), "ftp://example.com")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Publisher(URL, client=httpx.Client()),  # type: ignore[arg-type]
            "Publisher needs an httpx.AsyncClient, got Client",
        ),
        (
            lambda: SyncPublisher(URL, client=httpx.AsyncClient()),  # type: ignore[arg-type]
            "SyncPublisher needs an httpx.Client, got AsyncClient",
        ),
    ],
)
def test_the_client_must_match(make: Callable[[], object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


@pytest.mark.parametrize("kwargs", [{"retries": -1}, {"backoff": -0.1}, {"queue_size": 0}], ids=str)
def test_bad_settings(kwargs: Any) -> None:
    with pytest.raises(ValueError):
        Publisher(URL, **kwargs)


def test_an_injected_client_stays_open() -> None:
    async def scenario() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(Proxy()))
        async with Publisher(URL, client=client) as publisher:
            await publisher.publish_websocket("c", "x")
        assert not client.is_closed
        await client.aclose()

    asyncio.run(scenario())
    sync_client = httpx.Client(transport=httpx.MockTransport(Proxy()))
    with SyncPublisher(URL, client=sync_client) as publisher:
        publisher.publish_websocket("c", "x")
    assert not sync_client.is_closed


def test_publishing_after_close_is_an_error(drive: DriverFactory) -> None:
    driver = drive(Proxy())
    if isinstance(driver.publisher, Publisher):
        asyncio.run(driver.publisher.aclose())
        asyncio.run(driver.publisher.aclose())  # closing twice is fine
    else:
        driver.publisher.close()
        driver.publisher.close()
    with pytest.raises(RuntimeError, match="is closed; create a new one"):
        driver("publish_websocket", "c", "x")


def test_retry_policy_delays_use_full_jitter() -> None:
    policy = RetryPolicy(retries=5, backoff=0.1, max_backoff=0.3, uniform=lambda: 1.0)
    assert [policy.delay(n) for n in range(1, 5)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    half = RetryPolicy(backoff=1.0, uniform=lambda: 0.5)
    assert half.delay(1) == 0.5
    assert half.delay(3) == 2.0


def test_publish_flow_drives_one_request_after_another() -> None:
    policy = RetryPolicy(retries=1, backoff=1.0, uniform=lambda: 0.25)
    settings = GripSettings.build(URL)
    items = [("c", Item(HttpStreamFormat("x" * 50), id=str(n))) for n in range(2)]
    [requests] = build_publish_requests(settings, items, now=0, max_body_size=100)
    flow = publish_flow(requests, policy)
    request = httpx.Request("POST", URL)
    assert next(flow) == (requests[0], 0.0)
    assert flow.send(httpx.Response(503, request=request)) == (requests[0], 0.25)
    assert flow.send(httpx.Response(200, request=request)) == (requests[1], 0.0)
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(204, request=request))


def test_build_publish_requests_describes_each_request() -> None:
    settings = GripSettings.build(
        ["http://a:5561/?iss=realm&key=" + LONG_KEY, "http://b/base?x=1"], prefix="p-"
    )
    items = [("c", Item(HttpStreamFormat("x"), id="1")), ("d", Item(HttpStreamFormat("y"), id="2"))]
    plan = build_publish_requests(settings, items, now=time.time())

    [[a], [b]] = plan
    assert (a.proxy, a.url, a.item_count, a.idempotent) == (
        "http://a:5561",
        "http://a:5561/publish/",
        2,
        True,
    )
    assert (b.proxy, b.url) == ("http://b/base", "http://b/base/publish/?x=1")
    assert a.body == b.body
    assert json.loads(a.body) == {
        "items": [
            {"channel": "p-c", "id": "1", "formats": {"http-stream": {"content": "x"}}},
            {"channel": "p-d", "id": "2", "formats": {"http-stream": {"content": "y"}}},
        ]
    }
    assert a.headers["Authorization"].startswith("Bearer ey")
    assert "Authorization" not in b.headers
    # Neither the token nor the key shows in a repr that ends up in a log.
    assert "ey" not in repr(a) and LONG_KEY not in repr(a)


def test_an_oversized_item_still_goes_out_alone() -> None:
    settings = GripSettings.build(URL)
    big = ("c", Item(HttpStreamFormat("x" * 300)))
    small = ("c", Item(HttpStreamFormat("y")))
    [requests] = build_publish_requests(settings, [small, big, small], now=0, max_body_size=200)
    assert [r.item_count for r in requests] == [1, 1, 1]
    assert len(requests[1].body) > 200


def test_publish_request_idempotent_only_when_every_item_has_an_id() -> None:
    settings = GripSettings.build(URL)
    mixed = [("c", Item(HttpStreamFormat("x"), id="1")), ("c", Item(HttpStreamFormat("x")))]
    [[request]] = build_publish_requests(settings, mixed, now=0)
    assert isinstance(request, PublishRequest)
    assert request.idempotent is False


# --- Secrets ----------------------------------------------------------------------------------


def test_secrets_stay_out_of_errors_and_logs(
    drive: DriverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="grip_asgi.publish")
    token = "tok-" + "s" * 20

    def echo(request: httpx.Request) -> httpx.Response:
        # A proxy that echoes what it got must not make the error carry the secret.
        return httpx.Response(401, text=f"bad credentials: {request.headers['Authorization']}")

    with pytest.raises(PublishError) as info:
        drive(echo, f"{URL}/?key={token}")("publish_websocket", "c", "x")
    assert token not in str(info.value)
    assert token not in info.value.body
    assert "***" in info.value.body
    assert caplog.records
    assert all(token not in record.getMessage() for record in caplog.records)


def test_jwt_and_password_stay_out_of_errors_and_logs(
    drive: DriverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="grip_asgi.publish")
    seen: list[str] = []

    def fail(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"].partition(" ")[2])
        raise httpx.ConnectError(f"refused with {request.headers['Authorization']} and {LONG_KEY}")

    with pytest.raises(PublishConnectionError) as info:
        drive(fail, f"{URL}/?iss=realm&key={LONG_KEY}", retries=0)("publish_websocket", "c", "x")
    for secret in (LONG_KEY, seen[0]):
        assert secret not in str(info.value)
        assert all(secret not in record.getMessage() for record in caplog.records)

    with pytest.raises(PublishError) as basic:
        drive(Proxy((401, "no pass-w0rd")), "http://u:pass-w0rd@h")("publish_websocket", "c", "x")
    assert "pass-w0rd" not in str(basic.value)


def test_each_attempt_is_logged_at_debug(
    drive: DriverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="grip_asgi.publish")
    drive(Proxy(503, 200))("publish_websocket", "c", "x", id="1")
    assert [r.getMessage() for r in caplog.records] == [
        f"publish to {URL}: 1 item(s), attempt 1: 503",
        f"publish to {URL}: 1 item(s), attempt 2: 200",
    ]
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}


# --- Against a real HTTP server ---------------------------------------------------------------


class _PublishEndpoint(http.server.BaseHTTPRequestHandler):
    """Enough of Pushpin's publish endpoint: needs Content-Length, answers Published."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or self.path != "/publish/":
            self.send_error(411 if length is None else 404)
            return
        type(self).bodies.append(self.rfile.read(int(length)))
        reply = b"Published\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Handler", (_PublishEndpoint,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()
    thread.join()


def test_publisher_over_a_real_socket(endpoint: tuple[str, list[bytes]]) -> None:
    url, bodies = endpoint

    async def scenario() -> Publisher:
        async with Publisher(url) as publisher:
            await publisher.publish_websocket("c", "one")
            await publisher.publish_stream("c", "two\n")
        return publisher

    publisher = asyncio.run(scenario())
    # A plain-http proxy gets a connection of its own per publish: no httpx pool was made.
    assert publisher.closed and publisher._client is None
    with SyncPublisher(url) as sync_publisher:
        sync_publisher.publish_response("c", "three")
    assert sync_publisher.closed and sync_publisher._client is None
    assert [json.loads(b)["items"][0]["formats"] for b in bodies] == [
        {"ws-message": {"content": "one"}},
        {"http-stream": {"content": "two\n"}},
        {"http-response": {"code": 200, "body": "three"}},
    ]


def test_closing_an_unused_publisher_opens_nothing() -> None:
    async def scenario() -> Publisher:
        async with Publisher(URL) as publisher:
            pass
        return publisher

    assert asyncio.run(scenario())._client is None
    with SyncPublisher(URL) as sync_publisher:
        pass
    assert sync_publisher._client is None


# --- Fire and forget --------------------------------------------------------------------------


def queued_publisher(handler: Any, **kwargs: Any) -> Publisher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Publisher(URL, client=client, backoff=0, **kwargs)


@pytest.mark.anyio
async def test_publish_nowait_batches_what_is_queued() -> None:
    proxy = Proxy()
    publisher = queued_publisher(proxy)
    for n in range(150):
        publisher.publish_nowait("c", WebSocketMessageFormat(str(n)))
    assert proxy.requests == []  # nothing was awaited yet
    await publisher.flush()
    assert [len(proxy.items(n)) for n in range(len(proxy.requests))] == [100, 50]
    sent = [i["formats"]["ws-message"]["content"] for n in range(2) for i in proxy.items(n)]
    assert sent == [str(n) for n in range(150)]
    publisher.publish_nowait("c", HttpStreamFormat("later"), id="x")
    await publisher.aclose()  # flushes first
    assert proxy.items(2) == [
        {"channel": "c", "id": "x", "formats": {"http-stream": {"content": "later"}}}
    ]
    assert publisher.failed_count == 0


@pytest.mark.anyio
async def test_publish_nowait_failures_are_logged_counted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[tuple[Exception, Any]] = []
    publisher = queued_publisher(
        Proxy(400, 200), on_error=lambda error, items: reported.append((error, items))
    )
    publisher.publish_nowait("c", WebSocketMessageFormat("a"))
    publisher.publish_nowait("c", WebSocketMessageFormat("b"))
    await publisher.flush()
    publisher.publish_nowait("c", WebSocketMessageFormat("c"))
    await publisher.flush()

    assert publisher.failed_count == 2
    [(error, items)] = reported
    assert isinstance(error, PublishError) and error.status == 400
    assert [channel for channel, _ in items] == ["c", "c"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == "grip_asgi.publish"
    assert (
        record.getMessage() == f"queued publish of 2 item(s) failed: {URL} answered 400: error 400"
    )
    assert not record.exc_info
    await publisher.aclose()


@pytest.mark.anyio
async def test_publish_nowait_failures_without_a_callback(caplog: pytest.LogCaptureFixture) -> None:
    publisher = queued_publisher(Proxy(httpx.ConnectError("refused")), retries=0)
    publisher.publish_nowait("c", WebSocketMessageFormat("a"))
    await publisher.aclose()
    assert publisher.failed_count == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"queued publish of 1 item(s) failed: could not reach {URL}: refused"
    ]


@pytest.mark.anyio
async def test_a_failing_callback_or_transport_does_not_stop_the_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_callback(error: Exception, items: Any) -> None:
        raise RuntimeError("callback bug")

    publisher = queued_publisher(
        Proxy(RuntimeError("transport bug"), 200), on_error=broken_callback
    )
    publisher.publish_nowait("c", WebSocketMessageFormat("a"))
    await publisher.flush()
    publisher.publish_nowait("c", WebSocketMessageFormat("b"))
    await publisher.flush()

    assert publisher.failed_count == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "queued publish of 1 item(s) failed: transport bug",
        "the publish on_error callback raised",
    ]
    assert all(r.exc_info is not None for r in errors)  # unexpected errors keep their traceback
    await publisher.aclose()


@pytest.mark.anyio
async def test_a_full_queue_raises() -> None:
    proxy = Proxy()
    publisher = queued_publisher(proxy, queue_size=2)
    publisher.publish_nowait("c", WebSocketMessageFormat("a"))
    publisher.publish_nowait("c", WebSocketMessageFormat("b"))
    with pytest.raises(asyncio.QueueFull, match=r"queue is full \(2 items\)"):
        publisher.publish_nowait("c", WebSocketMessageFormat("c"))
    await publisher.aclose()
    assert len(proxy.items()) == 2


@pytest.mark.anyio
async def test_flush_with_nothing_queued_returns() -> None:
    publisher = queued_publisher(Proxy())
    await publisher.flush()
    await publisher.aclose()


@pytest.mark.anyio
async def test_publish_nowait_checks_before_queueing() -> None:
    publisher = Publisher([], client=httpx.AsyncClient(transport=httpx.MockTransport(Proxy())))
    with pytest.raises(GripConfigError):
        publisher.publish_nowait("c", WebSocketMessageFormat("a"))
    with pytest.raises(ValueError, match="non-empty str"):
        publisher.publish_nowait("", WebSocketMessageFormat("a"))
    await publisher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        publisher.publish_nowait("c", WebSocketMessageFormat("a"))


def test_publish_nowait_needs_a_running_loop() -> None:
    publisher = queued_publisher(Proxy())
    with pytest.raises(RuntimeError, match="no running event loop"):
        publisher.publish_nowait("c", WebSocketMessageFormat("a"))
    assert publisher._backlog is None


def test_closed_is_reported_and_enforced() -> None:
    publisher = SyncPublisher(URL, client=httpx.Client(transport=httpx.MockTransport(Proxy())))
    assert not publisher.closed
    publisher.close()
    assert publisher.closed
    with pytest.raises(RuntimeError, match="closed"):
        publisher.publish_websocket("room", "hi")


def test_a_burst_of_publishes_waits_its_turn_instead_of_timing_out() -> None:
    """1000 at once: never more than max_in_flight requests under way, and every one succeeds."""
    under_way = most = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        await asyncio.sleep(0)
        under_way -= 1
        return httpx.Response(200, text="Published\n")

    async def burst() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with Publisher(URL, client=client, max_in_flight=4) as publisher:
            await asyncio.gather(*(publisher.publish_websocket("c", str(i)) for i in range(1000)))
        await client.aclose()

    asyncio.run(burst())
    assert most == 4


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Publisher(URL, max_in_flight=0)


# --- Queued items when the event loop ends (issue 16) -----------------------------------------


class Reports:
    """An ``on_error`` callback that keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Exception, list[tuple[str, Item]]]] = []

    def __call__(self, error: Exception, items: Any) -> None:
        self.calls.append((error, list(items)))

    def contents(self) -> list[str]:
        return [item_content(item) for _, items in self.calls for _, item in items]


def item_content(item: Item) -> str:
    [fmt] = item.formats
    assert isinstance(fmt, WebSocketMessageFormat) and isinstance(fmt.content, str)
    return fmt.content


def received_contents(bodies: list[bytes]) -> list[str]:
    return [
        item["formats"]["ws-message"]["content"]
        for body in bodies
        for item in json.loads(body)["items"]
    ]


def test_asyncio_run_returning_without_aclose_sends_or_reports_every_queued_item(
    endpoint: tuple[str, list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    url, bodies = endpoint
    reports = Reports()
    publisher = Publisher(url, on_error=reports)

    async def queue_and_return() -> None:
        for n in range(150):
            publisher.publish_nowait("c", WebSocketMessageFormat(str(n)))
        await asyncio.sleep(0)  # the worker starts; the loop ends while it publishes

    asyncio.run(queue_and_return())

    everything = {str(n) for n in range(150)}
    received, reported = set(received_contents(bodies)), set(reports.contents())
    assert received | reported == everything, sorted(everything - received - reported, key=int)
    assert reported, "the loop ended while the worker was publishing: something is unsent"
    assert publisher.failed_count == len(reports.contents())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert sum(int(r.getMessage().split()[3]) for r in errors) == publisher.failed_count
    assert all(isinstance(error, PublishError) for error, _ in reports.calls)


def test_a_worker_cancelled_before_it_ran_reports_what_was_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, reports = Proxy(), Reports()

    async def scenario() -> None:
        publisher = queued_publisher(proxy, on_error=reports)
        publisher.publish_nowait("c", WebSocketMessageFormat("a"))
        publisher.publish_nowait("c", WebSocketMessageFormat("b"))
        assert publisher._backlog is not None and publisher._backlog.worker is not None
        publisher._backlog.worker.cancel()  # as asyncio.run's shutdown does, before it ran
        await asyncio.wait_for(publisher.flush(), 5)
        assert publisher.failed_count == 2

    asyncio.run(scenario())
    assert proxy.requests == []
    [(error, _)] = reports.calls
    assert reports.contents() == ["a", "b"]
    assert "not sent" in str(error)
    assert isinstance(error, PublishError)
    assert error.failed_items and not error.unsure_items
    with pytest.raises(ValueError, match="names no proxy"):  # no proxy to retry it on
        asyncio.run(queued_publisher(proxy).retry(error))


def test_items_stranded_on_a_closed_loop_are_reported_when_the_publisher_is_used_again(
    endpoint: tuple[str, list[bytes]],
) -> None:
    url, bodies = endpoint
    reports = Reports()
    publisher = Publisher(url, on_error=reports)

    async def queue() -> None:
        for n in range(3):
            publisher.publish_nowait("c", WebSocketMessageFormat(str(n)))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(queue())
    loop.close()  # without cancelling the worker: it stays pending on a dead loop

    async def publish_again() -> None:
        publisher.publish_nowait("c", WebSocketMessageFormat("next"))
        await asyncio.wait_for(publisher.aclose(), 5)

    asyncio.run(publish_again())
    assert set(reports.contents()) | set(received_contents(bodies)) >= {"0", "1", "2"}
    assert set(reports.contents()) == {"0", "1", "2"} - set(received_contents(bodies))
    assert "next" in received_contents(bodies)
    assert publisher.failed_count == len(reports.contents())


def test_items_of_a_publisher_dropped_with_its_closed_loop_are_reported_when_collected(
    endpoint: tuple[str, list[bytes]],
) -> None:
    url, bodies = endpoint
    reports = Reports()
    publisher = Publisher(url, on_error=reports)

    async def queue(publisher: Publisher) -> None:
        for n in range(3):
            publisher.publish_nowait("c", WebSocketMessageFormat(str(n)))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(queue(publisher))
    loop.close()  # the worker stays pending, and the publisher is never used again
    del publisher
    gc.collect()  # the worker's coroutine is closed with it
    assert set(reports.contents()) == {"0", "1", "2"} - set(received_contents(bodies))
    [(error, _)] = reports.calls
    assert "event loop closed" in str(error)


def test_publish_nowait_is_refused_on_a_loop_that_ends_with_the_call(
    endpoint: tuple[str, list[bytes]],
) -> None:
    """asgiref's async_to_sync (Django's async views under WSGI) runs a new loop per call."""
    from asgiref.sync import async_to_sync

    url, bodies = endpoint
    publisher = Publisher(url)

    async def view() -> str:
        with pytest.raises(RuntimeError, match=r"await publish\(\)") as info:
            publisher.publish_nowait("c", WebSocketMessageFormat("lost?"))
        await publisher.publish_websocket("c", "awaited")  # the safe call still works
        return str(info.value)

    message = async_to_sync(view)()
    assert "async_to_sync" in message and "closes when the call returns" in message
    assert received_contents(bodies) == ["awaited"]
    assert publisher._backlog is None


# --- What a failed publish delivered, and retrying exactly the rest (issue 16) ----------------


def entries(count: int, *, ids: bool = True, size: int = 100) -> list[tuple[str, Item]]:
    return [
        ("c", Item(HttpStreamFormat(f"{n:03}" + "x" * size), id=str(n) if ids else None))
        for n in range(count)
    ]


#: A body limit that fits two of ``entries()`` per request.
TWO_PER_REQUEST = 360


def sent_ids(proxy: Proxy) -> list[str]:
    return [item["id"] for n in range(len(proxy.requests)) for item in proxy.items(n)]


def test_a_multi_proxy_error_names_the_proxies_that_took_the_items(drive: DriverFactory) -> None:
    a, b, c = Proxy(500), Proxy(), Proxy()
    driver = drive(several({"a": a, "b": b, "c": c}), ["http://a", "http://b", "http://c"])
    with pytest.raises(MultiPublishError) as info:
        driver("publish_websocket", "ch", "x")
    assert info.value.delivered == ("http://b", "http://c")
    assert info.value.succeeded == ["http://b", "http://c"]  # the name it had before
    [failed] = info.value.errors
    assert failed.delivered == () and [i for _, i in failed.failed_items] != []


def test_a_single_proxy_error_delivered_nothing(drive: DriverFactory) -> None:
    with pytest.raises(PublishError) as info:
        drive(Proxy(400))("publish_websocket", "c", "x", id="1")
    assert info.value.delivered == ()
    assert info.value.delivered_items == ()
    [(channel, item)] = info.value.failed_items
    assert (channel, item.id) == ("c", "1")
    assert info.value.unsure_items == ()  # a 400: the proxy refused it, nothing arrived


def test_publish_many_error_says_which_items_each_proxy_took(drive: DriverFactory) -> None:
    items = entries(6)
    a, b = Proxy(200, 200, 200), Proxy(200, 400)
    driver = drive(
        several({"a": a, "b": b}), ["http://a", "http://b"], max_body_size=TWO_PER_REQUEST
    )
    with pytest.raises(MultiPublishError) as info:
        driver("publish_many", items)
    error = info.value
    assert error.delivered == ("http://a",)
    [b_error] = error.errors
    assert b_error.proxy == "http://b" and b_error.status == 400
    assert list(b_error.delivered_items) == items[:2]
    assert list(b_error.failed_items) == items[2:]  # the refused request and the unsent one
    assert b_error.unsure_items == ()
    # Across the proxies: what every proxy took, and what at least one did not.
    assert list(error.delivered_items) == items[:2]
    assert list(error.failed_items) == items[2:]
    assert sent_ids(b) == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    "answer", [503, httpx.ReadTimeout("slow"), httpx.ReadError("reset")], ids=str
)
def test_a_request_that_may_have_arrived_is_unsure(drive: DriverFactory, answer: Answer) -> None:
    items = entries(6, ids=False)
    proxy = Proxy(200, answer)
    with pytest.raises(PublishError) as info:
        drive(proxy, max_body_size=TWO_PER_REQUEST)("publish_many", items)
    assert list(info.value.delivered_items) == items[:2]
    assert list(info.value.unsure_items) == items[2:4]
    assert list(info.value.failed_items) == items[2:]


def test_retry_resends_exactly_what_each_proxy_missed(drive: DriverFactory) -> None:
    items = entries(6)
    a, b, c = Proxy(), Proxy(200, 400), Proxy(httpx.ConnectError("down"))
    driver = drive(
        several({"a": a, "b": b, "c": c}),
        ["http://a", "http://b", "http://c"],
        max_body_size=TWO_PER_REQUEST,
        retries=0,
    )
    with pytest.raises(MultiPublishError) as info:
        driver("publish_many", items)
    assert [e.proxy for e in info.value.errors] == ["http://b", "http://c"]

    driver("retry", info.value)
    assert sent_ids(a) == [str(n) for n in range(6)]  # a took everything: nothing resent
    assert sent_ids(b) == ["0", "1", "2", "3"] + ["2", "3", "4", "5"]
    assert sent_ids(c) == ["0", "1"] + [str(n) for n in range(6)]  # the refused try, then all


def test_retry_can_leave_out_what_may_have_arrived(drive: DriverFactory) -> None:
    items = entries(6, ids=False)
    proxy = Proxy(200, httpx.ReadTimeout("slow"))
    driver = drive(proxy, max_body_size=TWO_PER_REQUEST)
    with pytest.raises(PublishError) as info:
        driver("publish_many", items)
    driver("retry", info.value, resend_unsure=False)
    resent = [item["formats"]["http-stream"]["content"][:3] for item in proxy.items(2)]
    assert resent == ["004", "005"]


def test_a_failed_retry_says_what_is_still_missing(drive: DriverFactory) -> None:
    items = entries(4)
    proxy = Proxy(200, 400, 400)
    driver = drive(proxy, max_body_size=TWO_PER_REQUEST)
    with pytest.raises(PublishError) as first:
        driver("publish_many", items)
    with pytest.raises(PublishError) as second:
        driver("retry", first.value)
    assert list(second.value.failed_items) == items[2:]
    assert second.value.delivered_items == ()


def test_retry_of_an_error_from_another_proxy_is_refused(drive: DriverFactory) -> None:
    with pytest.raises(PublishError) as info:
        drive(Proxy(400))("publish_websocket", "c", "x")
    other = drive(Proxy(), "http://elsewhere.test")
    with pytest.raises(ValueError, match="pushpin.test:5561 is not one of this publisher"):
        other("retry", info.value)


# --- Resending to Fastly Fanout (issue 16) ----------------------------------------------------

FASTLY = GripConfig.fastly("SERVICE", "token")


@pytest.mark.parametrize(
    "answer",
    [503, httpx.ReadTimeout("slow"), httpx.ReadError("reset"), httpx.WriteError("pipe")],
    ids=str,
)
def test_a_request_that_may_have_reached_fastly_is_not_resent(
    drive: DriverFactory, answer: Answer
) -> None:
    """Fastly does not document dropping a repeated item id, so an id does not make it safe."""
    proxy = Proxy(answer, 200)
    with pytest.raises(PublishError) as info:
        drive(proxy, FASTLY)("publish_websocket", "c", "x", id="1")
    assert len(proxy.requests) == 1
    [(_, item)] = info.value.unsure_items
    assert item.id == "1"


def test_a_request_that_never_reached_fastly_is_resent(drive: DriverFactory) -> None:
    proxy = Proxy(httpx.ConnectError("refused"), 200)
    drive(proxy, FASTLY)("publish_websocket", "c", "x")
    assert len(proxy.requests) == 2


def test_resending_to_fastly_is_the_callers_choice(drive: DriverFactory) -> None:
    proxy = Proxy(503, 200)
    drive(proxy, FASTLY, resend_to_fastly=True)("publish_websocket", "c", "x", id="1")
    assert len(proxy.requests) == 2
    without_id = Proxy(503, 200)
    with pytest.raises(PublishError):
        drive(without_id, FASTLY, resend_to_fastly=True)("publish_websocket", "c", "x")
    assert len(without_id.requests) == 1


def test_pushpin_still_gets_a_resend_of_items_with_ids(drive: DriverFactory) -> None:
    proxy = Proxy(503, 200)
    drive(proxy)("publish_websocket", "c", "x", id="1")
    assert len(proxy.requests) == 2


def test_the_retry_policy_tells_fastly_from_pushpin() -> None:
    settings = GripSettings.build([FASTLY, URL])
    [[fastly], [pushpin]] = build_publish_requests(settings, entries(1), now=0)
    assert (fastly.fastly, pushpin.fastly) == (True, False)
    unsure = httpx.Response(503)
    assert RetryPolicy().should_retry(pushpin, unsure)
    assert not RetryPolicy().should_retry(fastly, unsure)
    assert RetryPolicy(resend_to_fastly=True).should_retry(fastly, unsure)
    assert RetryPolicy().should_retry(fastly, httpx.ConnectError("refused"))
