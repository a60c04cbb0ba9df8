"""Nothing lost, end to end: real Pushpin 1.36, real app servers, real clients, counted by id.

**The chaos runs** publish a few hundred messages to two fresh reliable channels through the
app's ``POST /publish/{channel}`` (``publish_reliable``), while SSE subscribers (parsing the
stream and reconnecting with ``Last-Event-ID`` exactly as a browser's EventSource does) or
long-poll subscribers hold on through Pushpin, and something goes wrong:

- ``chaos``: subscribers drop their connections at random and come back;
- ``restart``: the same, and Pushpin is restarted mid-run;
- ``outage``: the same, and one of two Pushpins is down during the middle third of the
  publishing (its publishes fail, the messages are stored all the same);
- ``hwm``: nobody drops a connection, but Pushpin's ``message_hwm`` is so small that it drops
  deliveries, and Pushpin itself must bring them back: a ``prev-id`` mismatch makes it fetch
  the stream's next link (or re-send the held long-poll) with ``Grip-Last``.

Every subscriber must end with every message of its channels exactly once, in order, each
with the id the history gave it. The messages hold ``%`` (build-id templates must escape it),
multi-line text and non-ASCII text. The matrix covers each trouble, each app stack (Starlette
on uvicorn, Django under ASGI on uvicorn and under WSGI on gunicorn) and each store (SQLite,
shared by two worker processes, and Redis) at least once, and the hwm and restart runs on
both stores.

The apps refresh next links every 3 s (``link_timeout``) and hold long-polls 5 s: a
subscriber whose copy of the LAST message was dropped has no later publish to reveal the
gap, and recovers it at the next refresh, so a run ends in seconds.
``GRIP_SOAK_SECONDS=600`` publishes for that long instead of the short CI run.

**The step-by-step tests** take Pushpin's recovery paths one at a time, each with a
deterministic setup: messages stored without being published (as when every proxy was down),
then one publish to reveal the gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from grip_asgi._recovery import PAGED_LINK_TIMEOUT
from grip_asgi.history import open_history
from grip_asgi.pushpin import Pushpin, _free_ports

from .reliable_clients import (
    NO_CHAOS,
    PUBLISH_RATE,
    RESULTS,
    SOAK_SECONDS,
    STACKS,
    Chaos,
    Delivery,
    Published,
    PublishStats,
    Scenario,
    SseStream,
    Subscriber,
    check_delivery,
    format_positions,
    hwm_drops,
    message_text,
    publish_all,
    run_longpoll,
    run_sse,
)
from .reliable_log import AppLog, read_app_log
from .servers import ProcessServer, log_tail

#: How long the publisher publishes (at PUBLISH_RATE messages a second, both channels).
PUBLISH_SECONDS = SOAK_SECONDS or 5.0
CLIENTS = 8
#: Seconds every subscriber has, after the last publish, to get the last messages.
SETTLE_SECONDS = 30.0
PAGE_SIZE = 10
#: The apps' settings (see tests/e2e/reliableapp.py): short, so that recovery is quick.
APP_ENV = {
    "RELIABLE_LINK_TIMEOUT": "3",
    "RELIABLE_POLL_TIMEOUT": "5",
    # Small pages: a subscriber away for a second already catches up over several pages.
    "RELIABLE_PAGE_SIZE": str(PAGE_SIZE),
}
SIG_ISS = "pushpin"
SIG_KEYS = ("the first pushpin signs with this key", "the second pushpin signs with that one")
#: What Pushpin answers while it starts, before its handler takes requests.
PUSHPIN_STARTING = "Accept service unavailable"


CHAOS_RUNS = [
    Scenario("chaos", "starlette", "sqlite", workers=2),
    Scenario("chaos", "django-wsgi", "redis", workers=2),
    Scenario("restart", "django-asgi", "sqlite"),
    Scenario("restart", "starlette", "redis"),
    Scenario("outage", "django-asgi", "redis"),
    Scenario("outage", "starlette", "sqlite"),
    # Four deliveries queued at most, for eight subscribers: most publishes lose some.
    Scenario("hwm", "django-wsgi", "sqlite", workers=2, chaos=False, message_hwm=4),
    Scenario("hwm", "starlette", "redis", chaos=False, message_hwm=4),
    Scenario("chaos", "django-wsgi", "sqlite", workers=2, transport="poll", message_hwm=4),
    Scenario("restart", "starlette", "redis", transport="poll"),
]
STEPS = Scenario("steps", "starlette", "sqlite", chaos=False)


@dataclass
class Deployment:
    """The app server and the Pushpin(s) in front of it."""

    server: ProcessServer
    pushpins: list[Pushpin]
    history_url: str


@pytest.fixture
def deployment(scenario: Scenario, history_url: str) -> Iterator[Deployment]:
    app_port, *pushpin_ports = _free_ports(1 + 2 * scenario.pushpins)
    pushpins = [
        Pushpin(
            f"127.0.0.1:{app_port}",
            http_port=pushpin_ports[2 * index],
            control_port=pushpin_ports[2 * index + 1],
            sig_iss=SIG_ISS,
            sig_key=SIG_KEYS[index],
            message_hwm=scenario.message_hwm,
        )
        for index in range(scenario.pushpins)
    ]
    proxies = [
        {"control_uri": pushpin.control_url, "verify_iss": SIG_ISS, "verify_key": key}
        for pushpin, key in zip(pushpins, SIG_KEYS, strict=False)
    ]
    env = {
        **APP_ENV,
        "GRIP_URL": "",  # only GRIP_PROXIES configures the app
        "GRIP_PROXIES": json.dumps(proxies),
        "GRIP_HISTORY_URL": history_url,
    }
    server = STACKS[scenario.stack](app_port, env, scenario.workers)
    with contextlib.ExitStack() as stack:
        # Exits run in reverse: the Pushpins stop, then the server, then the logs are printed.
        processes: list[Pushpin | ProcessServer] = [server, *pushpins]
        for process in processes:
            stack.callback(_print_log, process)
        server.launch()
        stack.callback(server.stop)
        for pushpin in pushpins:
            stack.enter_context(pushpin)
        server.wait_ready()
        yield Deployment(server, pushpins, history_url)


def _print_log(process: Pushpin | ProcessServer) -> None:
    print(f"--- log of {process!r} ---\n{log_tail(process.read_log())}")


# --- The chaos runs ---------------------------------------------------------------------------


def _trouble(
    scenario: Scenario, pushpins: Sequence[Pushpin], count: int, before_restart: Callable[[], None]
) -> dict[int, Callable[[], None]]:
    """What goes wrong before which message: a Pushpin restarted, or stopped then started."""
    first = pushpins[0]
    if scenario.trouble == "restart":

        def restart() -> None:
            before_restart()
            first.restart()

        return {count // 3: restart}
    if scenario.trouble == "outage":
        return {count // 3: first.stop, 2 * count // 3: first.start}
    return {}


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", CHAOS_RUNS, ids=[s.id for s in CHAOS_RUNS], indirect=True)
async def test_every_subscriber_gets_every_message_once_in_order(
    scenario: Scenario, deployment: Deployment
) -> None:
    tag = uuid.uuid4().hex[:6]
    published = Published((f"news-{tag}", f"alerts-{tag}"))
    count = int(PUBLISH_SECONDS * PUBLISH_RATE)
    chaos = Chaos(active=lambda: not published.done) if scenario.chaos else NO_CHAOS
    pushpins = deployment.pushpins
    seed = random.randrange(1_000_000)
    subscribers = [
        Subscriber(
            name=f"{scenario.transport}-{index} on pushpin {index % len(pushpins) + 1}",
            base_url=pushpins[index % len(pushpins)].http_url,
            # Two of every three follow both channels (composite ids), the third one only.
            channels=published.channels if index % 3 != 2 else published.channels[:1],
            seed=seed + index,
        )
        for index in range(CLIENTS)
    ]
    stats = PublishStats()
    dropped_before_restart = 0

    def count_drops_before_restart() -> None:  # a restart starts a new, empty Pushpin log
        nonlocal dropped_before_restart
        dropped_before_restart = hwm_drops(pushpins)

    trouble = _trouble(scenario, pushpins, count, count_drops_before_restart)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http:
        with anyio.fail_after(PUBLISH_SECONDS * 3 + 30 + SETTLE_SECONDS):
            async with anyio.create_task_group() as tasks:
                for subscriber in subscribers:
                    if scenario.transport == "sse":
                        # Subscribed before the first publish, each starts from id 0: a
                        # client that drops before its first event must not start "from now".
                        start = format_positions(dict.fromkeys(subscriber.channels, 0))
                        tasks.start_soon(run_sse, subscriber, http, published, chaos, start)
                    else:
                        tasks.start_soon(run_longpoll, subscriber, http, published, chaos)
                await _until(lambda: all(s.requests for s in subscribers), timeout=10)
                await publish_all(deployment.server, published, count, stats, trouble)
                # Every Pushpin is up again now; one that exits (crashes) ends the wait.
                with anyio.move_on_after(SETTLE_SECONDS):
                    await _until(
                        lambda: (
                            all(s.complete for s in subscribers)
                            or not all(p.running for p in pushpins)
                        ),
                        SETTLE_SECONDS,
                    )
                tasks.cancel_scope.cancel()
    elapsed = time.monotonic() - started

    app_log = read_app_log(deployment.server.read_log())
    report = check_delivery(subscribers, published)
    starting = [r for s in subscribers for r in s.refused if PUSHPIN_STARTING in r]
    summary = _summary(
        scenario,
        published,
        subscribers,
        stats,
        app_log,
        dropped_before_restart + hwm_drops(pushpins),
        report,
        len(starting),
    )
    RESULTS.append(f"{summary} in {elapsed:.1f} s")
    print(f"{summary} in {elapsed:.1f} s")
    details = "\n".join(
        [
            summary,
            *(str(line) for line in report if not line.exact),
            *(subscriber.describe() for subscriber in subscribers if not subscriber.complete),
            f"app log: {app_log}",
            *(f"{p!r} exited:\n{log_tail(p.read_log())}" for p in pushpins if not p.running),
        ]
    )
    assert all(p.running for p in pushpins), details
    assert all(line.exact for line in report), details
    assert all(subscriber.complete for subscriber in subscribers), details
    assert not [s.other_events for s in subscribers if s.other_events], details  # no reset
    assert not app_log.refused, details
    # An EventSource gives up on a non-200 answer: none, but Pushpin's own while it starts.
    refused = [r for s in subscribers for r in s.refused]
    if scenario.trouble not in ("restart", "outage"):
        assert not refused, details
    assert len(refused) == len(starting), f"{refused}\n{details}"

    assert stats.stored + stats.not_taken == count, details
    if scenario.trouble == "outage":
        assert stats.not_taken > 0, f"no publish failed while a Pushpin was down: {details}"
    if scenario.trouble in ("restart", "outage"):
        assert sum(s.cut for s in subscribers) > 0, f"no connection was cut: {details}"
    else:
        assert stats.not_taken == 0, f"{stats.errors[:3]}\n{details}"
    if scenario.trouble == "hwm":
        # Pushpin dropped deliveries, and brought them back itself: nobody reconnected.
        assert dropped_before_restart + hwm_drops(pushpins) > 0, details
        assert not [s.name for s in subscribers if s.dropped or s.cut], details
        pushpin_recovery = "link" if scenario.transport == "sse" else "retry"
        assert app_log.recovered_by(pushpin_recovery) > 0, details


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


def _summary(
    scenario: Scenario,
    published: Published,
    subscribers: Sequence[Subscriber],
    stats: PublishStats,
    app_log: AppLog,
    dropped_by_pushpin: int,
    report: Sequence[Delivery],
    refused_while_starting: int,
) -> str:
    messages = sum(len(texts) for texts in published.messages.values())
    return (
        f"reliable {scenario.id}: messages={messages} (not taken by a proxy: {stats.not_taken})"
        f" clients={len(subscribers)}"
        f" connects={sum(s.connects for s in subscribers)}"
        f" client_drops={sum(s.dropped for s in subscribers)}"
        f" cut={sum(s.cut for s in subscribers)}"
        f" refused_while_pushpin_starts={refused_while_starting}"
        f" pushpin_dropped={dropped_by_pushpin}"
        f" recoveries[link={app_log.recovered_by('link')} retry={app_log.recovered_by('retry')}"
        f" resume={app_log.recovered_by('resume')}]"
        f" replayed={sum(app_log.replayed.values())}"
        f" duplicates={sum(line.duplicates for line in report)}"
        f" gaps={sum(line.gaps for line in report)}"
    )


# --- Step by step -------------------------------------------------------------------------------


async def store_unpublished(history_url: str, channel: str, numbers: range) -> list[str]:
    """Append messages to the history without publishing them, as ``publish_reliable`` does
    when no proxy takes the publish; their texts."""
    return await store_texts(history_url, channel, [message_text(channel, n) for n in numbers])


async def store_texts(history_url: str, channel: str, texts: list[str]) -> list[str]:
    async with open_history(history_url) as history:
        for text in texts:
            await history.append(channel, text)
    return texts


async def publish_one(deployment: Deployment, channel: str, number: int) -> str:
    text = message_text(channel, number)
    async with httpx.AsyncClient(base_url=deployment.server.url, timeout=10) as http:
        response = await http.post(f"/publish/{channel}", content=text.encode())
    assert (response.status_code, response.json()) == (200, {"id": number})
    return text


async def settle(streams: Sequence[SseStream], counts: Sequence[int], timeout: float) -> None:
    """Wait until each stream has its count of events (or ended), then a little longer, so
    that anything sent twice shows."""
    with anyio.move_on_after(timeout):
        while any(
            len(stream.events) < count and not stream.ended
            for stream, count in zip(streams, counts, strict=True)
        ):
            await anyio.sleep(0.05)
    await anyio.sleep(1)


@contextlib.asynccontextmanager
async def streaming(streams: Sequence[SseStream], timeout: float = 30) -> AsyncIterator[None]:
    """The streams read in the background while the block runs (at most ``timeout`` s)."""
    with anyio.fail_after(timeout):
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http,
            anyio.create_task_group() as tasks,
        ):
            for stream in streams:
                tasks.start_soon(stream.run, http)
            yield
            tasks.cancel_scope.cancel()


def sse_ids(stream: SseStream) -> list[str]:
    return [event_id for _, _, event_id in stream.events]


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [STEPS], ids=[STEPS.id], indirect=True)
async def test_a_backlog_of_several_pages_arrives_whole_and_intact(
    deployment: Deployment,
) -> None:
    """A client that reconnects far behind gets its backlog a page at a time, every text
    as published (``%`` included, in the last page too), then the live messages."""
    channel = f"backlog-{uuid.uuid4().hex[:6]}"
    backlog = 3 * PAGE_SIZE - 5
    texts = await store_unpublished(deployment.history_url, channel, range(1, backlog + 1))
    stream = SseStream(f"{deployment.pushpins[0].http_url}/events/{channel}", f"{channel}:0")
    async with streaming([stream]):
        await stream.wait_for(backlog, timeout=15)
        texts.append(await publish_one(deployment, channel, backlog + 1))
        await settle([stream], [backlog + 1], timeout=10)
    assert stream.texts == texts
    assert sse_ids(stream) == [f"{channel}:{n}" for n in range(1, backlog + 2)]
    assert not stream.ended


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [STEPS], ids=[STEPS.id], indirect=True)
@pytest.mark.parametrize("kind", ["plain", "mixed"])
async def test_a_held_stream_that_missed_several_pages_gets_each_message_once(
    deployment: Deployment, kind: str
) -> None:
    """A held stream whose messages were never published (its proxy was down) learns of
    the gap from the next publish's prev-id, and Pushpin fetches the missed messages, page
    by page, on the same connection. ``mixed`` texts hold ``%``, which a next link's page
    must not send through build-id unescaped."""
    channel = f"held-{kind}-{uuid.uuid4().hex[:6]}"
    missed = 3 * PAGE_SIZE - 5
    url = f"{deployment.pushpins[0].http_url}/events/{channel}"
    stream = SseStream(url, f"{channel}:0")
    async with streaming([stream]):
        await stream.opened.wait()
        numbers = range(1, missed + 1)
        if kind == "plain":
            plain = [f"{channel} {n:05d} plain" for n in numbers]
            texts = await store_texts(deployment.history_url, channel, plain)
        else:
            texts = await store_unpublished(deployment.history_url, channel, numbers)
        texts.append(await publish_one(deployment, channel, missed + 1))
        await settle([stream], [missed + 1], timeout=12)
    assert not stream.ended, f"the stream ended after {len(stream.events)} events"
    assert stream.texts == texts
    assert sse_ids(stream) == [f"{channel}:{n}" for n in range(1, missed + 2)]
    app_log = read_app_log(deployment.server.read_log())
    assert app_log.recovered_by("link") > 0, app_log


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [STEPS], ids=[STEPS.id], indirect=True)
async def test_clients_paging_through_one_channel_at_once_each_get_their_own_pages(
    deployment: Deployment,
) -> None:
    """Several clients of one path catch up at the same time from different ids. Pushpin
    shares next-link fetches whose path and Grip-Last are equal (never minding the query),
    so each client's page must follow from what Grip-Last says it has."""
    channel = f"shared-{uuid.uuid4().hex[:6]}"
    stored = 4 * PAGE_SIZE
    texts = await store_unpublished(deployment.history_url, channel, range(1, stored + 1))
    url = f"{deployment.pushpins[0].http_url}/events/{channel}"
    starts = [3 * index for index in range(8)]
    streams = [SseStream(url, f"{channel}:{start}") for start in starts]
    async with streaming(streams):
        await settle(streams, [stored - start for start in starts], timeout=15)
    for stream, start in zip(streams, starts, strict=True):
        assert stream.texts == texts[start:], f"the client that started after id {start}"


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [STEPS], ids=[STEPS.id], indirect=True)
async def test_a_held_long_poll_that_missed_messages_gets_them_on_pushpins_retry(
    deployment: Deployment,
) -> None:
    """A long-poll held at id 0 misses three stored messages; the next publish's prev-id
    makes Pushpin re-send the request with Grip-Last, and the answer has all four."""
    channel = f"poll-{uuid.uuid4().hex[:6]}"
    url = f"{deployment.pushpins[0].http_url}/poll/{channel}"
    got: list[dict[str, Any]] = []

    async def poll_until_four(http: httpx.AsyncClient) -> None:
        position = 0
        while len(got) < 4:
            response = await http.get(url, params={"last_event_id": f"{channel}:{position}"})
            assert response.status_code == 200, response.text
            for event in response.json()["events"]:
                got.append(event)
                position = event["id"]

    async with httpx.AsyncClient(timeout=15) as http:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(poll_until_four, http)
                await anyio.sleep(1.5)  # held, past Pushpin's first-subscriber re-request
                texts = await store_unpublished(deployment.history_url, channel, range(1, 4))
                texts.append(await publish_one(deployment, channel, 4))
    assert [(event["id"], event["data"]) for event in got] == list(enumerate(texts, 1))
    app_log = read_app_log(deployment.server.read_log())
    assert app_log.recovered_by("retry") > 0, app_log


