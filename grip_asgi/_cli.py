"""The ``grip-asgi`` command line (also ``python -m grip_asgi``).

``grip-asgi publish [--grip-url URL] CHANNEL MESSAGE`` publishes one message and exits 0 once
the proxy took it, or 1 with a one-line ``grip-asgi: error: ...`` (2 for usage errors).

``grip-asgi check PUSHPIN_CONF [ROUTES]`` prints each risky Pushpin setting and exits 0, or 1
when one is an error (or a warning, with ``--strict``), or 2 for usage errors.

``grip-asgi stats STATS_URI...`` prints live subscriber counts per channel from Pushpin's
stats sockets (see ``grip_asgi.zmq``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from ._config import GripSettings
from ._errors import GripError
from ._publish import (
    Format,
    HttpResponseFormat,
    HttpStreamFormat,
    SyncPublisher,
    WebSocketMessageFormat,
    sse_event,
    text_formats,
)
from .pushpin_check import (
    DEFAULT_LIBDIR,
    FINDINGS,
    CheckOptions,
    Finding,
    Severity,
    check_pushpin,
    findings_json,
    load_pushpin,
)
from .zmq._cli import add_stats_command

__all__ = ("main",)

PROG = "grip-asgi"

_PUBLISH_HELP = """\
Publish MESSAGE to CHANNEL on the GRIP proxy (Pushpin's control port, e.g.
http://127.0.0.1:5561, or Fastly Fanout).

Without a format option the message goes to every kind of subscriber, as the
example app's publish route does: WebSocket clients get MESSAGE, held long-polls
get a response whose body is MESSAGE plus a newline, and HTTP streams get the SSE
event "data: MESSAGE" (an item carries one stream format; SSE clients read that one,
and it is readable on a plain stream too). --stream sends a plain line instead,
--sse an SSE event named by --event.
"""


_CHECK_HELP = """\
Check a Pushpin configuration, and its routes file, for settings that let clients
pose as the proxy, open the publish port to others, or drop, delay or repeat
messages. Each finding is one line: where, severity, id, setting (what it is now),
what happens, and the fix.

Exit status: 0 when no finding is an error, 1 when one is (or a warning, with
--strict), 2 for a usage error or a file that cannot be read.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Tools for apps behind a GRIP proxy (Pushpin, Fastly Fanout)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    publish = commands.add_parser(
        "publish",
        help="publish a message to a channel",
        description=_PUBLISH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish.set_defaults(run=_publish, parser=publish)
    publish.add_argument("channel", metavar="CHANNEL")
    publish.add_argument("message", metavar="MESSAGE", help="the message; - reads it from stdin")
    publish.add_argument(
        "--grip-url",
        action="append",
        metavar="URL",
        help="the proxy's GRIP URL; repeat it to publish to several (default: $GRIP_URL)",
    )
    publish.add_argument("--prefix", help="channel prefix (default: $GRIP_PREFIX)")
    formats = publish.add_argument_group("formats (any combination; none means all)")
    formats.add_argument("--ws", action="store_true", help="to WebSocket clients")
    stream = formats.add_mutually_exclusive_group()
    stream.add_argument("--stream", action="store_true", help="to HTTP streams, as a line")
    stream.add_argument("--sse", action="store_true", help="to HTTP streams, as an SSE event")
    formats.add_argument("--response", action="store_true", help="to held long-polls")
    formats.add_argument("--event", metavar="NAME", help="SSE event name (default: message)")
    publish.add_argument("--id", help="item id (the proxy drops a repeat)")
    publish.add_argument("--prev-id", metavar="ID", help="id of the channel's previous item")
    publish.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="to connect, and to wait for the answer (default: 5 and 10)",
    )
    publish.add_argument("-v", "--verbose", action="store_true", help="say so when published")
    _add_check_command(commands)
    add_stats_command(commands)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def _add_check_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="check a Pushpin config for risky settings",
        description=_CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.set_defaults(run=_check, parser=check)
    check.add_argument("config", metavar="PUSHPIN_CONF", help="e.g. /etc/pushpin/pushpin.conf")
    check.add_argument(
        "routes", metavar="ROUTES", nargs="?", help="the routes file (default: its routesfile)"
    )
    check.add_argument(
        "--grip-url",
        action="append",
        metavar="URL",
        help="the app's GRIP URL, to check sig_key and sig_iss against (default: $GRIP_URL)",
    )
    check.add_argument(
        "--audience", type=_count, metavar="N", help="subscribers of your largest channel"
    )
    check.add_argument(
        "--channels-per-connection", type=_count, metavar="N", help="most channels a client joins"
    )
    check.add_argument(
        "--websocket-path",
        action="append",
        default=[],
        metavar="PATH",
        help="a path WebSocket clients connect to, e.g. /chat (repeatable)",
    )
    check.add_argument(
        "--libdir",
        default=DEFAULT_LIBDIR,
        help=f"where Pushpin's internal.conf is (default {DEFAULT_LIBDIR})",
    )
    check.add_argument(
        "--ignore", action="append", default=[], metavar="ID", help="leave out a finding id"
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on a warning too")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")


def _publisher(settings: GripSettings, timeout: float | None) -> SyncPublisher:
    # The one place the CLI makes its client: tests replace it to use an httpx.MockTransport.
    if timeout is None:
        return SyncPublisher(settings)
    return SyncPublisher(settings, timeout=timeout)


def _formats(args: argparse.Namespace, message: str) -> list[Format]:
    if not (args.ws or args.stream or args.sse or args.response):
        return text_formats(message)
    formats: list[Format] = []
    if args.ws:
        formats.append(WebSocketMessageFormat(message))
    if args.sse:
        formats.append(sse_event(message, event=args.event or "message"))
    elif args.stream:
        formats.append(HttpStreamFormat(message + "\n"))
    if args.response:
        formats.append(HttpResponseFormat(body=message + "\n"))
    return formats


def _publish(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.event is not None and not args.sse:
        parser.error("--event needs --sse")
    urls = args.grip_url or [os.environ.get("GRIP_URL", "")]
    if not all(url.strip() for url in urls):
        parser.error("no GRIP URL: pass --grip-url or set GRIP_URL")
    prefix = os.environ.get("GRIP_PREFIX", "") if args.prefix is None else args.prefix
    # A message read from a pipe ends with the newline `echo` added; the formats add their own.
    message = sys.stdin.read().removesuffix("\n") if args.message == "-" else args.message

    settings = GripSettings.build(urls, prefix=prefix)
    with _publisher(settings, args.timeout) as publisher:
        publisher.publish(args.channel, _formats(args, message), id=args.id, prev_id=args.prev_id)
    if args.verbose:
        print(f"published to {len(settings.proxies)} proxy(ies)", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    for finding_id in args.ignore:
        if finding_id not in FINDINGS:
            parser.error(f"--ignore {finding_id}: no such finding (they are {', '.join(FINDINGS)})")
    for path in args.websocket_path:
        if not path.startswith("/"):
            parser.error(f"--websocket-path must start with /, got {path!r}")
    options = CheckOptions(
        audience=args.audience,
        channels_per_connection=args.channels_per_connection,
        websocket_paths=tuple(args.websocket_path),
        ignore=frozenset(args.ignore),
    )
    try:
        if args.grip_url:
            options = replace(options, grip=GripSettings.build(args.grip_url))
        elif os.environ.get("GRIP_URL", "").strip() or os.environ.get("GRIP_PROXIES", "").strip():
            options = replace(options, grip=GripSettings.from_env())
        config, routes, notes = load_pushpin(args.config, args.routes, libdir=args.libdir)
        findings = [n for n in notes if n.id not in options.ignore]
        findings += check_pushpin(config, routes, options)
    except OSError as exc:
        parser.error(f"cannot read {exc.filename or args.config}: {exc.strerror or exc}")
    except (GripError, ValueError) as exc:
        parser.error(" ".join(str(exc).split()))
    if args.json:
        print(findings_json(findings, args.config, None if routes is None else routes.file))
    else:
        _print_findings(findings)
    failing = {Severity.ERROR, Severity.WARNING} if args.strict else {Severity.ERROR}
    return 1 if any(finding.severity in failing for finding in findings) else 0


def _print_findings(findings: Sequence[Finding]) -> None:
    for finding in findings:
        print(finding.line_text())
    counts = [
        f"{count} {severity}{'s' if count != 1 and severity != Severity.INFO else ''}"
        for severity in Severity
        if (count := sum(finding.severity is severity for finding in findings))
    ]
    print(", ".join(counts) if counts else "no findings")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        code: int = args.run(args)
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 1
    except (GripError, ValueError) as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    return code
