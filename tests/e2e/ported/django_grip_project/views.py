"""django-grip's README examples, with the object of the long-poll example made concrete.

Ported from django-grip by changing two imports::

    from gripcontrol import ...   ->  from grip_asgi.compat.gripcontrol import ...
    from django_grip import ...   ->  from grip_asgi.compat.django_grip import ...
"""

from __future__ import annotations

import threading

from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseNotModified
from django.views.decorators.csrf import csrf_exempt

from grip_asgi.compat.django_grip import (
    publish,
    set_hold_longpoll,
    set_hold_stream,
    websocket_only,
)
from grip_asgi.compat.gripcontrol import (
    HttpResponseFormat,
    HttpStreamFormat,
    WebSocketMessageFormat,
)


def index(request):
    return HttpResponse("ok\n")


# --- HTTP streaming (README) ---


@csrf_exempt
def stream(request):
    if request.method == "GET":
        # if the request didn't come through a GRIP proxy, throw 501
        if not request.grip_proxied:
            return HttpResponse("Not Implemented\n", status=501)

        # subscribe every incoming request to a channel in stream mode
        resp = HttpResponse("[stream open]\n", content_type="text/plain")
        set_hold_stream(request, "test")
        return resp
    elif request.method == "POST":
        # publish data to subscribers
        data = request.POST["data"]
        publish("test", HttpStreamFormat(data + "\n"))
        return HttpResponse("Ok\n")
    else:
        return HttpResponseNotAllowed(["GET", "POST"])


# --- HTTP long-polling (README): the object is a version counter in this process ---

_lock = threading.Lock()
_version = 1


def _object():
    with _lock:
        return f"object v{_version}\n", f'"v{_version}"'


@csrf_exempt
def longpoll(request):
    global _version
    if request.method == "GET":
        # get object and its etag
        body, etag = _object()

        # if object is unchanged, long-poll, else return object
        inm = request.META.get("HTTP_IF_NONE_MATCH")
        if inm == etag:
            # subscribe request to channel, return status 304 after timeout
            resp = HttpResponseNotModified()
            set_hold_longpoll(request, "test-poll")
        else:
            resp = HttpResponse(body)  # type: ignore[assignment]

        resp["ETag"] = etag
        return resp
    elif request.method == "POST":
        # update object based on request, and get resulting object and its etag
        with _lock:
            _version += 1
        body, etag = _object()

        # publish data to subscribers (the README passes the body as the first argument,
        #   which is the status code: gripcontrol sent the body as the code)
        headers = {"ETag": etag}
        publish("test-poll", HttpResponseFormat(body=body, headers=headers))
        return HttpResponse("Ok\n")
    else:
        return HttpResponseNotAllowed(["GET", "POST"])


# --- WebSockets (README): an echo service with a broadcast endpoint ---


# decorator means reject non-websocket-related requests. it also means we
#   don't need to return an HttpResponse object. the middleware will take care
#   of that for us.
@websocket_only
def echo(request):
    # since we used the decorator, this will always be a non-None value
    ws = request.wscontext

    # if this is a new connection, accept it and subscribe it to a channel
    if ws.is_opening():
        ws.accept()
        ws.subscribe("test")

    # here we loop over any messages
    while ws.can_recv():
        message = ws.recv()

        # if return value is None, then the connection is closed
        if message is None:
            ws.close()
            break

        # echo the message
        ws.send(message)


@csrf_exempt
def broadcast(request):
    if request.method == "POST":
        # publish data to all clients that are connected to the echo endpoint
        data = request.POST["data"]
        publish("test", WebSocketMessageFormat(data))
        return HttpResponse("Ok\n")
    else:
        return HttpResponseNotAllowed(["POST"])
