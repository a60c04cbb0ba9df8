"""End-to-end tests: real clients, a real Pushpin, and apps served by real servers.

Every test here is marked ``e2e``. They need the ``pushpin`` executable and fail without it
(run ``scripts/install-pushpin``); ``GRIP_SKIP_E2E=1`` skips them instead, explicitly.

Fixtures:

- ``pushpin_factory(backend, **options) -> Pushpin``: a started Pushpin.
- ``proxied_app(app, *, workers=1, env=None, ready_path="/", **pushpin_options) -> ProxiedApp``:
  ``app`` (an import string run by uvicorn, or a ``ServerFactory``) started with ``GRIP_URL``
  pointing at a private Pushpin, then that Pushpin started in front of it.
- ``scenario``: the reliable runs' ``Scenario``, given by indirect parametrization;
  ``history_url``: a fresh history for it (a SQLite file here, or a new Redis key prefix).

Both stop everything at teardown and print the logs, which pytest shows for failed tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grip_asgi.pushpin import Pushpin

from .reliable_clients import Scenario
from .servers import ProcessServer, ProxiedApp, ServerFactory, log_tail, plan_proxied_app

E2E_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _require_pushpin() -> None:
    if os.environ.get("GRIP_SKIP_E2E") == "1":
        pytest.skip("GRIP_SKIP_E2E=1: end-to-end tests skipped")
    if shutil.which("pushpin") is None:
        pytest.fail(
            "pushpin is not installed: run scripts/install-pushpin "
            "(or set GRIP_SKIP_E2E=1 to skip the end-to-end tests)",
            pytrace=False,
        )


@pytest.fixture
def pushpin_factory() -> Iterator[Callable[..., Pushpin]]:
    with contextlib.ExitStack() as stack:

        def start(backend: str = "127.0.0.1:8000", **options: Any) -> Pushpin:
            pushpin = Pushpin(backend, **options)
            stack.callback(_print_log, pushpin)
            stack.enter_context(pushpin)
            return pushpin

        yield start


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Scenario:
    chosen: Scenario = request.param
    return chosen


@pytest.fixture
def history_url(scenario: Scenario, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if scenario.store == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"  # absolute: sqlite:////...
    redis = request.getfixturevalue("redis_server")
    return f"{redis.url}?key_prefix=e2e-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def proxied_app() -> Iterator[Callable[..., ProxiedApp]]:
    with contextlib.ExitStack() as stack:

        def start(app: str | ServerFactory, **options: Any) -> ProxiedApp:
            proxied = plan_proxied_app(app, **options)
            # Exits run in reverse: Pushpin stops, then the server, then the logs are printed.
            stack.callback(_print_log, proxied.server)
            stack.callback(_print_log, proxied.pushpin)
            # Pushpin's readiness does not need the app, so both start at the same time.
            proxied.server.launch()
            stack.callback(proxied.server.stop)
            stack.enter_context(proxied.pushpin)
            proxied.server.wait_ready()
            return proxied

        yield start


def _print_log(process: Pushpin | ProcessServer) -> None:
    print(f"--- log of {process!r} ---\n{log_tail(process.read_log())}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The counts of the reliable-delivery runs (tests/e2e/test_reliable.py), pass or fail.
    from .reliable_clients import RESULTS

    if RESULTS:
        terminalreporter.section("reliable delivery: counts per run")
        for line in RESULTS:
            terminalreporter.write_line(line)
