"""faas-grip's README chat as an ASGI app: AWS Lambda runs it through Mangum (``handler``).

The function is faas-grip's, line for line; what changed is around it. The middleware
checks ``Grip-Sig`` and builds ``ws``, the function returns nothing (the middleware encodes
the reply), and a client's close is answered for it, with the client's own code.
"""

from __future__ import annotations

from mangum import Mangum
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from grip_asgi import GripMiddleware, WebSocketMessageFormat, get_grip_context, get_publisher


async def chat(request: Request) -> Response:
    ws = get_grip_context(request).ws
    if ws is None:
        return PlainTextResponse("Not a WebSocket-over-HTTP request\n", status_code=400)

    # if this is a new connection, accept it and subscribe it to a channel
    if ws.is_opening():
        ws.accept()
        ws.subscribe("room")

    # here we loop over any messages, until the client closes
    async for message in ws:
        if not isinstance(message, str):
            continue  # a chat of text: binary messages are ignored
        if message.startswith("/nick "):
            nick = message[6:]
            ws.meta["nick"] = nick
            ws.send(f"nickname set to [{nick}]")
        else:
            # send the message to all clients
            nick = ws.meta.get("nick") or "anonymous"
            text = f"{nick}: {message}"
            await get_publisher(request).publish("room", WebSocketMessageFormat(text))

    return Response()


# GripMiddleware reads GRIP_URL (and GRIP_PREFIX) from the function's environment.
app = Starlette(
    routes=[Route("/", chat, methods=["GET", "POST"])], middleware=[Middleware(GripMiddleware)]
)
handler = Mangum(app, lifespan="off")
