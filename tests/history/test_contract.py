"""The history store contract, run on every backend (memory, SQLite, Redis) so they cannot drift."""

from __future__ import annotations

import asyncio
import pickle
import threading

import pytest

from grip_asgi.history import (
    HistoryError,
    HistoryGapError,
    HistoryUnavailableError,
    Retention,
    StoredEvent,
)

from .conftest import Backend

pytestmark = pytest.mark.anyio

UNBOUNDED = Retention(max_events=None, max_age=None)


def ids(events: list[StoredEvent]) -> list[int]:
    return [event.id for event in events]


# -- ids, reads, channels -----------------------------------------------------------------------


def test_a_new_channel_is_empty(backend: Backend) -> None:
    store = backend.open().sync
    assert store.last_id("news") == 0
    assert store.read("news") == []
    assert store.read("news", 0, limit=5) == []
    assert store.latest("news", 10) == []
    with pytest.raises(HistoryGapError) as caught:
        store.read("news", 1)
    assert (caught.value.channel, caught.value.after_id) == ("news", 1)
    assert (caught.value.current_id, caught.value.first_id) == (0, 1)


def test_append_numbers_each_channel_from_1(backend: Backend) -> None:
    store = backend.open().sync
    before = backend.now()
    first = store.append("news", '{"n": 1}')
    second = store.append("news", "plain text", event="update")
    other = store.append("sport", "goal")
    after = backend.now()

    assert (first.channel, first.id, first.data, first.event) == ("news", 1, '{"n": 1}', None)
    assert (second.channel, second.id, second.data, second.event) == (
        "news",
        2,
        "plain text",
        "update",
    )
    assert (other.channel, other.id) == ("sport", 1)
    # Redis dates events by its server's clock, the others by the store's: a loose bound.
    assert before - 60 <= first.time <= second.time <= after + 60
    assert store.last_id("news") == 2
    assert store.last_id("sport") == 1
    assert store.read("news") == [first, second]
    assert store.read("sport") == [other]


def test_read_pages_oldest_first_after_an_id(backend: Backend) -> None:
    store = backend.open().sync
    appended = [store.append("ch", f"m{n}") for n in range(1, 11)]

    assert ids(store.read("ch", 0, limit=4)) == [1, 2, 3, 4]
    assert ids(store.read("ch", 4, limit=4)) == [5, 6, 7, 8]
    assert store.read("ch", 8, limit=4) == appended[8:]
    assert store.read("ch", 10) == []
    assert [event.data for event in store.read("ch", 7)] == ["m8", "m9", "m10"]


def test_reading_after_an_id_beyond_the_current_one_is_a_gap(backend: Backend) -> None:
    store = backend.open().sync
    store.append("ch", "a")
    store.append("ch", "b")
    with pytest.raises(HistoryGapError) as caught:
        store.read("ch", 3)
    gap = caught.value
    assert (gap.after_id, gap.current_id, gap.first_id) == (3, 2, 1)
    assert "beyond the current id 2" in str(gap)


def test_latest_gives_the_newest_oldest_first(backend: Backend) -> None:
    store = backend.open().sync
    for n in range(1, 6):
        store.append("ch", f"m{n}")
    assert ids(store.latest("ch")) == [5]
    assert ids(store.latest("ch", 3)) == [3, 4, 5]
    assert ids(store.latest("ch", 50)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "channel",
    [
        "",
        " ",
        "with spaces",
        "a:b:c",
        "events-ünïcödé-∂",
        "emoji 🎉",
        "nul\x00inside",
        "{tag}",
        "glob*?[chars]",
        "history:ids",
        "line\nbreak",
    ],
)
def test_any_str_is_a_channel_name_of_its_own(backend: Backend, channel: str) -> None:
    store = backend.open().sync
    store.append("plain", "other channel")
    event = store.append(channel, "mine")
    assert (event.channel, event.id) == (channel, 1)
    assert store.read(channel) == [event]
    assert store.latest(channel) == [event]
    assert store.last_id(channel) == 1
    assert store.last_id("plain") == 1


@pytest.mark.parametrize(
    "data",
    ["", "line one\nline two\r\n", '{"emoji": "🎉", "nested": {"a": [1, 2]}}', "x" * 100_000],
    ids=["empty", "lines", "json", "100kB"],
)
def test_data_comes_back_as_stored(backend: Backend, data: str) -> None:
    store = backend.open().sync
    stored = store.append("ch", data, event="message")
    assert store.read("ch") == [stored]
    assert stored.data == data


# -- retention ----------------------------------------------------------------------------------


def test_count_retention_keeps_the_newest_on_append(backend: Backend) -> None:
    store = backend.open(Retention(max_events=3, max_age=None)).sync
    for n in range(1, 6):
        store.append("ch", f"m{n}")

    assert ids(store.latest("ch", 10)) == [3, 4, 5]
    assert ids(store.read("ch", 2)) == [3, 4, 5]
    for after_id in (0, 1):
        with pytest.raises(HistoryGapError) as caught:
            store.read("ch", after_id)
        assert (caught.value.first_id, caught.value.current_id) == (3, 5)
        assert "oldest stored id is 3" in str(caught.value)
    assert store.trim() == 0  # the appends already applied it


