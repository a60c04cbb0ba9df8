"""What only the Redis backend has: a server that can go away, Lua scripts, server time, keys."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from grip_asgi.presence import PresenceUnavailableError
from grip_asgi.presence.redis import RedisPresence

from .._stores import (
    RedisServer,
    assert_each_fails,
    redis_prefix,
    running_redis,
    unreachable_redis_url,
)

LONG = 600.0


def server_time(redis_client: redis.Redis) -> float:
    seconds, micros = redis_client.time()
    return seconds + micros / 1e6


def test_keys_are_a_sorted_set_and_a_hash_per_channel(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    prefix = redis_prefix()
    with RedisPresence(redis_server.url, key_prefix=prefix).sync as store:
        store.join("room", "c1", ttl=LONG, user="ann", info={"n": 1.5, "big": 10**20})
        store.join("a:b", "c2", ttl=LONG)
        [member] = store.members("room")
    assert set(redis_client.scan_iter(match=f"{prefix}*")) == {
        f"{prefix}presence:members:room",
        f"{prefix}presence:info:room",
        f"{prefix}presence:members:a:b",
        f"{prefix}presence:info:a:b",
    }
    assert redis_client.zrange(f"{prefix}presence:members:room", 0, -1, withscores=True) == [
        ("c1", pytest.approx(member.expires, abs=1e-6))
    ]
    stored = json.loads(redis_client.hget(f"{prefix}presence:info:room", "c1") or "")
    # info is kept as given (Lua never re-encodes it), user and the join time beside it.
    assert stored == {"joined": member.joined, "user": "ann", "info": {"n": 1.5, "big": 10**20}}


def test_times_come_from_the_server_clock(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    with RedisPresence(redis_server.url, key_prefix=redis_prefix()).sync as store:
        before = server_time(redis_client)
        store.join("room", "c1", ttl=30)
        after = server_time(redis_client)
        [member] = store.members("room")
    assert before <= member.joined <= after
    assert member.expires == pytest.approx(member.joined + 30, abs=1e-5)


def test_the_last_member_gone_leaves_no_keys(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    prefix = redis_prefix()
    with RedisPresence(redis_server.url, key_prefix=prefix).sync as store:
        store.join("room", "c1", ttl=LONG)
        store.join("room", "c2", ttl=0.2)
        assert store.leave("room", "c1") is not None
        asyncio.run(asyncio.sleep(0.3))
        assert [m.client for m in store.expire("room")] == ["c2"]
    assert list(redis_client.scan_iter(match=f"{prefix}*")) == []


@pytest.mark.anyio
async def test_scripts_are_loaded_again_after_a_script_flush(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async with RedisPresence(redis_server.url, key_prefix=redis_prefix()) as store:
        assert store.sync.join("room", "c1", ttl=LONG) is True
        assert await store.join("room", "c2", ttl=LONG) is True
        redis_client.script_flush()
        assert store.sync.touch("room", "c1", ttl=LONG) is True
        assert [m.client for m in await store.members("room")] == ["c1", "c2"]


def test_a_key_of_the_wrong_type_is_unavailable_and_changes_nothing(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    prefix = redis_prefix()
    redis_client.set(f"{prefix}presence:info:room", "not a hash")
    store = RedisPresence(redis_server.url, key_prefix=prefix).sync
    with store, pytest.raises(PresenceUnavailableError, match="WRONGTYPE"):
        store.join("room", "c1", ttl=LONG)
    # Redis does not roll a failed script back: the script checks both keys before writing.
    assert redis_client.exists(f"{prefix}presence:members:room") == 0
    assert redis_client.get(f"{prefix}presence:info:room") == "not a hash"


def test_redis_down_raises_unavailable_on_both_faces() -> None:
    with running_redis() as server:
        store = RedisPresence(server.url, key_prefix=redis_prefix())
        assert store.sync.join("room", "c1", ttl=LONG) is True
        server.stop()

        calls = (
            lambda: store.sync.join("room", "c2", ttl=LONG),
            lambda: store.sync.touch("room", "c1", ttl=LONG),
            lambda: store.sync.leave("room", "c1"),
            lambda: store.sync.members("room"),
            lambda: store.sync.expire("room"),
        )
        errors = assert_each_fails(
            calls, PresenceUnavailableError, match="is unavailable", cause=redis.ConnectionError
        )
        assert [error.store for error in errors] == [server.url] * len(calls)

        async def async_calls() -> None:
            async with store:
                with pytest.raises(PresenceUnavailableError) as caught:
                    await store.join("room", "c2", ttl=LONG)
                assert isinstance(caught.value.__cause__, redis.ConnectionError)
                with pytest.raises(PresenceUnavailableError):
                    await store.expire("room")

        asyncio.run(async_calls())


def test_an_unreachable_server_is_unavailable_without_its_password() -> None:
    store = RedisPresence(unreachable_redis_url("s3cret"))
    with store.sync, pytest.raises(PresenceUnavailableError) as caught:
        store.sync.members("room")
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(store)


def test_one_store_serves_several_event_loops(redis_server: RedisServer) -> None:
    store = RedisPresence(redis_server.url, key_prefix=redis_prefix())

    async def join(client: str) -> bool:
        return await store.join("room", client, ttl=LONG)

    async def join_and_close(client: str) -> bool:
        async with store:
            return await join(client)

    # e.g. asyncio.run() per request in a sync app: each loop gets a client of its own.
    assert asyncio.run(join("c1")) is True
    assert asyncio.run(join_and_close("c2")) is True
    with pytest.raises(PresenceUnavailableError, match="closed"):
        store.sync.members("room")
