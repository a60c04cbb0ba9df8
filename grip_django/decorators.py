"""View helpers with django-grip's names: ``websocket_only``, ``set_hold_longpoll``,
``set_hold_stream``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from grip_asgi._context import GripContext
from grip_asgi._instruct import Channel, GripInstruct

from .middleware import plain_response, proxy_required

__all__ = ("set_hold_longpoll", "set_hold_stream", "websocket_only")

_P = ParamSpec("_P")
_Request = TypeVar("_Request", bound=HttpRequest)
_Channels = str | Channel | Iterable[str | Channel]


def _grip(request: HttpRequest) -> GripContext:
    ctx = getattr(request, "grip", None)
    if not isinstance(ctx, GripContext):
        raise RuntimeError(
            "request.grip is missing: add 'grip_django.middleware.GripMiddleware' to MIDDLEWARE"
        )
    return ctx


def _not_websocket(request: HttpRequest) -> HttpResponse | None:
    if _grip(request).ws is None:
        return plain_response(400, "Not a WebSocket-over-HTTP request")
    return None


@overload
def websocket_only(
    view: Callable[Concatenate[_Request, _P], Awaitable[HttpResponseBase | None]],
) -> Callable[Concatenate[_Request, _P], Coroutine[Any, Any, HttpResponseBase]]: ...


@overload
def websocket_only(
    view: Callable[Concatenate[_Request, _P], HttpResponseBase | None],
) -> Callable[Concatenate[_Request, _P], HttpResponseBase]: ...


def websocket_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a sync or async view that only answers WebSocket-over-HTTP requests.

    Other requests get ``400 Not a WebSocket-over-HTTP request``. A view that returns None
    gives an empty 200, which the middleware replaces with the events in ``request.grip.ws``.
    The view is exempt from CSRF checks: the proxy sends these POSTs, with no CSRF token.

    .. code-block:: python

        @websocket_only
        async def echo(request):
            ws = request.grip.ws
            if ws.is_opening():
                ws.accept()
            async for message in ws:
                ws.send(message)
    """
    wrapper: Callable[..., Any]
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(
            request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            refused = _not_websocket(request)
            if refused is not None:
                return refused
            return _or_empty(await view(request, *args, **kwargs))

        wrapper = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            refused = _not_websocket(request)
            if refused is not None:
                return refused
            return _or_empty(view(request, *args, **kwargs))

        wrapper = sync_wrapper
    # What csrf_exempt sets; csrf_exempt itself wraps async views correctly only from Django 5.
    wrapper.csrf_exempt = True  # type: ignore[union-attr]
    return wrapper


def _or_empty(response: HttpResponseBase | None) -> HttpResponseBase:
    return HttpResponse() if response is None else response


def _instruct(request: HttpRequest) -> GripInstruct:
    ctx = _grip(request)
    if not ctx.is_proxied and not proxy_required(request):
        # As in django-grip: instructions for a direct client are dropped, and the view's
        # own response goes out (with GRIP_PROXY_REQUIRED, start_instruct's error is a 501).
        return GripInstruct()
    return ctx.instruct or ctx.start_instruct()


def set_hold_longpoll(
    request: HttpRequest, channels: _Channels, timeout: int | None = None
) -> GripInstruct:
    """Hold the request as a long-poll on ``channels`` until a publish or ``timeout`` seconds.

    The view's response is what the client gets on timeout. On a request that did not come
    through the proxy the hold is dropped and the view's response goes out as it is, or,
    with ``GRIP_PROXY_REQUIRED``, the client gets 501 (as in django-grip). Returns the
    instruct, for more settings.
    """
    return _instruct(request).add_channels(channels).set_hold_longpoll(timeout)


def set_hold_stream(
    request: HttpRequest,
    channels: _Channels,
    keep_alive_data: str | bytes | None = None,
    keep_alive_timeout: int | None = None,
) -> GripInstruct:
    """Hold the request as a stream on ``channels``: each publish is appended to the response.

    ``keep_alive_data`` is sent whenever the stream was quiet for ``keep_alive_timeout``
    seconds (default 55). A request that did not come through the proxy is treated as by
    :func:`set_hold_longpoll`. Returns the instruct, for more settings.
    """
    instruct = _instruct(request).add_channels(channels).set_hold_stream()
    if keep_alive_data is not None:
        if keep_alive_timeout is None:
            instruct.set_keep_alive(keep_alive_data)
        else:
            instruct.set_keep_alive(keep_alive_data, keep_alive_timeout)
    return instruct
