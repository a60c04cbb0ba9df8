from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _history_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reliable-channel history goes to a directory of the test's own, never the checkout:
    apps and servers a test starts inherit ``GRIP_HISTORY_URL``."""
    directory = tmp_path_factory.mktemp("history")
    monkeypatch.setenv("GRIP_HISTORY_URL", f"sqlite:///{directory}/history.sqlite3")
