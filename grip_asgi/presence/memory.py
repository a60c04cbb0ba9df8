"""The in-memory presence store: for tests and a single process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._stores import CallsInline
from ._base import (
    Member,
    PresenceUnavailableError,
    SyncBackedPresence,
    SyncPresence,
    check_join,
    check_key,
    check_presence_channel,
    check_ttl,
    decode_info,
    member_order,
)

__all__ = ("MemoryPresence",)


@dataclass
class _Entry:
    user: str | None
    # Kept as JSON text, as the other backends keep it: a caller's later changes to the
    # object it passed do not show, and every read gets an object of its own.
    info: str
    joined: float
    expires: float

    def member(self, channel: str, client: str) -> Member:
        return Member(channel, client, self.user, decode_info(self.info), self.joined, self.expires)


class _SyncMemoryPresence(SyncPresence):
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._channels: dict[str, dict[str, _Entry]] = {}
        self._closed = False

    def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        info_text = check_join(channel, client, ttl, user, info)
        with self._lock:
            self._check_open()
            now = self._clock()
            entries = self._channels.setdefault(channel, {})
            old = entries.get(client)
            live = old is not None and old.expires > now
            joined = old.joined if old is not None and live else now
            entries[client] = _Entry(user, info_text, joined, now + ttl)
            return not live

    def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        check_key(channel, client)
        check_ttl(ttl)
        with self._lock:
            self._check_open()
            now = self._clock()
            entry = self._channels.get(channel, {}).get(client)
            if entry is None or entry.expires <= now:
                return False
            entry.expires = now + ttl
            return True

    def leave(self, channel: str, client: str) -> Member | None:
        check_key(channel, client)
        with self._lock:
            self._check_open()
            entries = self._channels.get(channel, {})
            entry = entries.get(client)
            if entry is None or entry.expires <= self._clock():
                return None  # an expired member is expire()'s to report
            del entries[client]
            self._forget_if_empty(channel)
            return entry.member(channel, client)

    def members(self, channel: str) -> list[Member]:
        check_presence_channel(channel)
        with self._lock:
            self._check_open()
            now = self._clock()
            entries = self._channels.get(channel, {})
            live = [entry.member(channel, c) for c, entry in entries.items() if entry.expires > now]
        return sorted(live, key=member_order)

    def expire(self, channel: str) -> list[Member]:
        check_presence_channel(channel)
        with self._lock:
            self._check_open()
            now = self._clock()
            entries = self._channels.get(channel, {})
            gone = [client for client, entry in entries.items() if entry.expires <= now]
            expired = [entries.pop(client).member(channel, client) for client in gone]
            self._forget_if_empty(channel)
        return sorted(expired, key=member_order)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._channels.clear()

    def _forget_if_empty(self, channel: str) -> None:
        if not self._channels.get(channel, True):
            del self._channels[channel]

    def _check_open(self) -> None:
        if self._closed:
            raise PresenceUnavailableError("the memory presence store is closed", store="memory:")


class MemoryPresence(CallsInline, SyncBackedPresence):
    """Presence in this process's memory: for tests and a single process.

    Args:
        clock: returns the current Unix time; tests pass a fake one to expire members
            without waiting.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(_SyncMemoryPresence(clock))

    def __repr__(self) -> str:
        return "<MemoryPresence>"
