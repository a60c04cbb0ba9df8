"""Random runs of appends, reads, trims and clock moves, checked against a plain model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grip_asgi.history import HistoryGapError, Retention, StoredEvent, SyncHistory

from .conftest import Backend

Op = tuple[Any, ...]
CHANNELS = st.sampled_from(["a", "b:c", "ü 🎉", ""])


@dataclass
class Model:
    """What a history must hold: every event, minus what retention removed (a prefix)."""

    retention: Retention
    last: dict[str, int] = field(default_factory=dict)
    events: dict[str, list[tuple[int, str, str | None, float]]] = field(default_factory=dict)

    def append(self, channel: str, data: str, event: str | None, now: float) -> int:
        new_id = self.last.get(channel, 0) + 1
        self.last[channel] = new_id
        self.events.setdefault(channel, []).append((new_id, data, event, now))
        self.apply(channel, now)
        return new_id

    def apply(self, channel: str, now: float) -> None:
        kept = self.events.get(channel, [])
        if self.retention.max_events is not None:
            kept = kept[-self.retention.max_events :]
        if self.retention.max_age is not None:
            while kept and kept[0][3] < now - self.retention.max_age:
                kept = kept[1:]
        self.events[channel] = kept

    def read(self, channel: str, after_id: int, limit: int) -> list[int] | tuple[int, int]:
        """The ids read, or (current_id, first_id) of the gap."""
        current = self.last.get(channel, 0)
        kept = self.events.get(channel, [])
        first = kept[0][0] if kept else current + 1
        if after_id > current or after_id < first - 1:
            return current, first
        return [e[0] for e in kept if e[0] > after_id][:limit]


append_op = st.tuples(
    st.just("append"),
    CHANNELS,
    st.text(max_size=20),
    st.none() | st.sampled_from(["update", "ü"]),
)
read_op = st.tuples(st.just("read"), CHANNELS, st.integers(0, 12), st.integers(1, 4))
latest_op = st.tuples(st.just("latest"), CHANNELS, st.integers(1, 4))
trim_op = st.tuples(st.just("trim"))
advance_op = st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 1.0, 3.0]))


def run(store: SyncHistory, model: Model, backend: Backend, ops: list[Op]) -> None:
    for op in ops:
        if op[0] == "append":
            _, channel, data, event = op
            stored = store.append(channel, data, event=event)
            assert stored.id == model.append(channel, data, event, stored.time)
        elif op[0] == "read":
            _, channel, after_id, limit = op
            expected = model.read(channel, after_id, limit)
            if isinstance(expected, tuple):
                with pytest.raises(HistoryGapError) as caught:
                    store.read(channel, after_id, limit=limit)
                assert (caught.value.current_id, caught.value.first_id) == expected
            else:
                got = store.read(channel, after_id, limit=limit)
                assert [e.id for e in got] == expected
                check_events(got, model, channel)
        elif op[0] == "latest":
            _, channel, count = op
            got = store.latest(channel, count)
            kept = model.events.get(channel, [])
            assert [e.id for e in got] == [e[0] for e in kept[-count:]]
            check_events(got, model, channel)
        elif op[0] == "trim":
            now = backend.now()
            before = sum(len(kept) for kept in model.events.values())
            for channel in list(model.events):
                model.apply(channel, now)
            assert store.trim() == before - sum(len(kept) for kept in model.events.values())
        else:
            backend.pass_time(op[1])
        for channel, last in model.last.items():
            assert store.last_id(channel) == last


def check_events(got: list[StoredEvent], model: Model, channel: str) -> None:
    by_id = {e[0]: e for e in model.events.get(channel, [])}
    for event in got:
        assert event.channel == channel
        assert (event.id, event.data, event.event, event.time) == by_id[event.id]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_events=st.none() | st.integers(1, 4),
    max_age=st.none() | st.sampled_from([0.5, 1.0, 2.0]),
    ops=st.lists(st.one_of(append_op, read_op, latest_op, trim_op, advance_op), max_size=40),
)
def test_fake_clock_backends_match_the_model(
    clocked_backend: Backend,
    max_events: int | None,
    max_age: float | None,
    ops: list[Op],
) -> None:
    retention = Retention(max_events=max_events, max_age=max_age)
    store = clocked_backend.open(retention).sync
    try:
        run(store, Model(retention), clocked_backend, ops)
    finally:
        store.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_events=st.none() | st.integers(1, 4),
    ops=st.lists(st.one_of(append_op, read_op, latest_op, trim_op), max_size=40),
)
def test_redis_matches_the_model(
    redis_backend: Backend,
    max_events: int | None,
    ops: list[Op],
) -> None:
    # Redis dates events by its server's clock, so age retention is tested in the contract.
    retention = Retention(max_events=max_events, max_age=None)
    store = redis_backend.open(retention).sync
    try:
        run(store, Model(retention), redis_backend, ops)
    finally:
        store.close()
