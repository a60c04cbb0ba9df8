"""What the FastAPI and Django examples share, so they behave the same."""

from __future__ import annotations

import re
from pathlib import Path

#: The chat page both examples serve at ``/``.
CHAT_PAGE = Path(__file__).with_name("static").joinpath("chat.html")
#: Room names the chat accepts; others are refused when the WebSocket opens.
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
BAD_ROOM = "room names are 1-64 letters, digits, '-' or '_'"
#: How many of a room's latest messages a new chat member gets.
CHAT_HISTORY = 50
#: A chat message that makes the app close the connection (code 4000).
LEAVE = "/leave"
NOT_PROXIED = "Connect through the GRIP proxy (Pushpin or Fastly Fanout) to use this route.\n"
