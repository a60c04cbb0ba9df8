"""The security suite's Hypothesis profile, its figures, and Django for the adapter tables.

Every property here runs ``GRIP_FUZZ_EXAMPLES`` examples (default 300, sized for CI); the
long run is ``GRIP_FUZZ_EXAMPLES=20000 pytest tests/security``. The profile is applied with
``@settings(settings.get_profile(FUZZ_PROFILE))`` by each property, never loaded globally,
so the rest of the test suite keeps Hypothesis's defaults.

At the end of the run a summary line gives the figures: attacks tried, fuzz cases run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.djangoapp import isolate_grip, setup_django

setup_django()

FUZZ_PROFILE = "grip-security"
DEFAULT_FUZZ_EXAMPLES = 300

settings.register_profile(
    FUZZ_PROFILE,
    max_examples=int(os.environ.get("GRIP_FUZZ_EXAMPLES", DEFAULT_FUZZ_EXAMPLES)),
    # A 2-core CI machine shared with other jobs: no per-example deadline (hangs are bounded
    # inside the properties instead), and large inputs are the point.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

#: What the suite did, for the summary line: figure name -> count.
_FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="session")
def figures() -> Counter[str]:
    """Count what a test tried: ``figures["fuzz cases"] += 1`` (shown at the end of the run)."""
    return _FIGURES


@pytest.fixture(autouse=True)
def _isolated_grip(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_grip(monkeypatch)
    yield
    isolate_grip(monkeypatch)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        summary = ", ".join(f"{count} {name}" for name, count in sorted(_FIGURES.items()))
        terminalreporter.write_line(f"grip security suite: {summary}")