#: A publisher process: from time START on, publish_reliable COUNT messages to CHANNEL.
_PUBLISHER = """
import os, sys, time
from grip_asgi import SyncPublisher
name, channel, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with SyncPublisher(os.environ["PUBLISH_URL"]) as publisher:
    publisher.history.sync.last_id(channel)  # connected before the start
    time.sleep(max(0.0, start - time.time()))
    for n in range(count):
        publisher.publish_reliable(channel, f"{name} {n:03d} 50% sure")
"""


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", [STEPS], ids=[STEPS.id], indirect=True)
async def test_two_processes_publishing_at_once_reach_everyone_in_the_historys_order(
    deployment: Deployment,
) -> None:
    """The ordering guarantee: two processes publish to one channel at the same time; the
    history numbers the messages, and every subscriber gets them in that order, each once
    (Pushpin holds back an item whose prev-id it has not seen yet, and a subscriber that
    missed one recovers it from the history)."""
    channel = f"two-publishers-{uuid.uuid4().hex[:6]}"
    each = 150
    url = f"{deployment.pushpins[0].http_url}/events/{channel}"
    streams = [SseStream(url, f"{channel}:0") for _ in range(4)]
    env = {
        **os.environ,
        "PUBLISH_URL": deployment.pushpins[0].control_url,
        "GRIP_HISTORY_URL": deployment.history_url,
    }
    # A subscriber that fell behind catches up a page per PAGED_LINK_TIMEOUT at the least
    # once the publishing stops: all 300 at PAGE_SIZE a page is the slowest it may take.
    catch_up = 2 * each / PAGE_SIZE * PAGED_LINK_TIMEOUT + 5
    async with streaming(streams, timeout=3 + 30 + catch_up + 10):
        for stream in streams:
            await stream.opened.wait()
        start = str(time.time() + 3)  # both at once, after their start-up
        publishers = [
            await anyio.open_process(
                [sys.executable, "-c", _PUBLISHER, name, channel, str(each), start], env=env
            )
            for name in ("first", "second")
        ]
        with anyio.fail_after(30):
            for process in publishers:
                assert await process.wait() == 0
        history = open_history(deployment.history_url)
        try:
            order = [event.data for event in await history.read(channel, 0, limit=1000)]
        finally:
            await history.aclose()
        await settle(streams, [2 * each] * len(streams), timeout=catch_up)
    assert len(order) == 2 * each
    # Both published at once: the history's order mixes them (else this proves nothing).
    interleaved = sum(1 for a, b in zip(order, order[1:], strict=False) if a[:5] != b[:5])
    assert interleaved > 10, order
    for stream in streams:
        assert stream.texts == order, f"got {len(stream.texts)} of {len(order)}"
        assert sse_ids(stream) == [f"{channel}:{n}" for n in range(1, 2 * each + 1)]
    RESULTS.append(
        f"two publishers at once: {len(order)} messages ({interleaved} switches between the two"
        f" processes in the history's order), {len(streams)} subscribers, each got all in order"
    )
