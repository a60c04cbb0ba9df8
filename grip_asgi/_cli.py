"""The ``grip-asgi`` command line (also ``python -m grip_asgi``).

``grip-asgi publish [--grip-url URL] CHANNEL MESSAGE`` publishes one message and exits 0 once
the proxy took it, or 1 with a one-line ``grip-asgi: error: ...`` (2 for usage errors).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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
    return parser


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
