"""The Redis presence store: one view of who is here for every process on every host.

Needs the optional ``redis`` package (``pip install "grip-asgi[redis]"``) and Redis 6.2 or
later. Each channel has two keys, with the default ``key_prefix`` ``"grip:"``:
``grip:presence:members:<channel>``, a sorted set of connection ids scored by their expiry
time, and ``grip:presence:info:<channel>``, a hash of connection id -> JSON
``{"joined": ..., "user": ..., "info": ...}``. Every operation is one Lua script, so it is
atomic, and times come from the Redis server's clock: app hosts with skewed clocks agree on
who has expired.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .._redis import Clients, RedisError, check_url
from ._base import (
    Member,
    PresenceStore,
    PresenceUnavailableError,
    SyncPresence,
    check_join,
    check_key,
    check_presence_channel,
    check_ttl,
    member_order,
)

__all__ = ("RedisPresence",)

_T = TypeVar("_T")

# Every script: KEYS[1] the channel's sorted set (client -> expiry), KEYS[2] its hash
# (client -> JSON). A member is live while its expiry is after `now`, the server's time;
# `stamp` is that time as text, so every comparison in a script uses the same value.
_PRELUDE = """
local clock = redis.call('TIME')
local stamp = clock[1] .. '.' .. string.format('%06d', clock[2])
local now = tonumber(stamp)
local function live(expires)
  return expires and tonumber(expires) > now
end
local function after(seconds)
  return string.format('%.6f', now + tonumber(seconds))
end
"""

# ARGV: client, ttl, '{"user":...,"info":...}'. Returns 1 for a new member, 0 for a refresh.
# The hash value starts with "joined", so a refresh can keep it without decoding the JSON
# (and info is never re-encoded by Lua's cjson, which would change its numbers).
_JOIN = (
    _PRELUDE
    + """
local client, body = ARGV[1], ARGV[3]
-- Both keys are read before anything is written: a key of the wrong type fails the script
-- before it changes anything.
local expires, old = redis.call('ZSCORE', KEYS[1], client), redis.call('HGET', KEYS[2], client)
local joined, new = stamp, 1
if live(expires) then
  joined = old and string.match(old, '^{"joined":([^,]+),') or stamp
  new = 0
end
redis.call('ZADD', KEYS[1], after(ARGV[2]), client)
redis.call('HSET', KEYS[2], client, '{"joined":' .. joined .. ',' .. string.sub(body, 2))
return new
"""
)

# ARGV: client, ttl. Returns 1 when the member was live (and is extended), else 0.
_TOUCH = (
    _PRELUDE
    + """
if not live(redis.call('ZSCORE', KEYS[1], ARGV[1])) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', after(ARGV[2]), ARGV[1])
return 1
"""
)

# ARGV: client. Returns {expiry, JSON} of the live member it removed, or nil.
_LEAVE = (
    _PRELUDE
    + """
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not live(expires) then
  return false
end
local body = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {expires, body}
"""
)

# Returns {client, expiry, JSON, client, expiry, JSON, ...} of the live members.
_MEMBERS = (
    _PRELUDE
    + """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. stamp, '+inf', 'WITHSCORES')
local reply = {}
for i = 1, #found, 2 do
  table.insert(reply, found[i])
  table.insert(reply, found[i + 1])
  table.insert(reply, redis.call('HGET', KEYS[2], found[i]))
end
return reply
"""
)

# Removes the expired members; returns them as _MEMBERS does.
_EXPIRE = (
    _PRELUDE
    + """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stamp, 'WITHSCORES')
local reply = {}
for i = 1, #found, 2 do
  table.insert(reply, found[i])
  table.insert(reply, found[i + 1])
  table.insert(reply, redis.call('HGET', KEYS[2], found[i]))
  redis.call('HDEL', KEYS[2], found[i])
