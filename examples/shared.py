"""What the FastAPI, Starlette and Django examples share, so they behave the same."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from grip_asgi import PublishError
from grip_asgi.events import SocketReply

logger = logging.getLogger(__name__)

#: The chat page the examples serve at ``/``.
CHAT_PAGE = Path(__file__).with_name("static").joinpath("chat.html")
#: The browser client the chat page loads from ``/static/grip-client.js``: the installed
#: package's own copy, so the page always speaks the server's protocol.
CLIENT_SCRIPT = files("grip_asgi").joinpath("static/grip-client.js")
CLIENT_SCRIPT_PATH = "/static/grip-client.js"
JAVASCRIPT = "text/javascript; charset=utf-8"
#: Room names the chat accepts; others are refused when the WebSocket opens.
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
BAD_ROOM = "room names are 1-64 letters, digits, '-' or '_'"
#: The longest name a chat member may give (``?name=``), in characters.
MAX_NAME = 32
#: How many of a room's latest messages a new chat member gets.
CHAT_HISTORY = 50
#: A chat message that makes the app close the connection (code 4000).
LEAVE = "/leave"
NOT_PROXIED = "Connect through the GRIP proxy (Pushpin or Fastly Fanout) to use this route.\n"


def chat_refusal(room: str, name: str | None) -> str | None:
    """Why a chat connection to ``room`` as ``name`` (``?name=``) is refused, or None."""
    if not ROOM_NAME.fullmatch(room):
        return BAD_ROOM
    if not name:
        return "a name is needed: connect to /chat/<room>?name=<your name>"
    if len(name) > MAX_NAME:
        return f"the name is {len(name)} characters long; the limit is {MAX_NAME}"
    if not name.isprintable():
        return "the name has a character that cannot be shown (a control or format character)"
    if not name.strip():
        return "the name is only white space"
    return None


async def relay_chat(
    socket: SocketReply,
    room: str,
    publish_reliable: Callable[[str, str], Awaitable[object]],
    *,
    user: str | None,
) -> None:
    """Publish a chat request's messages to every member of ``room``, in order.

    Each one goes to the room's reliable channel: its history (what a new member gets, and
    ``/events/<room>``) and every member's connection, as the reliable protocol's envelope.
    Its data is JSON that says who sent it, ``{"user": "ann", "text": "hello"}``: ``user`` is
    the sender's name (``?name=``, which the proxy sends with every request of the
    connection) and ``text`` the message as sent, so a text that looks like JSON stays text.
    ``/leave`` closes the sender's connection with code 4000.
    """
    for message in socket.messages:
        if message == LEAVE:
            socket.ws.close(4000, "left the room")
            break
        if not isinstance(message, str):
            continue  # the chat is text only
        try:
            # Not ASCII-escaped: a message in any script stays as short as its UTF-8.
            data = json.dumps({"user": user, "text": message}, ensure_ascii=False)
            await publish_reliable(room, data)
        except PublishError as exc:
            # Stored, so the members repair the gap from the history; a proxy that is down
            # must not cost this client its connection (the 500 would).
            logger.warning("chat: publishing to %s failed: %s", room, exc)
