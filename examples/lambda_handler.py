"""The FastAPI example app on AWS Lambda, through Mangum: no Lambda-specific code in the app.

GRIP fits Lambda well: the proxy holds every connection, so the function only ever answers
short requests, and a WebSocket connection costs no running function between its messages.

Deploy it behind API Gateway, with the GRIP proxy in front::

    client --> Pushpin or Fastly Fanout --> API Gateway (REST or HTTP API) --> this function

1. Package this repository's ``examples`` with ``grip-asgi[fastapi]`` and ``mangum``, and set
   the function's handler to ``examples.lambda_handler.handler``.
2. Route every path to the function (REST API: a ``{proxy+}`` resource with ``ANY``; HTTP
   API: a ``$default`` route), with Lambda proxy integration.
3. On a REST API, add ``application/websocket-events`` (or ``*/*``) to the API's binary media
   types, so the WebSocket-over-HTTP bodies reach the function base64-encoded and its base64
   replies reach the proxy as bytes. An HTTP API needs nothing: it passes ``isBase64Encoded``
   through both ways.
4. Set ``GRIP_URL`` in the function's environment: the proxy's control URL (where publishes
   go) and what verifies its ``Grip-Sig``; for Pushpin, e.g.
   ``http://pushpin.internal:5561/?verify-iss=pushpin&verify-key=changeme``. For Fastly
   Fanout, ``https://api.fastly.com/service/SERVICE_ID?key=API_TOKEN&verify-iss=fastly:SERVICE_ID``
   and ``GRIP_VERIFY_KEY`` set to Fastly's public key (``grip_asgi.FASTLY_FANOUT_PUBLIC_KEY``).
5. Point the proxy at the API, with the API's own host name in ``Host`` (an HTTP API's
   ``$default`` stage or a custom domain, so that paths carry no stage name). In Pushpin's
   ``routes``, with ``API_HOST`` such as ``abc123.execute-api.eu-west-1.amazonaws.com``::

       *,as_host=API_HOST API_HOST:443,ssl,over_http

The app reads ``GRIP_URL`` when it handles its first request, so it comes from the
environment of the function, not of the build.
"""

from __future__ import annotations

from mangum import Mangum

from .fastapi_app import app

# No lifespan: each invocation is a plain request/response, and the publisher's connection
# pool lives as long as the function's execution environment.
handler = Mangum(app, lifespan="off")
