"""Run the benchmarks and print one table: ``python -m benchmarks [--quick] [--only ...]``.

``benchmarks/run`` prepares the environment (the anchors are installed there only) and calls
this. Every benchmark times ours and its anchor in the same run, alternating, and the table
gives the medians and their ratio; the ratio in one run is the figure, not the absolute
numbers, which depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace

from ._harness import CLOCKS, Result, Settings, machine_summary, render_table

BENCHMARKS = ("codec", "asgi", "django", "publish", "zmq", "e2e", "history", "reliable_ws")


def _runners(
    settings: Settings, clients: int, quick: bool
) -> dict[str, Callable[[], list[Result]]]:
    # Imported when run, so that --only skips what another benchmark needs (Pushpin, Django).
    def codec() -> list[Result]:
        from . import codec

        return codec.run(settings)

    def asgi() -> list[Result]:
        from . import asgi

        return asgi.run(settings)

    def django() -> list[Result]:
        from . import django_stacks

        return django_stacks.run(settings)

    def publish() -> list[Result]:
        from . import publish

        return publish.run(settings)

    def zmq() -> list[Result]:
        from . import zmq_publish

        return zmq_publish.run(settings)

    def e2e() -> list[Result]:
        from . import e2e

        return e2e.run(clients, rounds=3 if quick else 7)

    def history() -> list[Result]:
        from . import history

        return history.run(settings)

    def reliable_ws() -> list[Result]:
        from . import reliable_ws

        workload = reliable_ws.Workload.quick() if quick else reliable_ws.Workload()
        return reliable_ws.run(settings, workload)

    return {
        "codec": codec,
        "asgi": asgi,
        "django": django,
        "publish": publish,
        "zmq": zmq,
        "e2e": e2e,
        "history": history,
        "reliable_ws": reliable_ws,
    }


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return names


def print_report(
    results: Sequence[Result],
    failures: Sequence[str],
    command: Sequence[str],
    elapsed: float,
    *,
    markdown: bool = False,
) -> None:
    """The command, the machine, the table, its notes and the targets missed."""
    print(f"$ {shlex.join(command)}   ({elapsed:.0f} s)")
    print(machine_summary())
    print()
    print(render_table(results, markdown=markdown))
    notes = [f"{r.benchmark} / {r.workload}: {r.note}" for r in results if r.note]
    if notes:
        print()
        print("\n".join(notes))
    missed = [r for r in results if r.met is False]
    print()
    print(f"{len(missed)} of {sum(r.target is not None for r in results)} targets missed")
    for failure in failures:
        print(failure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="grip-asgi against the libraries it replaces (gripcontrol, django-grip, "
        "django-eventstream).",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (3 rounds)")
    parser.add_argument(
        "--only",
        type=_names,
        default=list(BENCHMARKS),
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        metavar="N",
        help="WebSocket clients in the end-to-end benchmark (default 1000; 100 with --quick)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per comparison")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="what the in-process benchmarks time: the process's CPU time (default: steady when "
        "other work shares the machine), or wall time (publish, zmq, e2e, history and "
        "reliable_ws always use wall time)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    settings = Settings.quick(args.clock) if args.quick else Settings(clock=args.clock)
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
    clients = args.clients or (100 if args.quick else 1000)
    runners = _runners(settings, clients, args.quick)

    results: list[Result] = []
    failures: list[str] = []
    started = time.monotonic()
    for name in args.only:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results += runners[name]()
        except Exception:
            # One benchmark failing (Pushpin missing, a proxy crash) must not cost the others.
            traceback.print_exc()
            failures.append(f"{name}: FAILED, {traceback.format_exc().splitlines()[-1]}")
    elapsed = time.monotonic() - started
    command = ["python", "-m", "benchmarks", *(argv or sys.argv[1:])]
    print_report(results, failures, command, elapsed, markdown=args.markdown)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