end
if #found > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stamp)
end
return reply
"""
)

_ScriptName = Literal["join", "touch", "leave", "members", "expire"]
_SCRIPTS: dict[str, str] = {
    "join": _JOIN,
    "touch": _TOUCH,
    "leave": _LEAVE,
    "members": _MEMBERS,
    "expire": _EXPIRE,
}


# -- calls: what both faces run, free of I/O ----------------------------------------------------


@dataclass(frozen=True)
class _Call(Generic[_T]):
    """One script run, and how its reply becomes the result."""

    script: _ScriptName
    keys: tuple[str, str]
    args: tuple[str, ...]
    result: Callable[[Any], _T]


class _Calls:
    def __init__(self, key_prefix: str) -> None:
        self._members_prefix = f"{key_prefix}presence:members:"
        self._info_prefix = f"{key_prefix}presence:info:"

    def _keys(self, channel: str) -> tuple[str, str]:
        return self._members_prefix + channel, self._info_prefix + channel

    def join(
        self, channel: str, client: str, ttl: float, user: str | None, info: Any
    ) -> _Call[bool]:
        info_text = check_join(channel, client, ttl, user, info)
        body = f'{{"user":{json.dumps(user)},"info":{info_text}}}'
        return _Call("join", self._keys(channel), (client, repr(float(ttl)), body), _is_one)

    def touch(self, channel: str, client: str, ttl: float) -> _Call[bool]:
        check_key(channel, client)
        check_ttl(ttl)
        return _Call("touch", self._keys(channel), (client, repr(float(ttl))), _is_one)

    def leave(self, channel: str, client: str) -> _Call[Member | None]:
        check_key(channel, client)

        def result(reply: list[str] | None) -> Member | None:
            return None if reply is None else _member(channel, client, *reply)

        return _Call("leave", self._keys(channel), (client,), result)

    def members(self, channel: str) -> _Call[list[Member]]:
        check_presence_channel(channel)
        return _Call("members", self._keys(channel), (), lambda reply: _members(channel, reply))

    def expire(self, channel: str) -> _Call[list[Member]]:
        check_presence_channel(channel)
        return _Call("expire", self._keys(channel), (), lambda reply: _members(channel, reply))


def _is_one(reply: int) -> bool:
    return reply == 1


def _member(channel: str, client: str, expires: str, body: str) -> Member:
    fields = json.loads(body)
    return Member(channel, client, fields["user"], fields["info"], fields["joined"], float(expires))


def _members(channel: str, reply: list[str]) -> list[Member]:
    found = [_member(channel, *reply[i : i + 3]) for i in range(0, len(reply), 3)]
    return sorted(found, key=member_order)


# -- the two faces ----------------------------------------------------------------------------


class _SyncRedisPresence(SyncPresence):
    def __init__(self, calls: _Calls, clients: Clients) -> None:
        self._calls = calls
        self._clients = clients

    def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        return self._run(self._calls.join(channel, client, ttl, user, info))

    def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        return self._run(self._calls.touch(channel, client, ttl))

    def leave(self, channel: str, client: str) -> Member | None:
        return self._run(self._calls.leave(channel, client))

    def members(self, channel: str) -> list[Member]:
        return self._run(self._calls.members(channel))

    def expire(self, channel: str) -> list[Member]:
        return self._run(self._calls.expire(channel))

    def close(self) -> None:
        self._clients.close_sync()

    def _run(self, call: _Call[_T]) -> _T:
        _, scripts = self._clients.sync_client()
        try:
            reply = scripts[call.script](call.keys, call.args)
        except RedisError as exc:
            raise self._clients.unavailable(exc) from exc
        return call.result(reply)


class RedisPresence(PresenceStore):
    """Presence in Redis, shared by every process on every host.

    Each operation is one Lua script timed by the Redis server's clock, so a join, leave
    or expiry is reported once whichever process or host sees it. The async face uses
    ``redis.asyncio``, the ``sync`` face a blocking client; both are made from ``url`` on
    first use.

    Args:
        url: a redis-py URL, ``redis://[[user]:password@]host:port/db`` or ``rediss://...``;
            its parameters go to redis-py.
        key_prefix: the start of every key name.
    """

    sync: _SyncRedisPresence

    def __init__(self, url: str, *, key_prefix: str = "grip:") -> None:
        check_url(url, kind="presence")
        self.key_prefix = key_prefix
        self._calls = _Calls(key_prefix)
        self._clients = Clients(url, _SCRIPTS, kind="presence", error=PresenceUnavailableError)
        self.sync = _SyncRedisPresence(self._calls, self._clients)

    @property
    def url(self) -> str:
        """The Redis URL, without its password and parameters."""
        return self._clients.shown

    def __repr__(self) -> str:
        return f"<RedisPresence {self.url} key_prefix={self.key_prefix!r}>"

    async def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        return await self._run(self._calls.join(channel, client, ttl, user, info))

    async def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        return await self._run(self._calls.touch(channel, client, ttl))

    async def leave(self, channel: str, client: str) -> Member | None:
        return await self._run(self._calls.leave(channel, client))

    async def members(self, channel: str) -> list[Member]:
        return await self._run(self._calls.members(channel))

    async def expire(self, channel: str) -> list[Member]:
        return await self._run(self._calls.expire(channel))

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def _run(self, call: _Call[_T]) -> _T:
        _, scripts = await self._clients.async_client()
        try:
            reply = await scripts[call.script](call.keys, call.args)
        except RedisError as exc:
            raise self._clients.unavailable(exc) from exc
        return call.result(reply)
