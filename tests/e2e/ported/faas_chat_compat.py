"""faas-grip's README chat handler, ported by changing its imports: nothing else changed.

``tests/compat`` runs this very file on faas-grip too, with the imports turned back. The
README's code is untyped, and mypy rightly reports what the compat tests show: a binary
message (bytes) makes ``message.startswith("/nick ")`` fail.
"""

# mypy: disable-error-code="arg-type, assignment, str-bytes-safe"
# ruff: noqa: UP031

from __future__ import annotations

from grip_asgi.compat.faas_grip import lambda_get_websocket, publish
from grip_asgi.compat.gripcontrol import WebSocketMessageFormat


def handler(event, context):
    try:
        ws = lambda_get_websocket(event)
    except ValueError:
        return {
            "statusCode": 400,
            "headers": {"Content-Type": "text/plain"},
            "body": "Not a WebSocket-over-HTTP request\n",
        }

    # if this is a new connection, accept it and subscribe it to a channel
    if ws.is_opening():
        ws.accept()
        ws.subscribe("room")

    # here we loop over any messages
    while ws.can_recv():
        message = ws.recv()

        # if return value is None, then the connection is closed
        if message is None:
            ws.close()
            break

        if message.startswith("/nick "):
            nick = message[6:]
            ws.meta["nick"] = nick
            ws.send("nickname set to [%s]" % nick)
        else:
            # send the message to all clients
            nick = ws.meta.get("nick") or "anonymous"
            publish("room", WebSocketMessageFormat("%s: %s" % (nick, message)))

    return ws.to_response()
