"""Recovery of missed messages for SSE and long-poll subscribers, without a proxy.

The rules (``grip_asgi._recovery``) run through a Starlette app behind ``GripMiddleware``
with an in-memory history, requests signed as Pushpin signs them; the end-to-end tests
(``tests/e2e/test_reliable.py``) run the same endpoints through a real Pushpin.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from grip_asgi import GripConfigError, GripMiddleware, GripSettings, Publisher
from grip_asgi._context import GripContext, GripProcessor, RequestHead
from grip_asgi._recovery import (
    LINK_PARAM,
    LinkSigner,
    RecoveryRequestError,
    Steps,
    StreamOptions,
    SubscribeRequest,
    _b64,
    format_positions,
    link_signer_for,
    longpoll_steps,
    parse_positions,
    reliable_channel,
    reliable_item,
    run,
    run_sync,
    sse_steps,
)
from grip_asgi.events import get_events
from grip_asgi.history import MemoryHistory, Retention, StoredEvent
from grip_asgi.testing import GripTestProxy, InstructReply, read_instruct

KEY = "a-verify-key-for-the-recovery-tests"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={KEY}"
proxy = GripTestProxy(key=KEY)


# --- The app --------------------------------------------------------------------------------


def snapshot(channel: str, last_id: int) -> str:
    return f"state of {channel} at {last_id}"


async def sse(request: Request) -> Response:
    params = request.query_params
    return await get_events(request).sse(
        request.path_params["channels"].split("+"),
        user=params.get("user"),
        history=int(params.get("history", 0)),
        snapshot=snapshot if "snapshot" in params else None,
        page_size=int(params.get("page", 100)),
    )


async def poll(request: Request) -> Response:
    return await get_events(request).longpoll(
        request.path_params["channels"].split("+"), timeout=20
    )


async def link_user(request: Request) -> Response:
    events = get_events(request)
    return Response(json.dumps({"is_next_link": events.is_next_link}))


@pytest.fixture
def history() -> MemoryHistory:
    return MemoryHistory(Retention(max_events=5, max_age=None))


@pytest.fixture
def client(history: MemoryHistory) -> Iterator[TestClient]:
    routes = [
        Route("/events/{channels}", sse),
        Route("/poll/{channels}", poll),
        Route("/link", link_user),
    ]
    app = Starlette(routes=routes)
    publisher = Publisher(GripSettings.build(GRIP_URL, prefix="p-"), history=history)
    wrapped = GripMiddleware(app, grip=GRIP_URL, prefix="p-", publisher=publisher)
    with TestClient(wrapped) as test_client:
        yield test_client


def fill(history: MemoryHistory, channel: str, count: int, text: str = "m") -> None:
    for n in range(count):
        history.sync.append(channel, f"{text}{n + 1}")


def sse_events(body: bytes) -> list[dict[str, str]]:
    """The SSE events of a body (comments skipped), each as its fields."""
    out = []
    for block in body.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = fields[name] + "\n" + value if name in fields else value
        if fields:
            out.append(fields)
    return out


def link_of(instruct: InstructReply) -> str:
    [link] = instruct.links
    match = re.fullmatch(r"<(\?[^>]+)>; rel=next(?:; timeout=(\d+))?", link)
    assert match, link
    return match.group(1)


# --- Positions, names and links -------------------------------------------------------------


def test_positions_round_trip() -> None:
    positions = {"news": 12, "a:b": 0, "x.y/z": 3}
    assert parse_positions(format_positions(positions)) == positions


@pytest.mark.parametrize(
    "text", ["news", "news:", "news:-1", "news:1e3", ":4", "news:١", "a:1,,b:2", "n:" + "9" * 19]
)
def test_a_malformed_last_event_id_is_a_400(text: str) -> None:
    with pytest.raises(RecoveryRequestError) as caught:
        parse_positions(text)
    assert caught.value.status_hint == 400


@pytest.mark.parametrize("name", ["", "a b", "a,b", "a;b", 'a"b', "a(b", "a%b", "a\\b", "\x00"])
def test_reliable_channel_names_cannot_split_the_headers_they_go_in(name: str) -> None:
    with pytest.raises(RecoveryRequestError):
        reliable_channel(name)


def test_a_next_link_token_verifies_only_with_its_key_and_until_it_expires() -> None:
    signer = LinkSigner("k" * 32)
    token = signer.sign(["news"], "ann", now=1000, ttl=60)
    assert signer.verify(token, now=1059) == (("news",), "ann")
    for bad, now in [
        (token, 1060),  # expired
        (token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], 1000),  # tampered
        (LinkSigner("j" * 32).sign(["news"], "ann", 1000, 60), 1000),  # another key
        ("garbage", 1000),
        ("", 1000),
    ]:
        with pytest.raises(RecoveryRequestError) as caught:
            signer.verify(bad, now)
        assert caught.value.status_hint == 403


def test_every_worker_derives_the_same_link_key_from_the_verify_key() -> None:
    token = link_signer_for(GripSettings.build(GRIP_URL)).sign(["c"], None, 0, 60)
    other_worker = link_signer_for(GripSettings.build(GRIP_URL, prefix="x"))
    assert other_worker.verify(token, 1) == (("c",), None)


def test_an_explicit_link_key_signs_alone() -> None:
    token = link_signer_for(GripSettings.build(GRIP_URL, link_key="L" * 16)).sign(["c"], None, 0, 9)
    assert LinkSigner("L" * 16).verify(token, 1)[0] == ("c",)
    with pytest.raises(RecoveryRequestError):  # not the verify key's
        link_signer_for(GripSettings.build(GRIP_URL)).verify(token, 1)


def test_an_explicit_link_key_must_be_long() -> None:
    with pytest.raises(GripConfigError, match="16 bytes"):
        link_signer_for(GripSettings.build(GRIP_URL, link_key="short"))


def test_without_a_secret_the_link_key_is_per_process_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link_signer_for(GripSettings.build("http://127.0.0.1:5561/", prefix="no-secret"))
    assert "GRIP_LINK_KEY" in caplog.text


def test_a_reliable_item_carries_the_store_id_and_a_build_id_template() -> None:
    item = reliable_item(StoredEvent("news", 7, "100% sure\nline 2", "score", 0.0))
    out = item.to_dict("reliable:news")
    assert (out["id"], out["prev-id"]) == ("7", "6")
    stream = out["formats"]["http-stream"]
    assert stream["content"] == "id: %I\nevent: score\ndata: 100%% sure\ndata: line 2\n\n"
    assert stream["content-filters"] == ["build-id"]
    body = json.loads(out["formats"]["http-response"]["body"])
    assert body == {
        "events": [{"channel": "news", "id": 7, "event": "score", "data": "100% sure\nline 2"}]
    }
    assert json.loads(out["formats"]["ws-message"]["content"])["id"] == 7


# --- SSE --------------------------------------------------------------------------------------


def test_a_new_subscriber_is_held_from_the_current_id(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "news", 3)
    response = client.get("/events/news", headers=proxy.headers())
    instruct = read_instruct(response)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert instruct.hold == "stream"
    [channel] = instruct.channels
    assert (channel.name, channel.prev_id, channel.filters) == (
        "p-reliable:news",
        "3",
        ("build-id",),
    )
    assert instruct.meta == {"id_format": "news:%(p-reliable:news)s"}
    assert instruct.keep_alive is not None and instruct.keep_alive.timeout == 20
    assert sse_events(response.content) == []  # only a comment: nothing missed


def test_a_reconnecting_client_gets_what_it_missed_then_the_hold(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "news", 5, text="50% ")
    response = client.get("/events/news", headers={**proxy.headers(), "Last-Event-ID": "news:2"})
    events = sse_events(response.content.replace(b"%%", b"%"))
    assert [(e["id"], e["data"]) for e in events] == [
        ("news:3", "50% 3"),
        ("news:4", "50% 4"),
        ("news:5", "50% 5"),
    ]
    # Pushpin renders the held body through build-id: a literal % is written %%.
    assert b"50%% 3" in response.content
    assert read_instruct(response).channels[0].prev_id == "5"


def test_the_query_parameter_stands_in_for_the_header(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "news", 2)
    for name in ("last_event_id", "lastEventId"):
        response = client.get(f"/events/news?{name}=news:1", headers=proxy.headers())
        assert [e["id"] for e in sse_events(response.content)] == ["news:2"]


def test_grip_last_on_a_proxy_recovery_wins(client: TestClient, history: MemoryHistory) -> None:
    fill(history, "news", 4)
    headers = {**proxy.headers(last={"p-reliable:news": "3"}), "Last-Event-ID": "news:1"}
    response = client.get("/events/news", headers=headers)
    assert [e["id"] for e in sse_events(response.content)] == ["news:4"]


def test_ids_name_every_channel_of_the_stream(client: TestClient, history: MemoryHistory) -> None:
    fill(history, "a", 2)
    fill(history, "b", 1)
    response = client.get("/events/a+b", headers={**proxy.headers(), "Last-Event-ID": "a:0,b:0"})
    ids = [e["id"] for e in sse_events(response.content)]
    assert ids == ["a:1,b:0", "a:2,b:0", "a:2,b:1"]  # published a1, a2, b1
    instruct = read_instruct(response)
    assert [(c.name, c.prev_id) for c in instruct.channels] == [
        ("p-reliable:a", "2"),
        ("p-reliable:b", "1"),
    ]
    assert instruct.meta["id_format"] == "a:%(p-reliable:a)s,b:%(p-reliable:b)s"


@pytest.mark.parametrize("last", ["news:1", "news:99"])
def test_past_retention_or_a_reset_store_the_client_gets_a_stream_reset(
    client: TestClient, history: MemoryHistory, last: str
) -> None:
    fill(history, "news", 8)  # retention keeps 4..8
    response = client.get("/events/news", headers={**proxy.headers(), "Last-Event-ID": last})
    [reset] = sse_events(response.content)
    assert reset["event"] == "stream-reset" and reset["id"] == "news:8"
    assert json.loads(reset["data"]) == {"channel": "news", "current_id": 8}
    assert read_instruct(response).channels[0].prev_id == "8"


def test_a_long_backlog_is_paged_through_held_pages(
    client: TestClient, history: MemoryHistory
) -> None:
    """Each page is a stream hold whose prev-id is where it ended, with a short link timeout:
    Pushpin asks again naming that id in Grip-Last (it shares next-link fetches by path and
    Grip-Last, never by query), and every page goes through build-id, so % is written %%."""
    history = MemoryHistory(Retention(max_events=None, max_age=None))
    client.app.publisher._history = history  # type: ignore[attr-defined]
    fill(history, "news", 5, text="5% ")
    seen: list[str] = []
    url = "/events/news?page=2"
    headers = {**proxy.headers(), "Last-Event-ID": "news:0"}
    for expected_last in ("2", "4", "5"):
        response = client.get(url, headers=headers)
        instruct = read_instruct(response)
        assert instruct.hold == "stream"
        [channel] = instruct.channels
        assert channel.prev_id == expected_last
        assert b"% " not in response.content.replace(b"%%", b"")  # every % escaped
        seen += [e["data"] for e in sse_events(response.content.replace(b"%%", b"%"))]
        [link] = instruct.links
        assert link.endswith("; timeout=1" if expected_last != "5" else "; timeout=60")
        url = "/events/news" + link_of(instruct) + "&page=2"
        # The proxy's own request: no Last-Event-ID, no cookies; where it is, in Grip-Last.
        headers = proxy.headers(last={"p-reliable:news": channel.prev_id})
    assert seen == ["5% 1", "5% 2", "5% 3", "5% 4", "5% 5"]


def test_a_backlog_of_exactly_one_page_is_held_at_once(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "news", 4)
    response = client.get(
        "/events/news?page=3", headers={**proxy.headers(), "Last-Event-ID": "news:1"}
    )
    assert [e["id"] for e in sse_events(response.content)] == ["news:2", "news:3", "news:4"]
    assert read_instruct(response).hold == "stream"  # no needless next page


def test_the_next_link_carries_the_channels_and_user_not_the_cookies(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "news", 1)
    opened = client.get("/events/news?user=ann", headers=proxy.headers())
    link = link_of(read_instruct(opened))
    token = parse_qs(urlsplit(link).query)[LINK_PARAM][0]
    assert link_signer_for(client.app.publisher.settings).verify(token, 0) == (  # type: ignore[attr-defined]
        ("news",),
        "ann",
    )
    # The proxy's refresh of the link: same channels, even on another route's URL.
    history.sync.append("news", "later")
    refreshed = client.get(
        "/events/other" + link, headers=proxy.headers(last={"p-reliable:news": "1"})
    )
    assert [e["data"] for e in sse_events(refreshed.content)] == ["later"]
    assert read_instruct(refreshed).channel_names == ["p-reliable:news"]
    assert client.get("/link" + link, headers=proxy.headers()).json() == {"is_next_link": True}
    assert client.get("/link" + link).json() == {"is_next_link": False}


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        (f"{LINK_PARAM}=forged.token", 403, b"not valid"),
        ("last_event_id=news", 400, b"channel:id"),
    ],
)
def test_bad_recovery_input_gets_a_4xx_naming_it(
    client: TestClient, query: str, status: int, message: bytes
) -> None:
    response = client.get(f"/events/news?{query}", headers=proxy.headers())
    assert response.status_code == status and message in response.content
    assert "grip-hold" not in response.headers


def test_a_next_link_from_a_direct_client_is_refused(client: TestClient) -> None:
    signer = link_signer_for(client.app.publisher.settings)  # type: ignore[attr-defined]
    token = signer.sign(["news"], "ann", 0, 10**10)
    response = client.get(f"/events/news?{LINK_PARAM}={token}")
    assert response.status_code == 403


def test_a_bad_channel_name_from_the_url_is_a_400(client: TestClient) -> None:
    response = client.get("/events/a%25b", headers=proxy.headers())
    assert response.status_code == 400 and b"channel" in response.content


def test_a_new_subscriber_can_get_the_latest_history(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "chat", 5)
    response = client.get("/events/chat?history=2", headers=proxy.headers())
    assert [(e["id"], e["data"]) for e in sse_events(response.content)] == [
        ("chat:4", "m4"),
        ("chat:5", "m5"),
    ]
    assert read_instruct(response).channels[0].prev_id == "5"


def test_a_new_subscriber_can_get_a_snapshot(client: TestClient, history: MemoryHistory) -> None:
    fill(history, "doc", 3)
    response = client.get("/events/doc?snapshot=1", headers=proxy.headers())
    [event] = sse_events(response.content)
    assert event == {"event": "snapshot", "id": "doc:3", "data": "state of doc at 3"}
    # A returning subscriber gets what it missed, not a snapshot.
    again = client.get(
        "/events/doc?snapshot=1", headers={**proxy.headers(), "Last-Event-ID": "doc:3"}
    )
    assert sse_events(again.content) == []


def test_a_direct_client_gets_the_catch_up_without_a_hold(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "news", 2, text="1% ")
    response = client.get("/events/news", headers={"Last-Event-ID": "news:1"})
    assert [e["data"] for e in sse_events(response.content)] == ["1% 2"]  # not a template
    assert not any(name.startswith("grip-") for name in response.headers)


# --- Long-poll --------------------------------------------------------------------------------


def test_a_long_poll_with_nothing_new_is_held(client: TestClient, history: MemoryHistory) -> None:
    fill(history, "q", 2)
    response = client.get("/poll/q?last_event_id=q:2", headers=proxy.headers())
    instruct = read_instruct(response)
    assert (instruct.hold, instruct.timeout) == ("response", 20)
    assert [(c.name, c.prev_id, c.filters) for c in instruct.channels] == [
        ("p-reliable:q", "2", ())
    ]
    assert response.json() == {"events": [], "last_event_id": "q:2"}  # the timeout answer


def test_a_long_poll_that_missed_events_gets_them_at_once(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "q", 3)
    # Pushpin's retry after a prev-id mismatch: Grip-Last says what the client had.
    response = client.get("/poll/q", headers=proxy.headers(last={"p-reliable:q": "1"}))
    assert read_instruct(response).hold is None
    assert response.json() == {
        "events": [
            {"channel": "q", "id": 2, "data": "m2"},
            {"channel": "q", "id": 3, "data": "m3"},
        ],
        "last_event_id": "q:3",
    }


def test_a_long_poll_past_retention_gets_a_reset_entry(
    client: TestClient, history: MemoryHistory
) -> None:
    fill(history, "q", 9)
    response = client.get("/poll/q?last_event_id=q:1", headers=proxy.headers())
    assert response.json() == {
        "events": [{"channel": "q", "event": "stream-reset", "id": 9}],
        "last_event_id": "q:9",
    }


def test_the_blocking_driver_gives_the_same_reply(history: MemoryHistory) -> None:
    fill(history, "news", 3)
    processor = GripProcessor(GripSettings.build(GRIP_URL))
    grip = processor.inspect(RequestHead("GET", grip_sig=[proxy.headers()["Grip-Sig"]]))
    request = SubscribeRequest(grip, "news:1", {}, 0.0)
    steps = sse_steps(request, StreamOptions(("news",)), LinkSigner("k" * 32))
    reply = run_sync(steps, history.sync)
    assert [e["id"] for e in sse_events(reply.body)] == ["news:2", "news:3"]
    assert grip.instruct is not None and grip.instruct.hold == "stream"
    backlog = StreamOptions(("news",), history=2)
    reply = run_sync(
        sse_steps(SubscribeRequest(proxied_grip(), None, {}, 0.0), backlog, LinkSigner()),
        history.sync,
    )
    assert [e["id"] for e in sse_events(reply.body)] == ["news:2", "news:3"]
    gone = SubscribeRequest(proxied_grip(), "news:99", {}, 0.0)  # past the current id
    reply = run_sync(sse_steps(gone, StreamOptions(("news",)), LinkSigner()), history.sync)
    assert [e["event"] for e in sse_events(reply.body)] == ["stream-reset"]


# --- The rest of the rules' corners ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": ()}, "at least one channel"),
        ({"channels": ("a", "a")}, "repeat"),
        ({"history": -1}, "history"),
        ({"page_size": 0}, "page_size"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_stream_options_refuse_what_cannot_work(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamOptions(**{"channels": ("a",), **kwargs})


@pytest.mark.parametrize(
    "claims",
    [
        {"c": "news", "e": 10**10},  # channels not a list
        {"c": ["news"], "e": 10**10, "u": 7},  # user not a str
        {"c": ["news"], "e": "later"},  # expiry not a number
        ["not", "an", "object"],
    ],
)
def test_a_signed_token_of_the_wrong_shape_is_refused(claims: Any) -> None:
    signer = LinkSigner("k" * 32)
    payload = _b64(json.dumps(claims).encode())
    token = f"{payload}.{_b64(signer._mac(payload))}"
    with pytest.raises(RecoveryRequestError) as caught:
        signer.verify(token, 0)
    assert caught.value.status_hint == 403


def proxied_grip(last: dict[str, str] | None = None) -> GripContext:
    processor = GripProcessor(GripSettings.build(GRIP_URL))
    return processor.inspect(
        RequestHead(
            "GET",
            grip_sig=[proxy.headers()["Grip-Sig"]],
            grip_last=[f"{k}; last-id={v}" for k, v in (last or {}).items()],
        )
    )


@pytest.mark.anyio
async def test_an_async_snapshot_hook_is_awaited(history: MemoryHistory) -> None:
    async def hook(channel: str, last_id: int) -> str | None:
        return None if channel == "quiet" else f"{channel}@{last_id}"

    request = SubscribeRequest(proxied_grip(), None, {}, 0.0)
    options = StreamOptions(("doc", "quiet"))
    reply = await run(sse_steps(request, options, LinkSigner("k" * 32), True), history, hook)
    assert sse_events(reply.body) == [{"event": "snapshot", "id": "doc:0,quiet:0", "data": "doc@0"}]


def test_the_blocking_driver_calls_a_sync_snapshot_and_refuses_an_async_one(
    history: MemoryHistory,
) -> None:
    def steps() -> Steps:
        request = SubscribeRequest(proxied_grip(), None, {}, 0.0)
        return longpoll_steps(request, StreamOptions(("doc",)), LinkSigner("k" * 32), True)

    reply = run_sync(steps(), history.sync, snapshot)
    assert json.loads(reply.body)["events"] == [
        {"channel": "doc", "event": "snapshot", "data": "state of doc at 0"}
    ]

    async def async_hook(channel: str, last_id: int) -> str:  # pragma: no cover - never awaited
        return ""

    with pytest.raises(TypeError, match="sync snapshot hook"):
        run_sync(steps(), history.sync, async_hook)


def test_a_grip_last_that_is_not_ours_is_ignored(history: MemoryHistory) -> None:
    fill(history, "news", 2)
    request = SubscribeRequest(proxied_grip({"reliable:news": "x7"}), "news:1", {}, 0.0)
    reply = run_sync(sse_steps(request, StreamOptions(("news",)), LinkSigner()), history.sync)
    assert [e["id"] for e in sse_events(reply.body)] == ["news:2"]  # Last-Event-ID instead


def test_a_long_poll_with_a_bad_last_event_id_is_a_400(client: TestClient) -> None:
    response = client.get("/poll/q?last_event_id=q", headers=proxy.headers())
    assert response.status_code == 400 and b"channel:id" in response.content
    bad_name = client.get("/poll/a%3Bb", headers=proxy.headers())
    assert bad_name.status_code == 400