def test_age_retention_applies_on_append(backend: Backend) -> None:
    store = backend.open(Retention(max_events=None, max_age=0.5)).sync
    store.append("ch", "old 1")
    store.append("ch", "old 2")
    backend.pass_time(0.6)
    fresh = store.append("ch", "fresh")

    assert fresh.id == 3
    # Reads remove nothing, so the fresh event is there however slow this machine is.
    assert store.read("ch", 2) == [fresh]
    with pytest.raises(HistoryGapError) as caught:
        store.read("ch", 0)
    assert (caught.value.first_id, caught.value.current_id) == (3, 3)


def test_trim_expires_idle_channels_and_the_ids_go_on(backend: Backend) -> None:
    store = backend.open(Retention(max_events=None, max_age=0.5)).sync
    store.append("idle", "a")
    store.append("idle", "b")
    backend.pass_time(0.6)

    assert store.trim() == 2
    assert store.last_id("idle") == 2  # the counter survives
    assert store.latest("idle", 5) == []
    assert store.read("idle", 2) == []
    with pytest.raises(HistoryGapError) as caught:
        store.read("idle", 1)
    assert (caught.value.first_id, caught.value.current_id) == (3, 2)
    assert store.trim() == 0

    assert store.append("idle", "c").id == 3
    assert ids(store.read("idle", 2)) == [3]


def test_both_limits_apply_together(backend: Backend) -> None:
    store = backend.open(Retention(max_events=2, max_age=0.5)).sync
    for n in range(4):
        store.append("ch", f"m{n}")
    assert ids(store.latest("ch", 10)) == [3, 4]
    backend.pass_time(0.6)
    store.append("ch", "m4")
    assert ids(store.latest("ch", 10)) == [5]


def test_trim_without_limits_removes_nothing(backend: Backend) -> None:
    store = backend.open(UNBOUNDED).sync
    for n in range(5):
        store.append(f"ch{n % 2}", "x")
    assert store.trim() == 0
    assert ids(store.read("ch0")) == [1, 2, 3]


def test_trim_applies_a_smaller_count_to_stored_history(shared_backend: Backend) -> None:
    namespace = shared_backend.new_namespace()
    writer = shared_backend.open(UNBOUNDED, namespace=namespace).sync
    for n in range(5):
        writer.append("a", f"a{n}")
        writer.append("b", f"b{n}")
    writer.append("c", "c0")

    smaller = shared_backend.open(Retention(max_events=2, max_age=None), namespace=namespace).sync
    assert smaller.trim() == 6  # 3 from a, 3 from b, none from c
    assert ids(writer.latest("a", 10)) == [4, 5]
    assert ids(writer.latest("b", 10)) == [4, 5]
    assert ids(writer.latest("c", 10)) == [1]
    assert writer.last_id("a") == 5


def test_trim_covers_every_channel(shared_backend: Backend) -> None:
    namespace = shared_backend.new_namespace()
    writer = shared_backend.open(UNBOUNDED, namespace=namespace).sync
    for n in range(250):  # more channels than one trim batch
        for _ in range(3):
            writer.append(f"channel {n}", "x")
    smaller = shared_backend.open(Retention(max_events=1, max_age=None), namespace=namespace).sync
    assert smaller.trim() == 500
    assert all(ids(writer.latest(f"channel {n}", 5)) == [3] for n in range(250))


def test_stores_on_one_history_share_it(shared_backend: Backend) -> None:
    namespace = shared_backend.new_namespace()
    one = shared_backend.open(namespace=namespace).sync
    two = shared_backend.open(namespace=namespace).sync
    assert one.append("ch", "from one").id == 1
    assert two.append("ch", "from two").id == 2
    assert [event.data for event in one.read("ch")] == ["from one", "from two"]


# -- the two faces -------------------------------------------------------------------------------


async def test_the_async_and_sync_faces_see_each_others_writes(backend: Backend) -> None:
    async with backend.open() as store:
        first = await store.append("ch", "async", event="e")
        assert store.sync.read("ch") == [first]
        second = store.sync.append("ch", "sync")
        assert await store.read("ch") == [first, second]
        assert await store.read("ch", 1, limit=1) == [second]
        assert await store.last_id("ch") == 2
        assert await store.latest("ch", 1) == [second]
        assert await store.trim() == 0


async def test_async_gap_and_retention(backend: Backend) -> None:
    async with backend.open(Retention(max_events=2, max_age=None)) as store:
        for n in range(4):
            await store.append("ch", f"m{n}")
        with pytest.raises(HistoryGapError) as caught:
            await store.read("ch", 1)
        assert (caught.value.first_id, caught.value.current_id) == (3, 4)


