"""The benchmark suite cannot rot: each in-process benchmark runs on a tiny workload.

Only our side runs here: the anchors (gripcontrol, django-grip, django-eventstream) are
installed in the benchmark environment alone. Nothing is timed against anything: machines
here are noisy.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from benchmarks import (
    asgi,
    codec,
    django_stacks,
    e2e,
    history,
    publish,
    reliable_ws,
    zmq_publish,
)
from benchmarks._harness import Result, Settings, interleave, median_difference, render_table
from grip_asgi import Publisher, SyncPublisher
from grip_asgi.history import open_history

TINY = Settings(rounds=2, batch_seconds=0.001)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.mark.parametrize("workload", sorted(codec.WORKLOADS))
def test_codec_batches_run(workload: str) -> None:
    pairs = codec.WORKLOADS[workload]
    body = codec.body_of(pairs)
    times = interleave(
        {"decode": codec.ours_decode(body), "encode": codec.ours_encode(pairs)}, TINY
    )
    assert all(len(values) == TINY.rounds for values in times.values())
    assert all(value > 0 for values in times.values() for value in values)


@pytest.mark.parametrize(
    ("name", "status", "header", "value"),
    [
        ("plain", 200, "content-type", "text/plain; charset=utf-8"),
        ("signed", 200, "content-type", "text/plain; charset=utf-8"),
        ("hold", 200, "grip-hold", "stream"),
        ("echo", 200, "content-type", "application/websocket-events"),
    ],
)
def test_asgi_requests_get_the_expected_replies(
    loop: asyncio.AbstractEventLoop, name: str, status: int, header: str, value: str
) -> None:
    request = asgi.requests(asgi.grip_token())[name]
    got_status, headers, body = loop.run_until_complete(asgi.call(asgi.ours_app(), request))
    assert (got_status, headers.get(header)) == (status, value)
    if name == "echo":
        assert body == b"TEXT 7\r\nm:hello\r\n"
    asgi.asgi_batch(loop, asgi.ours_app(), [request])(3)
    if name != "echo":  # the bare app has no GRIP to echo with
        asgi.asgi_batch(loop, asgi.bare_app(), [request])(3)


@pytest.mark.parametrize(("name", "signed"), [("plain", None), ("signed", True)])
def test_the_floor_layer_answers_as_the_bare_app_and_sees_the_token(
    loop: asyncio.AbstractEventLoop, name: str, signed: bool | None
) -> None:
    token = asgi.grip_token()
    request = asgi.requests(token)[name]
    seen: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["grip"])
        await asgi.bare_app()(scope, receive, send)

    floor = asgi.FloorMiddleware(app, token)
    reply = loop.run_until_complete(asgi.call(floor, request))
    assert reply == loop.run_until_complete(asgi.call(asgi.bare_app(), request))
    assert seen == [None if signed is None else (signed, [])]
    wrong_key = asgi.FloorMiddleware(app, "another token")
    loop.run_until_complete(asgi.call(wrong_key, request))
    assert seen[-1] == (None if signed is None else (False, []))


def test_django_stacks_answer_under_wsgi_and_asgi(loop: asyncio.AbstractEventLoop) -> None:
    from tests.djangoapp import setup_django

    setup_django()  # the project's test settings, if this runs first; the benchmark overrides
    with django_stacks.django_settings():
        built = django_stacks.handlers(["bare", "ours"])
        for prefix in ("", "/async"):
            for case, request in django_stacks.requests(asgi.grip_token(), prefix=prefix).items():
                for stack, (wsgi, asgi_handler) in built.items():
                    if prefix:
                        reply = loop.run_until_complete(
                            django_stacks.asgi_call(asgi_handler, request)
                        )
                        django_stacks.asgi_batch(loop, asgi_handler, request)(2)
                    else:
                        reply = django_stacks.wsgi_call(wsgi, request)
                        django_stacks.wsgi_batch(wsgi, request)(2)
                    django_stacks.check_reply(stack, case, reply)


def test_publish_batches_run(loop: asyncio.AbstractEventLoop) -> None:
    items: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        items.append(request.content.count(b'"channel"'))
        return httpx.Response(200, text="Published\n")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    publisher = Publisher("http://127.0.0.1:5561", client=client)
    for batch in (
        publish.ours_sequential(loop, publisher),
        publish.ours_concurrent(loop, publisher),
        publish.ours_batches(loop, publisher),
        publish.ours_nowait(loop, publisher),
    ):
        batch(3)
    loop.run_until_complete(publisher.aclose())
    loop.run_until_complete(client.aclose())
    with SyncPublisher(
        "http://127.0.0.1:5561", client=httpx.Client(transport=httpx.MockTransport(handler))
    ) as sync_publisher:
        publish.ours_blocking(sync_publisher)(3)
    assert sum(items) == 3 + 3 + publish.MANY + 3 + 3


def test_zmq_publish_batches_run(loop: asyncio.AbstractEventLoop) -> None:
    import zmq

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = context.socket(zmq.PULL)  # as Pushpin's push_in_spec
    pull.bind("tcp://127.0.0.1:*")
    grip_url = "zmq+" + pull.getsockopt_string(zmq.LAST_ENDPOINT)
    publisher = Publisher(grip_url)
    try:
        zmq_publish.one_at_a_time(loop, publisher)(3)
        zmq_publish.many(loop, publisher)(3)  # one whole call
        with SyncPublisher(grip_url) as sync_publisher:
            zmq_publish.one_at_a_time_blocking(sync_publisher)(3)
        frames = [pull.recv() for _ in range(3 + zmq_publish.MANY + 3)]
    finally:
        loop.run_until_complete(publisher.aclose())
        pull.close(linger=0)
        context.term()
    channels = {json.loads(frame[1:])["channel"] for frame in frames}
    assert channels == {zmq_publish.CHANNEL}
    assert pull.closed


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with history.redis_server() as port:  # the benchmark's own runner, so it cannot rot either
        yield port


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_history_appends_and_catch_ups_run(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/history.db"
    else:
        port = request.getfixturevalue("redis_port")
        url = f"redis://127.0.0.1:{port}/0?key_prefix={tmp_path.name}:"
    store = open_history(url)
    try:
        history.ours_sync_appends(store, "appends")(3)
        history.ours_async_appends(loop, store, "appends")(3)
        history.ours_async_appends(loop, store, "appends", history.IN_FLIGHT)(3)
        assert [e.id for e in store.sync.read("appends", 0)] == list(range(1, 10))
        assert {json.loads(e.data)["text"] for e in store.sync.latest("appends", 9)} == {
            history.MESSAGE["text"]
        }
        for i in range(12):
            store.sync.append("catch-up", f"event {i}")
        # 10 events after id 2, 3 a page: the last page is cut to the one event still due.
        history.ours_catch_up(store, "catch-up", 2, count=10, page=3)(2)
        history.ours_async_catch_up(loop, store, "catch-up", 2, count=10, page=3)(2)
        for catch_up in (
            history.ours_catch_up(store, "catch-up", 2, count=11, page=3),
            history.ours_async_catch_up(loop, store, "catch-up", 2, count=11, page=3),
        ):
            with pytest.raises(AssertionError, match="read ids"):
                catch_up(1)  # only 10 events follow id 2
    finally:
        loop.run_until_complete(store.aclose())


def test_history_catch_up_checks_every_page() -> None:
    events = [SimpleNamespace(id=i) for i in range(1, 11)]

    def read(last_id: int, limit: int) -> list[Any]:
        return events[last_id : last_id + limit]

    def skipping(last_id: int, limit: int) -> list[Any]:  # loses the page's second event
        return events[last_id : last_id + 1] + events[last_id + 2 : last_id + 1 + limit]

    def restarting(last_id: int, limit: int) -> list[Any]:  # every page from the start
        return events[:limit]

    history.catch_up(read, 0, count=10, page=3)
    history.catch_up(read, 4, count=6, page=4)
    for reader, count in ((read, 11), (skipping, 5), (restarting, 5)):
        with pytest.raises(AssertionError, match="read ids"):
            history.catch_up(reader, 0, count=count, page=3)


def test_history_publish_batches_run(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    items: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        items.extend(json.loads(request.content)["items"])
        return httpx.Response(200, text="Published\n")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    store = open_history(f"sqlite:///{tmp_path}/publish.db")
    publisher = Publisher("http://127.0.0.1:5561", client=client, history=store)
    try:
        history.reliable_publishes(loop, publisher, "bench")(3)
        history.reliable_publishes(loop, publisher, "bench", history.IN_FLIGHT)(3)
        history.plain_publishes(loop, publisher, "bench")(3)
        history.plain_publishes(loop, publisher, "bench", history.IN_FLIGHT)(3)
    finally:
        loop.run_until_complete(publisher.aclose())
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(store.aclose())
    reliable = [item for item in items if item["channel"] == "reliable:bench"]
    assert sorted(int(item["id"]) for item in reliable) == list(range(1, 7))
    assert [item["channel"] for item in items].count("bench") == 6


def test_history_recovery_requests_replay_what_was_missed(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    last_id = history.MISSED + 5
    store = open_history(f"sqlite:///{tmp_path}/recovery.db")
    publisher = Publisher(asgi.GRIP_URL, history=store)
    try:
        for i in range(1, last_id + 1):
            store.sync.append("recovery", f"event {i}")
        app = history.recovery_app(publisher)
        requests = history.recovery_requests("recovery", last_id)
        history.check_recovery(loop, app, requests, last_id)
        status, _, body = loop.run_until_complete(asgi.call(app, requests["missed"]))
        data = [line for line in body.decode().splitlines() if line.startswith("data: ")]
        assert (status, data[0], data[-1]) == (200, "data: event 6", f"data: event {last_id}")
        with pytest.raises(AssertionError, match="missed"):
            history.check_recovery(loop, app, requests, last_id, missed=history.MISSED - 1)
        asgi.asgi_batch(loop, app, [requests["none"], requests["missed"]])(2)
    finally:
        loop.run_until_complete(publisher.aclose())
        loop.run_until_complete(store.aclose())


def test_reliable_ws_in_process_requests_get_their_answers(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    last_id = reliable_ws.MISSED + 5
    store = open_history(f"sqlite:///{tmp_path}/reliable-ws.db")
    publisher = Publisher(asgi.GRIP_URL, history=store)
    try:
        for i in range(1, last_id + 1):
            store.sync.append(reliable_ws.RESUME_CHANNEL, f"event {i}")
        app = reliable_ws.make_app(asgi.GRIP_URL, publisher)
        requests = reliable_ws.inprocess_requests(asgi.grip_token(), last_id)
        reliable_ws.check_replies(loop, app, requests, last_id)
        with pytest.raises(AssertionError, match="sync: unexpected reply"):
            # Requests for a channel one event longer: the sync and resume replies differ.
            stale = reliable_ws.inprocess_requests(asgi.grip_token(), last_id + 1)
            reliable_ws.check_replies(loop, app, stale, last_id + 1)
        for request in requests.values():
            asgi.asgi_batch(loop, app, [request])(2)
    finally:
        loop.run_until_complete(publisher.aclose())
        loop.run_until_complete(store.aclose())


@pytest.mark.e2e
def test_reliable_ws_benchmark_prints_its_table() -> None:
    """The whole benchmark, tiny, through a real Pushpin and uvicorn: it runs and reports."""
    if os.environ.get("GRIP_SKIP_E2E") == "1":
        pytest.skip("GRIP_SKIP_E2E=1: end-to-end tests skipped")
    if shutil.which("pushpin") is None:
        pytest.fail("pushpin is not installed: run scripts/install-pushpin", pytrace=False)
    tiny = ["--quick", "--rounds=2", "--members=2", "--messages=4", "--connects=1"]
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.reliable_ws", *tiny],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("benchmark "))
    assert lines[header].split() == ["benchmark", "workload", "ours", "anchor", "ratio"] + [
        "target",
        "met?",
    ]
    end = lines.index("", header)  # the notes follow the table after a blank line
    workloads = [line.split("  ")[1].strip() for line in lines[header + 2 : end]]
    for expected in (
        "chat message to 2 members through Pushpin, p50",
        "chat message to 2 members through Pushpin, p99",
        "reliable chat message to 2 members through Pushpin, p50",
        f"resume replaying {reliable_ws.MISSED} events: time added, through Pushpin",
        f"resume replaying {reliable_ws.MISSED} events: time added, in-process",
        "in-process, TEXT message: the rules + the echo",
        f"in-process, sync of {reliable_ws.MISSED}: reply with {reliable_ws.MISSED} events + tip",
        "in-process, keep-alive call: ping + tip",
    ):
        assert expected in workloads
    assert "history store: SQLite" in finished.stdout
    assert any(line.endswith("targets missed") for line in lines)


def test_e2e_helpers() -> None:
    assert e2e.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert e2e.percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert e2e.rss_kib(os.getpid()) > 0
    assert e2e.tree_rss_kib(os.getpid()) > 0


@pytest.mark.parametrize(
    ("result", "ratio", "met"),
    [
        (Result("b", "w", 2.0, 4.0, "us", target=1.5), 2.0, True),
        (Result("b", "w", 2.0, 4.0, "req/s", higher_is_better=True, target=1.0), 0.5, False),
        (Result("b", "w", 0.0, 4.0, "us", target=5.0), math.inf, True),
        (Result("b", "w", 1.0, 1.0, "us"), 1.0, None),
    ],
)
def test_results_ratio_says_how_much_better_ours_is(
    result: Result, ratio: float, met: bool | None
) -> None:
    assert (result.ratio, result.met) == (ratio, met)
    table = render_table([result])
    assert table.splitlines()[0].split() == [
        "benchmark",
        "workload",
        "ours",
        "anchor",
        "ratio",
        "target",
        "met?",
    ]
    assert render_table([result], markdown=True).count("|") == 3 * 8


def test_median_difference_pairs_rounds() -> None:
    assert median_difference([10.0, 50.0, 12.0], [8.0, 9.0, 11.0]) == 2.0
