"""A gripcontrol app, in the style of gripcontrol's README (a plain ``http.server``), ported
to grip-asgi by changing its two imports, ``gripcontrol`` and ``pubcontrol``, and nothing else.

- ``GET /stream/<channel>``: an HTTP stream, held with ``Grip-*`` headers;
- ``GET /poll/<channel>``: a long-poll, held with an ``application/grip-instruct`` body;
- ``POST /echo``: the seed article's WebSocket echo, over WebSocket-over-HTTP;
- ``POST /room``: a WebSocket subscribed to ``room`` (the README's WebSocket-over-HTTP example);
- ``POST /publish/<channel>``: publishes the request body to every kind of subscriber.

Run: ``GRIP_URL=... python -m tests.e2e.ported.gripcontrol_app PORT``.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from struct import pack

from grip_asgi.compat.gripcontrol import (
    GripPubControl,
    HttpResponseFormat,
    HttpStreamFormat,
    Response,
    WebSocketContext,
    WebSocketEvent,
    WebSocketMessageFormat,
    create_grip_channel_header,
    create_hold_response,
    decode_websocket_events,
    encode_websocket_events,
    parse_grip_uri,
    validate_sig,
)
from grip_asgi.compat.pubcontrol import Item

config = parse_grip_uri(os.environ["GRIP_URL"])
grippub = GripPubControl(config)


def websocket_reply(ws):
    # What a framework around gripcontrol sends back: OPEN, the queued events, the close.
    events = []
    if ws.accepted:
        events.append(WebSocketEvent("OPEN"))
    events.extend(ws.out_events)
    if ws.closed:
        events.append(WebSocketEvent("CLOSE", pack(">H", ws.out_close_code)))
    return encode_websocket_events(events)


def echo(ws):
    # if this is a new connection, accept it
    if ws.is_opening():
        ws.accept()
    # here we loop over any messages
    while ws.can_recv():
        message = ws.recv()
        # if return value is None, then the connection is closed
        if message is None:
            ws.close()
            break
        # echo the message
        ws.send(message)


def room(ws):
    if ws.is_opening():
        ws.accept()
        ws.subscribe("room")
    while ws.can_recv():
        if ws.recv() is None:
            ws.close()
            break


class GripHandler(BaseHTTPRequestHandler):
    def proxied(self):
        # Validate the Grip-Sig header
        key = config.get("verify_key") or config.get("key")
        return validate_sig(self.headers.get("Grip-Sig"), key, config.get("verify_iss"))

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        kind, _, channel = self.path.strip("/").partition("/")
        if kind not in ("stream", "poll"):
            self.reply(200, b"ok\n")
        elif not self.proxied():
            self.reply(501, b"Not Implemented\n")
        elif kind == "stream":
            # Instruct the client to stream via the response headers
            headers = [
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", create_grip_channel_header(channel)),
            ]
            self.reply(200, b"[stream open]\n", headers)
        else:
            # Instruct the client to long poll via the response body
            instruct = create_hold_response(channel, Response(body="timed out\n"), 5)
            headers = [("Content-Type", "application/grip-instruct")]
            self.reply(200, instruct.encode("utf-8"), headers)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/publish/"):
            channel, data = self.path[len("/publish/") :], body.decode("utf-8")
            formats = [
                HttpStreamFormat(data + "\n"),
                HttpResponseFormat(body=data + "\n"),
                WebSocketMessageFormat(data),
            ]
            grippub.publish(channel, Item(formats), blocking=True)
            self.reply(200, b"published\n")
            return
        handler = {"/echo": echo, "/room": room}.get(self.path)
        if handler is None or not self.proxied():
            self.reply(400, b"Not a WebSocket-over-HTTP request\n")
            return
        ws = WebSocketContext(
            self.headers.get("Connection-Id"),
            {k[5:].lower(): v for k, v in self.headers.items() if k.lower().startswith("meta-")},
            decode_websocket_events(body),
        )
        handler(ws)
        headers = [("Content-Type", "application/websocket-events")]
        if ws.accepted:
            headers.append(("Sec-WebSocket-Extensions", "grip"))
        self.reply(200, websocket_reply(ws), headers)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), GripHandler)
    try:
        server.serve_forever()
    finally:
        server.server_close()