async def test_concurrent_async_appends_get_distinct_ids_in_order(backend: Backend) -> None:
    async with backend.open() as store:
        events = await asyncio.gather(*(store.append("ch", f"m{n}") for n in range(60)))
        assert sorted(ids(events)) == list(range(1, 61))
        stored = await store.read("ch", limit=100)
        assert ids(stored) == list(range(1, 61))
        assert {event.data for event in stored} == {f"m{n}" for n in range(60)}


def test_threads_appending_at_once_get_gap_free_ids(backend: Backend) -> None:
    store = backend.open().sync
    got: dict[int, list[int]] = {}
    start = threading.Barrier(4, timeout=30)

    def worker(number: int) -> None:
        start.wait()
        got[number] = [store.append("ch", f"{number}:{n}").id for n in range(50)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(got) == [0, 1, 2, 3]
    assert sorted(i for mine in got.values() for i in mine) == list(range(1, 201))
    stored = {event.id: event.data for event in store.read("ch", limit=500)}
    for number, mine in got.items():
        assert mine == sorted(mine)  # each thread's appends come back in its order
        assert [stored[i] for i in mine] == [f"{number}:{n}" for n in range(50)]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.append(1, "x"), TypeError, "channel must be a str"),
        (lambda s: s.append("ch", b"x"), TypeError, "data must be a str"),
        (lambda s: s.append("ch", "x", event=1), TypeError, "event must be a str or None"),
        (lambda s: s.append("ch", "x", event=""), ValueError, "event must be a non-empty name"),
        (lambda s: s.append("ch", "x", event="a\nb"), ValueError, "without line breaks"),
        (lambda s: s.append("ch", "bad \udc80"), ValueError, "data is not valid Unicode"),
        (lambda s: s.append("bad \ud800", "x"), ValueError, "channel is not valid Unicode"),
        (lambda s: s.read("ch", -1), ValueError, "after_id must be an integer >= 0"),
        (lambda s: s.read("ch", True), ValueError, "after_id must be an integer >= 0"),
        (lambda s: s.read("ch", "3"), ValueError, "after_id must be an integer >= 0"),
        (lambda s: s.read("ch", 0, limit=0), ValueError, "limit must be an integer >= 1"),
        (lambda s: s.latest("ch", 0), ValueError, "count must be an integer >= 1"),
        (lambda s: s.last_id(None), TypeError, "channel must be a str"),
    ],
)
def test_bad_arguments_raise_a_typed_error_and_store_nothing(
    backend: Backend, call, error: type[Exception], message: str
) -> None:
    store = backend.open().sync
    with pytest.raises(error, match=message):
        call(store)
    assert store.last_id("ch") == 0


async def test_bad_arguments_on_the_async_face(backend: Backend) -> None:
    async with backend.open() as store:
        with pytest.raises(ValueError, match="event must be a non-empty name"):
            await store.append("ch", "x", event="")
        with pytest.raises(ValueError, match="after_id must be an integer >= 0"):
            await store.read("ch", -1)
        assert await store.last_id("ch") == 0


def test_a_closed_store_raises_unavailable(backend: Backend) -> None:
    store = backend.open()
    store.sync.append("ch", "x")
    store.sync.close()
    for call in (
        lambda: store.sync.append("ch", "y"),
        lambda: store.sync.read("ch"),
        lambda: store.sync.last_id("ch"),
        lambda: store.sync.latest("ch"),
        lambda: store.sync.trim(),
    ):
        with pytest.raises(HistoryUnavailableError, match="closed"):
            call()


async def test_a_closed_store_raises_unavailable_on_the_async_face(backend: Backend) -> None:
    store = backend.open(Retention(max_events=5, max_age=None))
    await store.append("ch", "x")
    await store.aclose()
    with pytest.raises(HistoryUnavailableError, match="closed"):
        await store.append("ch", "y")
    with pytest.raises(HistoryUnavailableError, match="closed"):
        await store.trim()


def test_errors_survive_pickling(backend: Backend) -> None:
    # e.g. raised in a worker process and reported to another
    store = backend.open(Retention(max_events=1, max_age=None)).sync
    store.append("ch", "a")
    store.append("ch", "b")
    with pytest.raises(HistoryGapError) as caught:
        store.read("ch", 0)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.channel, copy.after_id, copy.current_id, copy.first_id) == ("ch", 0, 2, 2)
    assert str(copy) == str(caught.value)
    store.close()
    with pytest.raises(HistoryUnavailableError) as closed:
        store.last_id("ch")
    copied = pickle.loads(pickle.dumps(closed.value))
    assert (str(copied), copied.store) == (str(closed.value), closed.value.store)


def test_the_errors_are_grip_errors() -> None:
    assert issubclass(HistoryGapError, HistoryError)
    assert issubclass(HistoryUnavailableError, HistoryError)
    from grip_asgi import GripError

    assert issubclass(HistoryError, GripError)
