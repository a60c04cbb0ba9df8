"""Several processes append to one channel at once while another reads it (SQLite, Redis).

Two "workers" (the sync face) and a "publisher" (the async face) append 300 events each at
the same time, in separate processes, while a reader process polls ``read(after_id=last)``.
Every id from 1 to 900 must exist exactly once, each process's appends must come back in the
order it made them, and the reader must see every id in order.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from grip_asgi.history import StoredEvent

from .._stores import RedisServer, redis_prefix
from . import _stress_worker

PER_PROCESS = 300
APPENDERS = {"worker-1": False, "worker-2": False, "publisher": True}  # name: use the async face
TOTAL = PER_PROCESS * len(APPENDERS)
CHANNEL = "stress: ü"
SECONDS = 120


@pytest.fixture(params=["sqlite", "redis"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, ...]:
    if request.param == "sqlite":
        return ("sqlite", str(tmp_path / "history.sqlite3"))
    server: RedisServer = request.getfixturevalue("redis_server")
    return ("redis", server.url, redis_prefix())


def test_processes_appending_at_once_get_gap_free_ids_and_no_reader_skips(
    spec: tuple[str, ...],
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(APPENDERS) + 1, timeout=60)
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=_stress_worker.appender,
            args=(spec, CHANNEL, name, PER_PROCESS, use_async, start, results),
        )
        for name, use_async in APPENDERS.items()
    ]
    processes.append(
        context.Process(
            target=_stress_worker.reader, args=(spec, CHANNEL, TOTAL, SECONDS, start, results)
        )
    )
    try:
        for process in processes:
            process.start()
        reports: dict[str, Any] = {}
        while len(reports) < len(processes):
            name, report = results.get(timeout=SECONDS + 60)
            reports[name] = report
            if isinstance(report, str):
                break  # one failed: the reader would wait for ids that never come
        else:
            for process in processes:
                process.join(timeout=30)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    failed = {name: report for name, report in reports.items() if isinstance(report, str)}
    assert not failed

    every_id = sorted(i for name in APPENDERS for i in reports[name])
    assert every_id == list(range(1, TOTAL + 1))  # each id exactly once: no gap, no duplicate
    assert reports["reader"]["seen"] == list(range(1, TOTAL + 1))  # in order, nothing skipped

    with _stress_worker.open_store(spec).sync as store:
        stored = read_all(store)
    assert [event.id for event in stored] == list(range(1, TOTAL + 1))
    data = {event.id: event.data for event in stored}
    for name in APPENDERS:
        mine = reports[name]
        assert mine == sorted(mine)
        assert [data[i] for i in mine] == [f"{name}:{n}" for n in range(PER_PROCESS)]


def read_all(store: Any) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    while page := store.read(CHANNEL, events[-1].id if events else 0, limit=250):
        events.extend(page)
    return events
