"""One log line per WebSocket-over-HTTP request the presence apps get: the time (UTC), the
connection and its events (``OPEN``, ``PONG``, ``DISCONNECT``, ... or ``keep-alive`` for an
empty request), so a failed test's server log shows what Pushpin sent and when."""

from __future__ import annotations

import sys
import time

from grip_asgi import WebSocketContext


def note_events(ws: WebSocketContext | None) -> None:
    if ws is None:
        return
    events = " ".join(event.type for event in ws.in_events) or "keep-alive"
    stamp = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    print(f"presence-app {stamp} {ws.connection_id}: {events}", file=sys.stderr, flush=True)
