"""``grip-asgi stats``: live per-channel subscriber counts from Pushpin's stats sockets."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from ._sockets import SubscriberCounts, stats_address

__all__ = ("add_stats_command",)

_STATS_HELP = """\
Print live subscriber counts per channel from the stats socket of one or more
Pushpins (their stats_spec, e.g. tcp://127.0.0.1:5564 or
ipc:///var/run/pushpin/pushpin-stats). Each change is one line:
"CHANNEL: COUNT (ws N, stream N, response N)", summed over the Pushpins.

Pushpin sends a count when it changes and again every 45 s, so for the first
minute (stats_subscription_ttl) a channel whose count did not change may be
missing. Runs until Ctrl-C, or for --duration seconds.

Exit status: 0, or 1 when a stats socket does not connect (no Pushpin there).
"""


def add_stats_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stats`` to the ``grip-asgi`` command line."""
    stats = commands.add_parser(
        "stats",
        help="print live subscriber counts per channel",
        description=_STATS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("stats_uri", nargs="+", metavar="STATS_URI", help="a Pushpin stats_spec")
    stats.add_argument(
        "--channel", action="append", metavar="NAME", help="only this channel (repeatable)"
    )
    stats.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (default: never)"
    )
    stats.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="fail when a stats socket is not connected after this long (default: 10)",
    )
    stats.set_defaults(run=_stats, parser=stats)


def _line(channel: str, total: int, by_mode: dict[str, int]) -> str:
    kinds = ", ".join(f"{mode} {count}" for mode, count in sorted(by_mode.items()))
    return f"{channel}: {total}" + (f" ({kinds})" if kinds else "")


def _stats(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    for name, value in (("--duration", args.duration), ("--connect-timeout", args.connect_timeout)):
        if value is not None and not value > 0:
            parser.error(f"{name} must be more than 0")
    for uri in args.stats_uri:
        try:
            stats_address(uri)
        except ValueError as exc:
            parser.error(str(exc))
    wanted = set(args.channel or ())
    output = threading.Lock()

    def changed(channel: str, total: int) -> None:
        if wanted and channel not in wanted:
            return
        with output:
            print(_line(channel, total, counts.by_mode(channel)), flush=True)

    counts = SubscriberCounts(args.stats_uri, on_change=changed)
    with counts:
        try:
            counts.wait_connected(args.connect_timeout)
        except TimeoutError as exc:
            print(f"grip-asgi: error: {exc}", file=sys.stderr)
            return 1
        print(f"watching {', '.join(counts.addresses)}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait(args.duration)
    return 0
