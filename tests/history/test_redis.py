"""What only the Redis backend has: a server that can go away, Lua scripts, server time, keys."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
import redis

from grip_asgi.history import HistoryGapError, HistoryUnavailableError, Retention
from grip_asgi.history.redis import RedisHistory

from .._stores import (
    RedisServer,
    assert_each_fails,
    redis_prefix,
    running_redis,
    unreachable_redis_url,
)

UNBOUNDED = Retention(max_events=None, max_age=None)


def test_redis_down_raises_unavailable_on_both_faces() -> None:
    with running_redis() as server:
        keep = Retention(max_events=100, max_age=None)  # so that trim() has work to do
        store = RedisHistory(server.url, retention=keep, key_prefix=redis_prefix())
        assert store.sync.append("ch", "before").id == 1
        server.stop()

        calls = (
            lambda: store.sync.append("ch", "lost?"),
            lambda: store.sync.read("ch"),
            lambda: store.sync.last_id("ch"),
            lambda: store.sync.latest("ch"),
            lambda: store.sync.trim(),
        )
        errors = assert_each_fails(
            calls, HistoryUnavailableError, match="is unavailable", cause=redis.ConnectionError
        )
        assert [error.store for error in errors] == [server.url] * len(calls)

        async def async_calls() -> None:
            async with store:
                with pytest.raises(HistoryUnavailableError) as caught:
                    await store.append("ch", "lost?")
                assert isinstance(caught.value.__cause__, redis.ConnectionError)
                with pytest.raises(HistoryUnavailableError):
                    await store.read("ch")

        asyncio.run(async_calls())


def test_an_unreachable_server_from_the_start_is_unavailable_without_its_password() -> None:
    store = RedisHistory(unreachable_redis_url("s3cret"), retention=UNBOUNDED)
    with store.sync, pytest.raises(HistoryUnavailableError) as caught:
        store.sync.last_id("ch")
    assert "s3cret" not in str(caught.value)


@pytest.mark.anyio
async def test_scripts_are_loaded_again_after_a_script_flush(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async with RedisHistory(redis_server.url, key_prefix=redis_prefix()) as store:
        assert store.sync.append("ch", "one").id == 1
        assert (await store.append("ch", "two")).id == 2
        redis_client.script_flush()
        assert store.sync.append("ch", "three").id == 3
        assert (await store.append("ch", "four")).id == 4
        assert [event.data for event in store.sync.read("ch")] == ["one", "two", "three", "four"]


def test_a_failed_append_writes_nothing(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    prefix = redis_prefix()
    store = RedisHistory(redis_server.url, retention=UNBOUNDED, key_prefix=prefix)
    redis_client.set(f"{prefix}history:events:ch", "not a stream")
    with store.sync, pytest.raises(HistoryUnavailableError, match="WRONGTYPE"):
        store.sync.append("ch", "x")
    assert redis_client.hget(f"{prefix}history:ids", "ch") is None  # the counter did not move
    redis_client.delete(f"{prefix}history:events:ch")
    with RedisHistory(redis_server.url, key_prefix=prefix).sync as store_again:
        assert store_again.append("ch", "x").id == 1


def test_keys_are_one_hash_and_a_stream_per_channel(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    prefix = redis_prefix()
    with RedisHistory(redis_server.url, key_prefix=prefix).sync as store:
        store.append("news", "a")
        store.append("news", "b", event="update")
        store.append("a:b", "c")
    assert set(redis_client.scan_iter(match=f"{prefix}*")) == {
        f"{prefix}history:ids",
        f"{prefix}history:events:news",
        f"{prefix}history:events:a:b",
    }
    assert redis_client.hgetall(f"{prefix}history:ids") == {"news": "2", "a:b": "1"}
    entries = cast(
        list[tuple[str, dict[str, str]]], redis_client.xrange(f"{prefix}history:events:news")
    )
    assert [entry_id for entry_id, _ in entries] == ["1-0", "2-0"]
    assert [(fields["e"], fields["d"]) for _, fields in entries] == [("", "a"), ("update", "b")]


def test_event_times_come_from_the_server_clock(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    with RedisHistory(redis_server.url, key_prefix=redis_prefix()).sync as store:
        before = redis_client.time()
        event = store.append("ch", "x")
        after = redis_client.time()
    assert before[0] + before[1] / 1e6 <= event.time <= after[0] + after[1] / 1e6


def test_age_trimming_on_append_is_bounded_and_trim_finishes_it(
    redis_server: RedisServer,
) -> None:
    prefix = redis_prefix()
    with RedisHistory(redis_server.url, retention=UNBOUNDED, key_prefix=prefix).sync as writer:
        for n in range(2500):
            writer.append("ch", f"m{n}")
    expiring = RedisHistory(
        redis_server.url, retention=Retention(max_events=None, max_age=0.5), key_prefix=prefix
    ).sync
    with expiring:
        asyncio.run(asyncio.sleep(0.6))
        assert expiring.append("ch", "fresh").id == 2501
        # One append removes at most 1000 expired events, so it never holds Redis long.
        with pytest.raises(HistoryGapError) as caught:
            expiring.read("ch", 0)
        assert caught.value.first_id == 1001
        assert expiring.trim() >= 1500
        with pytest.raises(HistoryGapError) as caught:
            expiring.read("ch", 0)
        assert caught.value.first_id > 2500
        assert expiring.last_id("ch") == 2501


def test_one_store_serves_several_event_loops(redis_server: RedisServer) -> None:
    store = RedisHistory(redis_server.url, key_prefix=redis_prefix())

    async def append(data: str) -> int:
        return (await store.append("ch", data)).id

    async def append_and_close(data: str) -> int:
        async with store:
            return await append(data)

    # e.g. asyncio.run() per request in a sync app: each loop gets a client of its own.
    assert asyncio.run(append("one")) == 1
    assert asyncio.run(append_and_close("two")) == 2
    with pytest.raises(HistoryUnavailableError, match="closed"):
        store.sync.last_id("ch")
