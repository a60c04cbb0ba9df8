"""The peers' behaviour against our compatibility names (see :mod:`tests.compat.peers`).

Every case runs twice: on the peer's published code, in a process of its own, and on our
names here; a test passes when both do the same. A difference we keep on purpose is listed
in its test module with the reason, and runs as ``xfail(strict=True)``: the test still
asserts what we do instead, and fails if the difference ever disappears. After the run, a
summary gives each peer's counts and every expected difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import CaptureServer
from .peers import build_site, run_oracle
from .verdict import summary_lines


@pytest.fixture(scope="session")
def peer_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The peers and their dependencies, unpacked from the cached downloads."""
    return build_site(tmp_path_factory.mktemp("peers") / "site")


@pytest.fixture(scope="session")
def peer_observations(
    peer_site: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """``peer_observations("tests.compat.cases_x")``: what the peer did in each case."""
    workdir = tmp_path_factory.mktemp("oracle")
    done: dict[str, dict[str, Any]] = {}

    def observations(cases_module: str) -> dict[str, Any]:
        if cases_module not in done:
            done[cases_module] = run_oracle(peer_site, cases_module, workdir)
        return done[cases_module]

    return observations


@pytest.fixture(scope="session")
def capture() -> Iterator[CaptureServer]:
    """One publish endpoint for the session: each case starts by taking what it holds."""
    with CaptureServer() as server:
        yield server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines(terminalreporter.stats)
    if lines:
        terminalreporter.section("peer compatibility (tests/compat)")
        for line in lines:
            terminalreporter.write_line(line)
