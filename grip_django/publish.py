"""Publishing from Django views, management commands and workers.

``publish()`` is for sync code, ``apublish()`` for async code; both publish to the proxies of
the GRIP settings and raise :class:`~grip_asgi.PublishError` when a proxy refuses. The
publishers behind them are created on first use and reused: one :class:`~grip_asgi.SyncPublisher`
per process, and one :class:`~grip_asgi.Publisher` per event loop, because an
``httpx.AsyncClient`` belongs to the loop it first ran on (Django's ASGI handler runs every
request on one loop; under WSGI each async view gets a loop of its own). A change to a
``GRIP_*`` setting replaces them.

Which call is safe where: a sync view calls ``publish()``; an async view under ASGI awaits
``apublish()`` or queues with ``get_async_publisher().publish_nowait()``; an async view under
WSGI awaits ``apublish()`` only, because its loop closes when the view returns, and
``publish_nowait()`` refuses such a loop (RuntimeError) rather than lose the items.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping, Sequence

from grip_asgi._publish import Format, Item, Publisher, SyncPublisher
from grip_asgi.history import StoredEvent

from .conf import grip_conf

__all__ = (
    "apublish",
    "apublish_reliable",
    "get_async_publisher",
    "get_publisher",
    "publish",
    "publish_reliable",
    "reset_publishers",
)


class _Publishers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync: SyncPublisher | None = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Publisher] = (
            weakref.WeakKeyDictionary()
        )
        # Strong references to the close tasks of replaced publishers until they finish.
        self._closing: set[asyncio.Task[None]] = set()

    def sync(self) -> SyncPublisher:
        with self._lock:
            if self._sync is None:
                self._sync = SyncPublisher(
                    grip_conf.settings, history=grip_conf.history, presence=grip_conf.presence
                )
            return self._sync

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> Publisher:
        with self._lock:
            publisher = self._by_loop.get(loop)
            if publisher is None:
                publisher = Publisher(
                    grip_conf.settings, history=grip_conf.history, presence=grip_conf.presence
                )
                self._by_loop[loop] = publisher
            return publisher

    def reset(self) -> None:
        with self._lock:
            sync, self._sync = self._sync, None
            by_loop = list(self._by_loop.items())
            self._by_loop.clear()
        if sync is not None:
            sync.close()
        for loop, publisher in by_loop:
            self._close_on(loop, publisher)

    def _close_on(self, loop: asyncio.AbstractEventLoop, publisher: Publisher) -> None:
        # Its client can only be closed on its own loop, and only while that loop runs.
        if not loop.is_running():
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is current:
            task = loop.create_task(publisher.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(publisher.aclose(), loop)


_publishers = _Publishers()


def get_publisher() -> SyncPublisher:
    """The process's :class:`~grip_asgi.SyncPublisher` for the GRIP settings."""
    return _publishers.sync()


def get_async_publisher() -> Publisher:
    """The running event loop's :class:`~grip_asgi.Publisher` for the GRIP settings.

    Raises RuntimeError when no event loop is running (use :func:`get_publisher` there). Its
    ``publish_nowait()`` needs a loop that outlives the view: Django under ASGI; under WSGI it
    raises RuntimeError, and ``await apublish()`` is the call to use.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "get_async_publisher() and apublish() need a running event loop; "
            "use get_publisher() and publish() in sync code"
        ) from None
    return _publishers.for_loop(loop)


def publish(
    channel: str,
    formats: Format | Sequence[Format] | Item,
    *,
    id: str | None = None,
    prev_id: str | None = None,
    meta: Mapping[str, str] | None = None,
    no_seq: bool = False,
) -> None:
    """Publish an item to ``channel`` on every configured proxy, and wait until it is taken.

    ``formats`` is an :class:`~grip_asgi.Item`, or one or more formats (e.g.
    :class:`~grip_asgi.WebSocketMessageFormat`); ``id``, ``prev_id``, ``meta`` and ``no_seq``
    are described on :class:`~grip_asgi.Item`. The channel gets the ``GRIP_PREFIX``.
    Raises :class:`~grip_asgi.PublishError` if a proxy did not take it.
    """
    get_publisher().publish(channel, formats, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq)


async def apublish(
    channel: str,
    formats: Format | Sequence[Format] | Item,
    *,
    id: str | None = None,
    prev_id: str | None = None,
    meta: Mapping[str, str] | None = None,
    no_seq: bool = False,
) -> None:
    """The async twin of :func:`publish`, for async views."""
    await get_async_publisher().publish(
        channel, formats, id=id, prev_id=prev_id, meta=meta, no_seq=no_seq
    )


def publish_reliable(
    channel: str, data: str, *, event: str | None = None, refresh: bool = False
) -> StoredEvent:
    """Publish ``data`` to reliable channel ``channel``: appended to ``GRIP_HISTORY_URL``'s
    history, then published, so the subscribers of :func:`~grip_django.sse_response`,
    :func:`~grip_django.longpoll_response` and :func:`~grip_django.websocket_events` get it
    exactly once and in order, whatever they miss (``refresh``: see
    :meth:`grip_asgi.Publisher.publish_reliable`). Raises :class:`~grip_asgi.PublishError`
    if a proxy did not take it (it stays stored: subscribers recover it). Returns the
    stored event."""
    return get_publisher().publish_reliable(channel, data, event=event, refresh=refresh)


async def apublish_reliable(
    channel: str, data: str, *, event: str | None = None, refresh: bool = False
) -> StoredEvent:
    """The async twin of :func:`publish_reliable`, for async views."""
    publisher = get_async_publisher()
    return await publisher.publish_reliable(channel, data, event=event, refresh=refresh)


def reset_publishers() -> None:
    """Close the publishers; the next publish creates new ones from the current settings.

    An async publisher is closed on its event loop if that loop is still running.
    """
    _publishers.reset()
