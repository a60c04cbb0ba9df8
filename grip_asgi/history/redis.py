"""The Redis history store: one history for every process on every host.

Needs the optional ``redis`` package (``pip install "grip-asgi[redis]"``) and Redis 6.2 or
later. Each channel's events are a Redis stream whose entry ids are the channel's own ids
(``1-0``, ``2-0``, ...): reading after an id is one ``XRANGE``, count retention rides on the
``XADD`` (``MAXLEN``), and age retention removes a prefix with ``XTRIM MINID``; streams also
store runs of small entries compactly. (A sorted set would need a second structure for the
event bodies, or a member encoding of our own.) The counters sit in one hash, so they
survive when retention empties a stream.

Key names, with the default ``key_prefix`` ``"grip:"``: ``grip:history:ids`` (a hash,
channel -> newest id) and ``grip:history:events:<channel>`` (a stream per channel).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .. import metrics as _metrics
from .._redis import Clients, RedisError, check_url
from ._base import (
    HistoryStore,
    HistoryUnavailableError,
    Retention,
    StoredEvent,
    SyncHistory,
    check_after_id,
    check_append,
    check_channel,
    check_count,
    check_gap,
)

__all__ = ("RedisHistory",)

_T = TypeVar("_T")

# trim() asks about this many channels at a time.
_TRIM_BATCH = 100

# Stream entries are written as: id "N-0", fields t (server time), e (event, "" for none),
# d (data), always in this order so entry[2][2] is the time and Redis shares the field names.
# trim_age removes the channel's expired prefix, at most 1000 entries per call so one call
# never holds Redis long; it says whether expired entries are left.
_TRIM_AGE = """
local function trim_age(stream, cutoff)
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #oldest == 0 or tonumber(oldest[1][2][2]) >= cutoff then
    return 0, false
  end
  local removed = 0
  for _ = 1, 10 do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)
    if #batch == 0 then
      return removed, false
    end
    for _, entry in ipairs(batch) do
      if tonumber(entry[2][2]) >= cutoff then
        return removed + redis.call('XTRIM', stream, 'MINID', entry[1]), false
      end
    end
    local last = string.match(batch[#batch][1], '^%d+')
    removed = removed + redis.call('XTRIM', stream, 'MINID', last .. '-1')
    if #batch < 100 then
      return removed, false
    end
  end
  return removed, true
end
"""

# KEYS: the ids hash, the channel's stream. ARGV: channel, data, event, max_events (0: none),
# max_age (0: none). Returns {id, time}. One script, so the new id, the entry and the trim are
# one atomic step: no reader sees the counter ahead of the event. The time is the server's,
# so app hosts with skewed clocks agree. XADD goes first: if it fails, nothing was written.
_APPEND = (
    _TRIM_AGE
    + """
local channel, data, event = ARGV[1], ARGV[2], ARGV[3]
local max_events, max_age = tonumber(ARGV[4]), tonumber(ARGV[5])
local id = tonumber(redis.call('HGET', KEYS[1], channel) or '0') + 1
local clock = redis.call('TIME')
local time = clock[1] .. '.' .. string.format('%06d', clock[2])
local entry_id = string.format('%d', id) .. '-0'
if max_events > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', max_events, entry_id, 't', time, 'e', event, 'd', data)
else
  redis.call('XADD', KEYS[2], entry_id, 't', time, 'e', event, 'd', data)
end
redis.call('HSET', KEYS[1], channel, string.format('%d', id))
if max_age > 0 then
  trim_age(KEYS[2], tonumber(time) - max_age)
end
return {id, time}
"""
)

# KEYS: channels' streams. ARGV: max_events (0: none), max_age (0: none).
# Returns {events removed, 1 if some streams still hold expired events else 0}.
_TRIM = (
    _TRIM_AGE
    + """
local max_events, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local cutoff = tonumber(clock[1]) + tonumber(clock[2]) / 1000000 - max_age
local removed, more = 0, 0
for _, stream in ipairs(KEYS) do
  if max_events > 0 then
    removed = removed + redis.call('XTRIM', stream, 'MAXLEN', max_events)
  end
  if max_age > 0 then
    local count, left = trim_age(stream, cutoff)
    removed = removed + count
    if left then
      more = 1
    end
  end
end
return {removed, more}
"""
)


_SCRIPTS = {"append": _APPEND, "trim": _TRIM}

# -- requests: what the shared flows ask the two drivers to run ------------------------------


@dataclass(frozen=True)
class _Command:
    """A redis-py client method and its arguments."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Transaction:
    """Commands run in one MULTI/EXEC: their replies come from one moment.

    Reads use this, not a script: Redis turns a large XRANGE reply into Lua tables and back
    slowly (about ten times the cost of the XRANGE itself for 1,000 events), and that time
    is taken from its one thread, which every app host shares.
    """

    commands: tuple[_Command, ...]


@dataclass(frozen=True)
class _Script:
    name: Literal["append", "trim"]
    keys: tuple[str, ...]
    args: tuple[str | int, ...]


_Request = _Command | _Transaction | _Script
# Each operation is one generator shared by both faces, as httpx's auth_flow is: it yields
# requests, receives their replies, and returns the result. The faces only do the I/O.
_Flow = Generator[_Request, Any, _T]


class _Flows:
    """The operations, free of I/O."""

    def __init__(self, retention: Retention, key_prefix: str) -> None:
        self.retention = retention
        self._ids = f"{key_prefix}history:ids"
        self._stream_prefix = f"{key_prefix}history:events:"
        self._limits = (
            retention.max_events or 0,
            repr(float(retention.max_age)) if retention.max_age is not None else "0",
        )

    def _stream(self, channel: str) -> str:
        return self._stream_prefix + channel

    def append(self, channel: str, data: str, event: str | None) -> _Flow[StoredEvent]:
        check_append(channel, data, event)
        keys = (self._ids, self._stream(channel))
        new_id, time = yield _Script("append", keys, (channel, data, event or "", *self._limits))
        if _metrics._recorder is not None:
            _metrics._recorder.history_append("redis")
        return StoredEvent(channel, int(new_id), data, event, float(time))

    def read(self, channel: str, after_id: int, limit: int) -> _Flow[list[StoredEvent]]:
        check_channel(channel)
        check_after_id(after_id, limit)
        stream = self._stream(channel)
        last_id, oldest, entries = yield _Transaction(
            (
                _Command("hget", (self._ids, channel)),
                _Command("xrange", (stream, "-", "+"), {"count": 1}),
                _Command("xrange", (stream, f"{after_id + 1}-0", "+"), {"count": limit}),
            )
        )
        current_id = int(last_id or 0)
        first_id = _entry_id(oldest[0][0]) if oldest else current_id + 1
        check_gap(channel, after_id, current_id, first_id)
        return [_event(channel, entry) for entry in entries]

    def last_id(self, channel: str) -> _Flow[int]:
        check_channel(channel)
        last_id = yield _Command("hget", (self._ids, channel))
        return int(last_id or 0)

    def latest(self, channel: str, count: int) -> _Flow[list[StoredEvent]]:
        check_channel(channel)
        check_count("count", count)
        entries = yield _Command("xrevrange", (self._stream(channel), "+", "-"), {"count": count})
        return [_event(channel, entry) for entry in reversed(entries)]

    def trim(self) -> _Flow[int]:
        removed = 0
        if self._limits == (0, "0"):
            return removed
        cursor = 0
        while True:
            cursor, counters = yield _Command("hscan", (self._ids, cursor), {"count": _TRIM_BATCH})
            streams = tuple(self._stream(channel) for channel in counters)
            more = bool(streams)
            while more:  # until no stream of the batch holds expired events
                count, more = yield _Script("trim", streams, self._limits)
                removed += int(count)
            if int(cursor) == 0:
                return removed


def _entry_id(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _event(channel: str, entry: tuple[str, dict[str, str]]) -> StoredEvent:
    entry_id, fields = entry
    return StoredEvent(
        channel, _entry_id(entry_id), fields["d"], fields["e"] or None, float(fields["t"])
    )


# -- the two faces ----------------------------------------------------------------------------


class _SyncRedisHistory(SyncHistory):
    def __init__(self, flows: _Flows, clients: Clients) -> None:
        self.retention = flows.retention
        self._flows = flows
        self._clients = clients

    def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        return self._run(self._flows.append(channel, data, event))

    def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        return self._run(self._flows.read(channel, after_id, limit))

    def last_id(self, channel: str) -> int:
        return self._run(self._flows.last_id(channel))

    def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        return self._run(self._flows.latest(channel, count))

    def trim(self) -> int:
        return self._run(self._flows.trim())

    def close(self) -> None:
        self._clients.close_sync()

    def _run(self, flow: _Flow[_T]) -> _T:
        client, scripts = self._clients.sync_client()
        try:
            request = next(flow)
            while True:
                if isinstance(request, _Script):
                    reply = scripts[request.name](request.keys, request.args)
                elif isinstance(request, _Transaction):
                    pipe = client.pipeline(transaction=True)
                    for command in request.commands:
                        getattr(pipe, command.method)(*command.args, **command.kwargs)
                    reply = pipe.execute()
                else:
                    reply = getattr(client, request.method)(*request.args, **request.kwargs)
                request = flow.send(reply)
        except StopIteration as done:
            result: _T = done.value
            return result
        except RedisError as exc:
            raise self._clients.unavailable(exc) from exc


class RedisHistory(HistoryStore):
    """Channel history in Redis, shared by every process on every host.

    An append is one Lua script (new id, entry, retention) and a read one MULTI/EXEC, so
    ids stay gap-free whoever appends, and no reader sees an id before its event. Event
    times come from the Redis server's clock. The async face uses ``redis.asyncio``, the
    ``sync`` face a blocking client; both are made from ``url`` on first use.

    Args:
        url: a redis-py URL, ``redis://[[user]:password@]host:port/db`` or ``rediss://...``;
            its parameters go to redis-py.
        retention: how much each channel keeps (default: :class:`Retention`'s defaults).
        key_prefix: the start of every key name.
    """

    sync: _SyncRedisHistory

    def __init__(
        self, url: str, *, retention: Retention | None = None, key_prefix: str = "grip:"
    ) -> None:
        check_url(url, kind="history")
        keep = Retention() if retention is None else retention
        self.key_prefix = key_prefix
        self._flows = _Flows(keep, key_prefix)
        self._clients = Clients(url, _SCRIPTS, kind="history", error=HistoryUnavailableError)
        self.sync = _SyncRedisHistory(self._flows, self._clients)

    @property
    def url(self) -> str:
        """The Redis URL, without its password and parameters."""
        return self._clients.shown

    def __repr__(self) -> str:
        return f"<RedisHistory {self.url} key_prefix={self.key_prefix!r} {self.retention}>"

    async def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        return await self._run(self._flows.append(channel, data, event))

    async def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        return await self._run(self._flows.read(channel, after_id, limit))

    async def last_id(self, channel: str) -> int:
        return await self._run(self._flows.last_id(channel))

    async def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        return await self._run(self._flows.latest(channel, count))

    async def trim(self) -> int:
        return await self._run(self._flows.trim())

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def _run(self, flow: _Flow[_T]) -> _T:
        client, scripts = await self._clients.async_client()
        try:
            request = next(flow)
            while True:
                if isinstance(request, _Script):
                    reply = await scripts[request.name](request.keys, request.args)
                elif isinstance(request, _Transaction):
                    pipe = client.pipeline(transaction=True)
                    for command in request.commands:
                        getattr(pipe, command.method)(*command.args, **command.kwargs)
                    reply = await pipe.execute()
                else:
                    reply = await getattr(client, request.method)(*request.args, **request.kwargs)
                request = flow.send(reply)
        except StopIteration as done:
            result: _T = done.value
            return result
        except RedisError as exc:
            raise self._clients.unavailable(exc) from exc
