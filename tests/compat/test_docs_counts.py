"""docs/migrating.md gives the number of cases per peer: they must be this suite's."""

from __future__ import annotations

import re
from pathlib import Path

from tests.djangoapp import setup_django

from . import (
    cases_django_grip,
    cases_faas_grip,
    cases_gripcontrol,
    test_django_grip,
    test_faas_grip,
    test_gripcontrol,
)
from .verdict import PEERS

setup_django()

MIGRATING = Path(__file__).resolve().parents[2] / "docs" / "migrating.md"

#: Each case test's cases and expected differences, by the peer label of the summary.
SUITES = {
    PEERS["test_gripcontrol.py::test_behaves_like_gripcontrol"]: (
        cases_gripcontrol.CASES,
        test_gripcontrol.EXPECTED,
    ),
    PEERS["test_django_grip.py::test_behaves_like_django_grip"]: (
        cases_django_grip.CASES,
        test_django_grip.EXPECTED,
    ),
    PEERS["test_faas_grip.py::test_behaves_like_faas_grip"]: (
        cases_faas_grip.CASES,
        test_faas_grip.EXPECTED,
    ),
    PEERS["test_faas_grip.py::test_the_asgi_port_on_mangum_behaves_like_faas_grip"]: (
        cases_faas_grip.CASES,
        test_faas_grip.EXPECTED_ON_MANGUM,
    ),
}


def test_migrating_gives_each_peers_counts() -> None:
    rows = {}
    for line in MIGRATING.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| (.+?) \| (\d+) \| (\d+) \| 0 \|", line)
        if match:
            peer = match.group(1).replace("`", "")
            rows[peer] = (int(match.group(2)), int(match.group(3)))
    assert rows == {
        peer: (len(cases) - len(expected), len(expected))
        for peer, (cases, expected) in SUITES.items()
    }
