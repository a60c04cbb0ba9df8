"""Interleaved timing, results and the one table every benchmark reports into.

Machines here are noisy, so a benchmark never compares figures taken at different times:
it times ours and the anchor in the same run, alternating batch by batch, and reports the
medians and their ratio (:func:`interleave`).
"""

from __future__ import annotations

import gc
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

__all__ = (
    "CLOCKS",
    "Batch",
    "Result",
    "Settings",
    "interleave",
    "machine_summary",
    "median_difference",
    "render_table",
)

#: Runs ``n`` operations; the harness times it.
Batch = Callable[[int], object]

#: The clocks a run can be timed with, in nanoseconds.
CLOCKS: dict[str, Callable[[], int]] = {
    # Wall time, what the issue asks for.
    "wall": time.perf_counter_ns,
    # CPU time of the whole process (every thread): steadier on a machine shared with others,
    # since time spent waiting for a core does not count. In-process benchmarks only.
    "cpu": time.process_time_ns,
}


@dataclass(frozen=True)
class Settings:
    """How to measure: rounds per comparison, the length of one batch, and the clock."""

    rounds: int = 11
    batch_seconds: float = 0.05
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")

    @classmethod
    def quick(cls, clock: str = "wall") -> Settings:
        return cls(rounds=3, batch_seconds=0.01, clock=clock)

    def time(self, batch: Batch, n: int) -> int:
        """Nanoseconds that ``batch(n)`` took, on this run's clock."""
        clock = CLOCKS[self.clock]
        start = clock()
        batch(n)
        return clock() - start


@dataclass(frozen=True)
class Result:
    """One row of the table: ours against the anchor on one workload.

    ``ratio`` is how many times better ours is (above 1: ours wins), whatever the unit:
    ours / anchor for a rate (``higher_is_better``), anchor / ours for a time or a size.
    ``target`` is the least ratio the issue asks for; None for a row that only informs.
    """

    benchmark: str
    workload: str
    ours: float
    anchor: float
    unit: str
    higher_is_better: bool = False
    target: float | None = None
    anchor_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        better, worse = (
            (self.ours, self.anchor)
            if self.higher_is_better
            else (
                self.anchor,
                self.ours,
            )
        )
        if worse <= 0:
            return math.inf if better > 0 else math.nan
        return better / worse

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target


def _calibrate(batch: Batch, settings: Settings) -> int:
    """The number of operations that takes about ``settings.batch_seconds`` (at least 1)."""
    seconds = settings.batch_seconds
    n = 1
    while True:
        elapsed = settings.time(batch, n)
        if elapsed >= seconds * 1e9 or n >= 1 << 24:
            break
        # Aim a bit past the goal; clamp the growth so one slow first call cannot mislead.
        n = max(n * 2, min(n * 100, int(n * seconds * 1.2e9 / max(elapsed, 1))))
    return max(1, int(n * seconds * 1e9 / max(elapsed, 1)))


def interleave(
    candidates: Mapping[str, Batch], settings: Settings, *, sizes: Mapping[str, int] | None = None
) -> dict[str, list[float]]:
    """Time each candidate in ``settings.rounds`` rounds, alternating, in ns per operation.

    Each candidate gets its own batch size, calibrated to ``settings.batch_seconds`` (or
    taken from ``sizes``), and one untimed warm-up batch. The garbage collector runs before
    every batch so no candidate pays for another's garbage.
    """
    sizes = dict(sizes or {})
    for name, batch in candidates.items():
        if name not in sizes:
            sizes[name] = _calibrate(batch, settings)
        batch(sizes[name])  # warm-up
    per_op: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates)
    for round_index in range(settings.rounds):
        # Alternate who goes first, so neither always runs on a cache the other warmed.
        for name in order if round_index % 2 == 0 else reversed(order):
            gc.collect()
            per_op[name].append(settings.time(candidates[name], sizes[name]) / sizes[name])
    return per_op


def median_difference(minuend: Sequence[float], subtrahend: Sequence[float]) -> float:
    """The median of the per-round differences: a paired figure, robust to drift."""
    return statistics.median(a - b for a, b in zip(minuend, subtrahend, strict=True))


# --- The table -------------------------------------------------------------------------------


def _figure(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def _ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value > 999:
        return ">999x"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _target(result: Result) -> str:
    if result.target is None:
        return "-"
    return f">= {result.target:.2g}x"


def _met(result: Result) -> str:
    met = result.met
    return "-" if met is None else "yes" if met else "NO"


_COLUMNS = ("benchmark", "workload", "ours", "anchor", "ratio", "target", "met?")


def _rows(results: Sequence[Result]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for result in results:
        anchor = _figure(result.anchor, result.unit)
        if result.anchor_name:
            anchor = f"{anchor} ({result.anchor_name})"
        rows.append(
            (
                result.benchmark,
                result.workload,
                _figure(result.ours, result.unit),
                anchor,
                _ratio(result.ratio),
                _target(result),
                _met(result),
            )
        )
    return rows


def render_table(results: Sequence[Result], *, markdown: bool = False) -> str:
    """The results as one table: plain text aligned in columns, or Markdown."""
    rows = _rows(results)
    if markdown:
        lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
        ]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    numeric = {2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(_COLUMNS), rule, *(line(row) for row in rows)])


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _pushpin_version() -> str:
    if shutil.which("pushpin") is None:
        return "not installed"
    try:
        out = subprocess.run(
            ["pushpin", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.split()[-1] if out.split() else "unknown"


def machine_summary() -> str:
    """One paragraph naming the machine and the versions a reader needs to compare runs."""
    packages = ", ".join(
        f"{name} {_version(name)}"
        for name in (
            "grip-asgi",
            "gripcontrol",
            "pubcontrol",
            "django-grip",
            "django-eventstream",
            "redis",
            "PyJWT",
            "starlette",
            "Django",
            "httpx",
            "uvicorn",
            "websockets",
        )
    )
    return (
        f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()} ({sys.implementation.name}); "
        f"Pushpin {_pushpin_version()}; {packages}"
    )
