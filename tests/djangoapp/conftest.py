from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import isolate_grip, setup_django

setup_django()


@pytest.fixture(autouse=True)
def _isolated_grip(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_grip(monkeypatch)
    yield
    isolate_grip(monkeypatch)
