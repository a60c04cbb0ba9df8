"""The in-memory history store: for tests and a single process."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from .. import metrics as _metrics
from .._stores import CallsInline
from ._base import (
    HistoryUnavailableError,
    Retention,
    StoredEvent,
    SyncBackedStore,
    SyncHistory,
    check_after_id,
    check_append,
    check_channel,
    check_count,
    check_gap,
)

__all__ = ("MemoryHistory",)


@dataclass
class _Channel:
    last_id: int = 0
    # Ids in here are consecutive: retention only ever removes from the left.
    events: deque[StoredEvent] = field(default_factory=deque)


class _SyncMemoryHistory(SyncHistory):
    def __init__(self, retention: Retention, clock: Callable[[], float]) -> None:
        self.retention = retention
        self._clock = clock
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._closed = False

    def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        check_append(channel, data, event)
        with self._lock:
            self._check_open()
            state = self._channels.setdefault(channel, _Channel())
            state.last_id += 1
            stored = StoredEvent(channel, state.last_id, data, event, self._clock())
            state.events.append(stored)
            self._apply_retention(state, stored.time)
        if _metrics._recorder is not None:
            _metrics._recorder.history_append("memory")
        return stored

    def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        check_channel(channel)
        check_after_id(after_id, limit)
        with self._lock:
            self._check_open()
            state = self._channels.get(channel) or _Channel()
            first_id = state.events[0].id if state.events else state.last_id + 1
            check_gap(channel, after_id, state.last_id, first_id)
            start = after_id + 1 - first_id
            return list(islice(state.events, start, start + limit))

    def last_id(self, channel: str) -> int:
        check_channel(channel)
        with self._lock:
            self._check_open()
            state = self._channels.get(channel)
            return state.last_id if state else 0

    def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        check_channel(channel)
        check_count("count", count)
        with self._lock:
            self._check_open()
            state = self._channels.get(channel) or _Channel()
            start = max(0, len(state.events) - count)
            return list(islice(state.events, start, None))

    def trim(self) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            return sum(self._apply_retention(state, now) for state in self._channels.values())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._channels.clear()

    def _apply_retention(self, state: _Channel, now: float) -> int:
        events = state.events
        before = len(events)
        if self.retention.max_events is not None:
            while len(events) > self.retention.max_events:
                events.popleft()
        cutoff = self.retention.age_cutoff(now)
        if cutoff is not None:
            while events and events[0].time < cutoff:
                events.popleft()
        return before - len(events)

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryUnavailableError("the memory history store is closed", store="memory:")


class MemoryHistory(CallsInline, SyncBackedStore):
    """Channel history in this process's memory: for tests and a single process.

    Args:
        retention: how much each channel keeps (default: :class:`Retention`'s defaults).
        clock: returns the current Unix time; tests pass a fake one to test age retention.
    """

    def __init__(
        self, retention: Retention | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        keep = Retention() if retention is None else retention
        super().__init__(_SyncMemoryHistory(keep, clock))

    def __repr__(self) -> str:
        return f"<MemoryHistory {self.retention}>"
