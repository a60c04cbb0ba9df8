"""Comparing our observation of a case with the peer's, and the per-peer summary."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from .harness import Case, Harness, observe, run_case, same


class DiffersFromPeer(AssertionError):
    """Our names did not do what the peer did."""


@dataclass(frozen=True)
class Difference:
    """A case where we differ from the peer on purpose: what each does, and why."""

    reason: str
    peer: dict[str, Any]
    ours: dict[str, Any]


def value(result: object) -> dict[str, Any]:
    """The observation of a case that returned ``result``."""
    return {"value": observe(result)}


def raises(builtin: str) -> dict[str, Any]:
    """The observation of a case that raised (a subclass of) the built-in ``builtin``."""
    return {"raises": builtin}


def cases_for(cases: Mapping[str, Case], expected: Mapping[str, Difference]) -> list[Any]:
    """Every case as a test parameter; the expected differences are strict xfails."""
    unknown = set(expected) - set(cases)
    if unknown:
        raise ValueError(f"expected differences for unknown cases: {sorted(unknown)}")
    params = []
    for name in cases:
        difference = expected.get(name)
        marks = (
            []
            if difference is None
            else [pytest.mark.xfail(raises=DiffersFromPeer, strict=True, reason=difference.reason)]
        )
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def check(
    name: str,
    case: Case,
    harness: Harness,
    peer: Mapping[str, Any],
    expected: Mapping[str, Difference],
) -> None:
    """Run ``case`` on our names and compare with the peer's observation.

    For an expected difference, both sides must do what the list says (a plain
    AssertionError, so a real failure) before the difference itself is raised.
    """
    ours = run_case(case, harness)
    theirs = peer[name]
    difference = expected.get(name)
    if difference is not None:
        assert same(difference.peer, theirs), f"the peer no longer does what we list: {theirs}"
        assert same(difference.ours, ours), f"we no longer do what we list: {ours}"
    if not same(theirs, ours):
        raise DiffersFromPeer(
            f"{name}:\n  peer: {json.dumps(theirs)[:2000]}\n  ours: {json.dumps(ours)[:2000]}"
        )


# --- The summary ----------------------------------------------------------------------------

#: The case tests, by module::function -> what they check, as the summary names it.
PEERS = {
    "test_gripcontrol.py::test_behaves_like_gripcontrol": (
        "gripcontrol 4.4.0 (with pubcontrol 3.5.0's Item)"
    ),
    "test_django_grip.py::test_behaves_like_django_grip": "django-grip 3.5.2",
    "test_faas_grip.py::test_behaves_like_faas_grip": "faas-grip 1.0.1, compat names",
    "test_faas_grip.py::test_the_asgi_port_on_mangum_behaves_like_faas_grip": (
        "faas-grip 1.0.1, its chat ported to ASGI on Mangum"
    ),
}


def _peer_of(nodeid: str) -> tuple[str, bool] | None:
    """The peer a test checks, and whether it is one of the cases (else another test of
    the same module, which counts only when it fails)."""
    file, _, test = nodeid.rsplit("/", 1)[-1].partition("::")
    key = f"{file}::{test.split('[', 1)[0]}"
    if key in PEERS:
        return PEERS[key], True
    for other, peer in PEERS.items():
        if other.startswith(f"{file}::"):
            return peer, False
    return None


def summary_lines(stats: Mapping[str, list[Any]]) -> list[str]:
    """One line per peer: its cases that behave the same, the expected differences (each
    with its reason, below), and every failure of its test module."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    durations: dict[str, float] = defaultdict(float)
    reasons: dict[str, list[str]] = defaultdict(list)
    for outcome, reports in stats.items():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            found = _peer_of(nodeid) if nodeid.startswith("tests/compat/") else None
            if found is None:
                continue
            peer, is_case = found
            durations[peer] += getattr(report, "duration", 0.0)
            failed = outcome in ("failed", "error", "xpassed")
            if failed or (is_case and report.when == "call"):
                counts[peer][outcome] += 1
                if outcome == "xfailed":
                    test = nodeid.split("[", 1)[-1].rstrip("]")
                    reasons[peer].append(f"    - {test}: {report.wasxfail}")
    lines = []
    for peer in PEERS.values():
        if peer not in counts:
            continue
        c = counts[peer]
        lines.append(
            f"{peer}: {c['passed']} cases behave the same, {c['xfailed']} expected "
            f"differences, {c['failed'] + c['error'] + c['xpassed']} failed, "
            f"{c['skipped']} skipped ({durations[peer]:.1f} s)"
        )
        lines += sorted(reasons[peer])
    return lines
