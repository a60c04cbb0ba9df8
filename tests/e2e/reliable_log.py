"""One log line per subscribe request of the reliable-delivery test apps, and its reader.

The apps (``reliableapp``, ``reliable_django``) print, for every SSE or long-poll request
they answer::

    reliable-app: kind=sse via=link status=200 replayed=3

``via`` says who asked and why: ``new`` (a first connect), ``resume`` (a client's reconnect
with ``Last-Event-ID`` or ``?last_event_id=``), ``link`` (Pushpin fetching a stream's next
link: a ``prev-id`` mismatch, a refresh or a page) or ``retry`` (Pushpin re-sending a held
long-poll with ``Grip-Last``). ``replayed`` counts the stored events the answer carried. The
test reads the server log back with :func:`read_app_log`, so it can show which recovery path
brought the missed messages back, from every worker process.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from grip_asgi import GripContext
from grip_asgi._recovery import LAST_EVENT_ID_PARAM, LINK_PARAM

PREFIX = "reliable-app:"
_LINE = re.compile(
    re.escape(PREFIX) + r" kind=(?P<kind>\w+) via=(?P<via>\w+) status=(?P<status>\d+)"
    r" replayed=(?P<replayed>\d+)"
)


def _via(grip: GripContext, query: Mapping[str, str], last_event_id: str | None) -> str:
    if grip.is_proxied and LINK_PARAM in query:
        return "link"
    if grip.is_proxied and grip.last:
        return "retry"
    if last_event_id or LAST_EVENT_ID_PARAM in query:
        return "resume"
    return "new"


def _replayed(kind: str, status: int, body: bytes) -> int:
    if status != 200:
        return 0
    if kind == "sse":  # every stored event the app writes has an id line; comments do not
        return sum(1 for line in body.split(b"\n") if line.startswith(b"id:"))
    events = json.loads(body)["events"]
    return sum(1 for event in events if "data" in event)


def note_request(
    kind: str,
    grip: GripContext,
    query: Mapping[str, str],
    last_event_id: str | None,
    status: int,
    body: bytes,
) -> None:
    """Print the log line of one answered subscribe request (``kind``: sse or poll)."""
    via = _via(grip, query, last_event_id)
    replayed = _replayed(kind, status, body)
    print(f"{PREFIX} kind={kind} via={via} status={status} replayed={replayed}", flush=True)


@dataclass
class AppLog:
    """What the app's log says about the subscribe requests, per ``(kind, via)``."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Requests that brought back at least one stored event.
    recoveries: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Stored events replayed.
    replayed: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Answers other than 200, by status.
    refused: Counter[int] = field(default_factory=Counter)

    def recovered_by(self, via: str) -> int:
        """Requests through ``via`` that replayed something, all kinds together."""
        return sum(count for (_, how), count in self.recoveries.items() if how == via)


def read_app_log(text: str) -> AppLog:
    log = AppLog()
    for match in _LINE.finditer(text):
        key = (match["kind"], match["via"])
        replayed = int(match["replayed"])
        log.requests[key] += 1
        log.replayed[key] += replayed
        if replayed:
            log.recoveries[key] += 1
        if match["status"] != "200":
            log.refused[int(match["status"])] += 1
    return log
