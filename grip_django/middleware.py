"""GripMiddleware for Django: GRIP for sync and async views alike.

Add it near the top of ``MIDDLEWARE`` (and ``"grip_django"`` to ``INSTALLED_APPS``)::

    MIDDLEWARE = ["grip_django.middleware.GripMiddleware", ...]

It is natively sync and async: under ASGI it runs on the event loop with no thread hop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http.client import responses
from typing import overload

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from grip_asgi import metrics as _metrics
from grip_asgi._context import (
    PROXY_REQUIRED_MESSAGE,
    GripContext,
    GripProcessor,
    RequestHead,
    body_too_large,
    close_after_handler_error,
    meta_name,
    parse_content_length,
    websocket_reply_replaces,
)
from grip_asgi._errors import GripProtocolError, InstructNotAvailableError
from grip_asgi._websocket import WebSocketContext

from .conf import grip_conf

__all__ = ("GripHttpRequest", "GripMiddleware")

logger = logging.getLogger("grip_django.middleware")


class GripHttpRequest(HttpRequest):
    """The request type views see behind :class:`GripMiddleware`, for type checkers.

    Annotate views with it to have ``request.grip`` typed::

        def stream(request: GripHttpRequest, channel: str) -> HttpResponse:
            request.grip.start_instruct().add_channel(channel).set_hold_stream()
            ...
    """

    #: What GRIP knows about the request; see :class:`~grip_asgi.GripContext`.
    grip: GripContext
    #: django-grip's name for ``request.grip.ws``.
    wscontext: WebSocketContext | None


class GripMiddleware:
    """Gives every request ``request.grip`` and turns view responses into GRIP responses.

    - A request signed by the configured proxy gets a proxied :class:`~grip_asgi.GripContext`;
      after the view, the instruct it started becomes ``Grip-*`` headers (a 304 becomes a 200
      with ``Grip-Status: 304``). Streaming responses keep their body untouched.
    - A WebSocket-over-HTTP request gets ``request.grip.ws`` (also ``request.wscontext``); a
      200 or 204 from the view is replaced by the events the view queued. A malformed body
      gets 400, an oversized one 413.
    - With ``GRIP_PROXY_REQUIRED``, a view that gives GRIP instructions to a request that did
      not come through the proxy gets 501 (django-grip's meaning); with ``GRIP_PROXY_ONLY``,
      every such request does.

    The settings are described in :mod:`grip_django.conf`.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Django then awaits __call__, which hands over to __acall__.
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        processor = grip_conf.processor
        ctx = _process_request(processor, request)
        if isinstance(ctx, HttpResponseBase):
            return ctx
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return _process_response(processor, ctx, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        processor = grip_conf.processor
        ctx = _process_request(processor, request)
        if isinstance(ctx, HttpResponseBase):
            return ctx
        response = self.get_response(request)
        assert not isinstance(response, HttpResponseBase)
        return _process_response(processor, ctx, await response)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A bad client message a view found in ``ws.recv()`` (a TEXT that is not UTF-8) is
        the client's fault: answer 4xx, as for a malformed body, rather than a 500. With
        ``GRIP_PROXY_REQUIRED``, GRIP instructions for a direct request answer 501."""
        ctx = getattr(request, "grip", None)
        if isinstance(exception, GripProtocolError) and ctx is not None and ctx.ws is not None:
            logger.debug("grip: rejecting request: %s", exception)
            return plain_response(exception.status_hint, str(exception))
        if isinstance(exception, InstructNotAvailableError) and proxy_required(request):
            logger.debug("grip: 501: a view gave GRIP instructions to a direct request")
            return plain_response(501, PROXY_REQUIRED_MESSAGE)
        return None


def proxy_required(request: HttpRequest) -> bool:
    """GRIP instructions for this request answer 501: it is direct and
    ``GRIP_PROXY_REQUIRED`` is set."""
    ctx = getattr(request, "grip", None)
    return (
        isinstance(ctx, GripContext)
        and not ctx.is_proxied
        and grip_conf.processor.settings.proxy_required
    )


def plain_response(status: int, text: str) -> HttpResponse:
    """A one-line text/plain reply, as the ASGI middleware sends for 4xx and 501."""
    body = (text + "\n").encode("utf-8")
    response = HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
    response["Content-Length"] = str(len(body))
    return response


def _process_request(processor: GripProcessor, request: HttpRequest) -> GripContext | HttpResponse:
    """Set ``request.grip``; return the context, or the reply when the request is refused."""
    # The common case, no proxy involved, needs nothing verified or rewritten.
    request.grip = ctx = processor.unproxied  # type: ignore[attr-defined]
    request.wscontext = None  # type: ignore[attr-defined]
    head = _read_head(request) if "HTTP_GRIP_SIG" in request.META else None
    try:
        if head is not None:
            request.grip = ctx = processor.inspect(head)  # type: ignore[attr-defined]
        if processor.settings.proxy_only and not ctx.is_proxied:
            if _metrics._recorder is not None:
                _metrics._recorder.request(ctx, refused=True)
            return plain_response(501, PROXY_REQUIRED_MESSAGE)
        if head is not None and processor.wants_websocket_body(ctx, head):
            processor.attach_websocket(ctx, head, _read_body(request))
            request.wscontext = ctx.ws  # type: ignore[attr-defined]
    except GripProtocolError as exc:
        logger.debug("grip: rejecting request: %s", exc)
        if _metrics._recorder is not None:
            _metrics._recorder.rejected(exc)
        return plain_response(exc.status_hint, str(exc))
    if _metrics._recorder is not None:
        _metrics._recorder.request(ctx)
    return ctx


def _read_head(request: HttpRequest) -> RequestHead:
    meta = request.META
    length = meta.get("CONTENT_LENGTH")
    last = meta.get("HTTP_GRIP_LAST")
    feature = meta.get("HTTP_GRIP_FEATURE")
    head = RequestHead(  # positionally, as the ASGI adapter does (see RequestHead)
        request.method or "",
        # Servers join repeated headers with commas, and a JWT never contains one.
        meta["HTTP_GRIP_SIG"].split(","),
        meta.get("CONTENT_TYPE"),
        _utf8(meta.get("HTTP_CONNECTION_ID")),
        None if length is None else parse_content_length(length),
        {},  # Meta-*: read below, where it matters
        () if last is None else (_utf8(last),),
        () if feature is None else (_utf8(feature),),
    )
    if head.is_websocket_events:
        # Meta-User-Name arrives as HTTP_META_USER_NAME.
        head.meta = {
            meta_name(name[10:]): _utf8(value)
            for name, value in meta.items()
            if name[:10] == "HTTP_META_"
        }
    return head


@overload
def _utf8(value: str) -> str: ...
@overload
def _utf8(value: None) -> None: ...
def _utf8(value: str | None) -> str | None:
    """A header value as Pushpin sent it: servers give us its bytes as latin-1 text."""
    if value is None or value.isascii():  # isascii() is a flag check: most values are
        return value
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


def _header_value(value: str) -> str:
    """A header value written as UTF-8 bytes: Django sends str values as latin-1."""
    return value.encode("utf-8").decode("latin-1")


def _read_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        # Django's own limit is lower than ours (spec: answer 413, never a 400 or a 500).
        raise body_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) from None


def _process_response(
    processor: GripProcessor, ctx: GripContext, response: HttpResponseBase
) -> HttpResponseBase:
    if ctx.ws is not None:
        # Django has already logged a view's exception and turned it into this 500.
        if websocket_reply_replaces(ctx, response.status_code) or (
            response.status_code >= 500 and close_after_handler_error(ctx)
        ):
            _replace_with_websocket_reply(ctx.ws, response)
        return response
    plan = processor.instruct_response(ctx, response.status_code)
    if plan is not None:
        _set_status(response, plan.status)
        if plan.drop_content_length:
            del response["Content-Length"]
        for name, value in plan.headers:
            response[name] = _header_value(value)
    return response


def _replace_with_websocket_reply(ws: WebSocketContext, response: HttpResponseBase) -> None:
    """Make ``response`` carry the events the view queued, in place (cookies and closers kept).

    A streaming body is swapped without being read (django-grip's defect D5).
    """
    status, ws_headers, body = ws.to_response()
    if isinstance(response, StreamingHttpResponse):
        # Keep the iterator kind the server expects, or Django warns and buffers.
        response.streaming_content = _one_chunk(body) if response.is_async else (body,)
    elif isinstance(response, HttpResponse):
        response.content = body
    else:
        raise TypeError(f"cannot put a WebSocket-over-HTTP reply in a {type(response).__name__}")
    _set_status(response, status)
    for name, value in ws_headers:  # Content-Type among them
        response[name] = _header_value(value)
    response["Content-Length"] = str(len(body))
    # The events reply is plain bytes, whatever encoding the view's own body had.
    del response["Content-Encoding"]


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _set_status(response: HttpResponseBase, status: int) -> None:
    if status != response.status_code:
        response.status_code = status
        # The view's reason phrase was for its own status; Django's default fits the new one.
        response.reason_phrase = responses.get(status, "Unknown Status Code")
