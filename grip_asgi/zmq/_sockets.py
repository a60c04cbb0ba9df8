"""The ZeroMQ sockets: the publishers' PUSH and PUB senders, and the stats watcher.

pyzmq is imported when a socket is first needed, so ``grip_asgi.zmq`` imports without it
(``pip install "grip-asgi[zmq]"`` brings it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._errors import (
    PublishConnectionError,
    PublishError,
    PublishReplyError,
    PublishTimeoutError,
)
from ._protocol import (
    DEFAULT_SUBSCRIPTION_TTL,
    StatsPacketError,
    SubscriberTable,
    ZmqEndpoint,
    ZrpcError,
    ZrpcResponse,
    parse_subscription,
    parse_zrpc_response,
    zrpc_batch,
)

if TYPE_CHECKING:
    import zmq

    from .._publish import PublishRequest

__all__ = (
    "DEFAULT_SEND_TIMEOUT",
    "Sender",
    "SubscriberCounts",
    "ZmqCommandSender",
    "ZmqSendTimeoutError",
    "ZmqSender",
    "make_sender",
    "send_request",
    "send_request_blocking",
    "stats_address",
)

logger = logging.getLogger("grip_asgi.zmq")

#: How long a ZeroMQ send waits for room when the publisher's timeout sets no write timeout.
DEFAULT_SEND_TIMEOUT = 10.0
# While a socket's queue is full, the asyncio sender checks for room this often (seconds).
_FIRST_WAIT = 0.001
_LONGEST_WAIT = 0.05
_UNCONFIRMED = "a ZeroMQ send confirms nothing: Pushpin may still drop what was sent"


def _import_zmq() -> ModuleType:
    try:
        import zmq
    except ImportError:
        raise ImportError(
            'ZeroMQ needs pyzmq: pip install "grip-asgi[zmq]" (or pip install pyzmq)'
        ) from None
    return zmq


class ZmqSendTimeoutError(PublishTimeoutError):
    """A ZeroMQ socket had no room for an item within the timeout, so it was not sent.

    A PUSH socket queues only on a live connection, so this also means no Pushpin is
    connected; a PUB socket waits while a subscribing Pushpin's queue is full instead of
    dropping. ``delivered_items`` are the items queued before it: queued, not confirmed.
    ``failed_items`` were not sent, and ``retry(error)`` sends them again.
    """


# --- Publishing ------------------------------------------------------------------------------


class ZmqSender:
    """The socket one publisher sends one ZeroMQ proxy's items on.

    A PUSH socket connects to Pushpin's ``push_in_spec`` and queues items only once the
    connection is up (``ZMQ_IMMEDIATE``). A PUB socket (an XPUB, for ``ZMQ_XPUB_NODROP``)
    binds, or connects, for Pushpins to subscribe; with no room in a subscriber's queue it
    waits instead of dropping. Either way a send that finds no room within ``timeout``
    seconds stops. The socket opens at the first send, again after a fork, and is safe to
    share between threads.
    """

    def __init__(self, endpoint: ZmqEndpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._lock = threading.Lock()
        self._socket: zmq.Socket[bytes] | None = None
        self._pid = 0

    def _open(self) -> zmq.Socket[bytes]:
        # Called with the lock held.
        if self._socket is not None and self._pid == os.getpid():
            return self._socket
        lib = _import_zmq()
        endpoint = self.endpoint
        sock: zmq.Socket[bytes]
        if endpoint.mode == "push":
            sock = lib.Context.instance().socket(lib.PUSH)
            sock.setsockopt(lib.IMMEDIATE, 1)
        else:
            sock = lib.Context.instance().socket(lib.XPUB)
            sock.setsockopt(lib.XPUB_NODROP, 1)
        milliseconds = max(1, round(self.timeout * 1000))
        sock.setsockopt(lib.SNDTIMEO, milliseconds)
        # Closing waits this long for queued items to leave, never for ever.
        sock.setsockopt(lib.LINGER, milliseconds)
        try:
            if endpoint.bind:
                sock.bind(endpoint.address)
            else:
                sock.connect(endpoint.address)
        except lib.ZMQError as exc:
            sock.close(linger=0)
            doing = "bind" if endpoint.bind else "connect to"
            raise _OpenError(f"could not {doing} {endpoint.address}: {exc}") from exc
        self._socket, self._pid = sock, os.getpid()
        return sock

    def _discard_subscriptions(self, sock: zmq.Socket[bytes]) -> None:
        # An XPUB socket receives the topics its subscribers (un)subscribe; unread, they
        # would pile up in it.
        zmq = _import_zmq()
        while True:
            try:
                sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def send_blocking(self, messages: Sequence[tuple[bytes, ...]]) -> int:
        """Send ``messages`` in order, each waiting up to the timeout for room; how many
        were sent (fewer than all when one found no room)."""
        zmq = _import_zmq()
        with self._lock:
            sock = self._open()
            sent = 0
            try:
                if self.endpoint.mode == "push":
                    for (frame,) in messages:
                        sock.send(frame)
                        sent += 1
                else:
                    self._discard_subscriptions(sock)
                    for topic, frame in messages:
                        sock.send(topic, zmq.SNDMORE)
                        sock.send(frame)
                        sent += 1
            except zmq.Again:
                pass
            return sent

    def _send_now(self, messages: Sequence[tuple[bytes, ...]], start: int) -> int:
        """Send from ``start`` until a message finds no room; the index reached."""
        zmq = _import_zmq()
        with self._lock:
            sock = self._open()
            sent = start
            try:
                if self.endpoint.mode == "push":
                    for (frame,) in messages[start:] if start else messages:
                        sock.send(frame, zmq.NOBLOCK)
                        sent += 1
                else:
                    self._discard_subscriptions(sock)
                    for topic, frame in messages[start:]:
                        # Once its first frame is queued, a message's others always are.
                        sock.send(topic, zmq.NOBLOCK | zmq.SNDMORE)
                        sock.send(frame, zmq.NOBLOCK)
                        sent += 1
            except zmq.Again:
                pass
            return sent

    async def send(self, messages: Sequence[tuple[bytes, ...]]) -> int:
        """The asyncio :meth:`send_blocking`: while a message finds no room, check again every
        few milliseconds, up to the timeout, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        sent = self._send_now(messages, 0)
        deadline = None
        wait = _FIRST_WAIT
        while sent < len(messages):
            now = loop.time()
            if deadline is None:
                deadline = now + self.timeout
            elif now >= deadline:
                break
            await asyncio.sleep(min(wait, deadline - now))
            wait = min(wait * 2, _LONGEST_WAIT)
            progress = self._send_now(messages, sent)
            if progress > sent:
                sent, deadline, wait = progress, None, _FIRST_WAIT
        return sent

    def close(self) -> None:
        """Close the socket; queued items get up to the timeout to leave."""
        with self._lock:
            sock, self._socket = self._socket, None
            if sock is not None and self._pid == os.getpid():
                sock.close()


class _OpenError(Exception):
    """The socket could not bind or connect."""


class _NotSent(Exception):
    """A command request found no room (no Pushpin connected) within the timeout."""


class _NoAnswer(Exception):
    """A command request was sent, and no answer came within the timeout."""


class ZmqCommandSender:
    """Publishes to one Pushpin's command socket (``command_spec``): ZRPC ``publish``
    requests on a DEALER socket, each waiting for Pushpin's answer, which comes once it has
    read and accepted the items (as ``Published`` does over HTTP). One request is under way
    at a time per publisher; an answer to a request that timed out is recognised by its id
    and skipped.
    """

    def __init__(self, endpoint: ZmqEndpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._socket: zmq.Socket[bytes] | None = None
        self._async_socket: Any = None  # a zmq.asyncio.Socket, for the Publisher
        self._async_lock: asyncio.Lock | None = None
        self._pid = 0

    def _configure(self, sock: Any) -> None:
        lib = _import_zmq()
        milliseconds = max(1, round(self.timeout * 1000))
        sock.setsockopt(lib.IMMEDIATE, 1)  # no Pushpin connected: a request waits, then fails
        sock.setsockopt(lib.SNDTIMEO, milliseconds)
        sock.setsockopt(lib.LINGER, 0)  # an unanswered request is reported, not kept
        try:
            sock.connect(self.endpoint.address)
        except lib.ZMQError as exc:
            sock.close()
            raise _OpenError(f"could not connect to {self.endpoint.address}: {exc}") from exc

    def _request_id(self) -> bytes:
        return b"%d-%d" % (os.getpid(), next(self._ids))

    def request_blocking(self, items: Sequence[bytes]) -> ZrpcResponse:
        """Send one ``publish`` request and wait for its answer."""
        lib = _import_zmq()
        with self._lock:
            if self._socket is None or self._pid != os.getpid():
                sock = lib.Context.instance().socket(lib.DEALER)
                self._configure(sock)
                self._socket, self._pid = sock, os.getpid()
            sock = self._socket
            request_id = self._request_id()
            try:
                sock.send_multipart([b"", zrpc_batch(request_id, items)])
            except lib.Again:
                raise _NotSent from None
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sock.poll(max(1, round(left * 1000))):
                    raise _NoAnswer
                reply = _reply(sock.recv_multipart())
                if reply.id == request_id:
                    return reply

    async def request(self, items: Sequence[bytes]) -> ZrpcResponse:
        """The asyncio :meth:`request_blocking`."""
        lib = _import_zmq()
        import zmq.asyncio

        if self._async_socket is None or self._pid != os.getpid():
            sock = zmq.asyncio.Socket(lib.Context.instance(), lib.DEALER)
            self._configure(sock)
            self._async_socket, self._pid = sock, os.getpid()
            self._async_lock = asyncio.Lock()
        assert self._async_lock is not None
        async with self._async_lock:
            sock = self._async_socket
            request_id = self._request_id()
            try:
                await sock.send_multipart([b"", zrpc_batch(request_id, items)])
            except lib.Again:
                raise _NotSent from None
            try:
                async with asyncio.timeout(self.timeout):
                    while True:
                        reply = _reply(await sock.recv_multipart())
                        if reply.id == request_id:
                            return reply
            except TimeoutError:
                raise _NoAnswer from None

    def close(self) -> None:
        with self._lock:
            for sock in (self._socket, self._async_socket):
                if sock is not None and self._pid == os.getpid():
                    sock.close()
            self._socket = self._async_socket = None


def _reply(frames: list[bytes]) -> ZrpcResponse:
    if len(frames) != 2 or frames[0]:
        raise ZrpcError(f"a command reply is not [empty, reply]: {frames!r:.100}")
    return parse_zrpc_response(frames[1])


#: The socket a publisher keeps for one ZeroMQ proxy.
Sender = ZmqSender | ZmqCommandSender


def make_sender(endpoint: ZmqEndpoint, timeout: float) -> Sender:
    """The sender for ``endpoint``'s mode; it opens its socket at its first publish."""
    if endpoint.mode == "command":
        return ZmqCommandSender(endpoint, timeout)
    return ZmqSender(endpoint, timeout)


def _failure(request: PublishRequest, sender: ZmqSender, sent: int) -> PublishError:
    items: dict[str, Any] = {
        "proxy": request.proxy,
        "delivered_items": request.entries[:sent],
        "failed_items": request.entries[sent:],
    }
    endpoint = sender.endpoint
    waited = f"{sender.timeout:g} s"
    if endpoint.mode == "push":
        why = f"no Pushpin is connected to {endpoint.address}, or its queue is full"
    else:
        why = f"a Pushpin subscribed to {endpoint.address} has a full queue"
    message = (
        f"{request.proxy}: ZeroMQ found no room for item {sent + 1} of {request.item_count} "
        f"within {waited} ({why}); it and the {request.item_count - sent - 1} after it were "
        f"not sent, the {sent} before it were queued ({_UNCONFIRMED})"
    )
    return ZmqSendTimeoutError(message, **items)


def _open_failure(request: PublishRequest, exc: _OpenError) -> PublishError:
    return PublishConnectionError(
        f"{request.proxy}: {exc}", proxy=request.proxy, failed_items=request.entries
    )


def _commands(
    request: PublishRequest,
    sender: ZmqCommandSender,
    send: Callable[[Sequence[bytes]], ZrpcResponse],
) -> PublishError | None:
    done = 0
    for batch in request.messages:
        try:
            reply = send(batch)
        except (_NotSent, _NoAnswer, _OpenError, ZrpcError) as exc:
            return _command_failure(request, sender, done, len(batch), exc)
        if not reply.success:
            return _command_failure(request, sender, done, len(batch), reply)
        done += len(batch)
    return None


def _command_failure(
    request: PublishRequest,
    sender: ZmqCommandSender,
    done: int,
    count: int,
    cause: Exception | ZrpcResponse,
) -> PublishError:
    """The error for a command request that failed after ``done`` items were accepted."""
    proxy, waited = request.proxy, f"{sender.timeout:g} s"
    items: dict[str, Any] = {
        "proxy": proxy,
        "delivered_items": request.entries[:done],
        "failed_items": request.entries[done:],
    }
    if isinstance(cause, ZrpcResponse):  # Pushpin read the request and refused all of it
        value = cause.value.decode("utf-8", "replace") if isinstance(cause.value, bytes) else ""
        message = f"{proxy} refused the items ({cause.condition}): {value or '(no reason)'}"
        return PublishError(message, body=value, **items)
    if isinstance(cause, _OpenError):
        return PublishConnectionError(f"{proxy}: {cause}", **items)
    if isinstance(cause, _NotSent):
        message = (
            f"{proxy}: no Pushpin is connected to {sender.endpoint.address}: the publish "
            f"request was not sent within {waited}"
        )
        return ZmqSendTimeoutError(message, **items)
    unsure = request.entries[done : done + count]
    if isinstance(cause, ZrpcError):
        return PublishReplyError(
            f"{proxy} sent a malformed answer: {cause}", unsure_items=unsure, **items
        )
    message = (
        f"{proxy} did not answer within {waited}: the {count} item(s) of that request may "
        "have been published"
    )
    return PublishTimeoutError(message, unsure_items=unsure, **items)


def send_request_blocking(sender: Sender, request: PublishRequest) -> PublishError | None:
    """Send a ZeroMQ publish request; the error when not every item could be queued (or,
    to the command socket, was not accepted)."""
    if isinstance(sender, ZmqCommandSender):
        return _commands(request, sender, sender.request_blocking)
    try:
        sent = sender.send_blocking(request.messages)
    except _OpenError as exc:
        return _open_failure(request, exc)
    return None if sent == len(request.messages) else _failure(request, sender, sent)


async def send_request(sender: Sender, request: PublishRequest) -> PublishError | None:
    """The asyncio :func:`send_request_blocking`."""
    if isinstance(sender, ZmqCommandSender):
        done = 0
        for batch in request.messages:
            try:
                reply = await sender.request(batch)
            except (_NotSent, _NoAnswer, _OpenError, ZrpcError) as exc:
                return _command_failure(request, sender, done, len(batch), exc)
            if not reply.success:
                return _command_failure(request, sender, done, len(batch), reply)
            done += len(batch)
        return None
    try:
        sent = await sender.send(request.messages)
    except _OpenError as exc:
        return _open_failure(request, exc)
    return None if sent == len(request.messages) else _failure(request, sender, sent)


# --- Subscriber counts -----------------------------------------------------------------------


def stats_address(uri: str) -> str:
    """The ZeroMQ address of a stats socket URI: ``tcp://host:port`` or ``ipc:///path``
    (a ``zmq+`` prefix is accepted too). Raises ValueError for anything else."""
    address = uri.strip().removeprefix("zmq+")
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "ipc") or not rest or "?" in rest:
        raise ValueError(f"a stats socket is tcp://host:port or ipc:///path, got {uri!r}")
    if scheme == "ipc" and not rest.startswith("/"):
        raise ValueError(f"an ipc stats socket needs an absolute path (ipc:///...): {uri!r}")
    return address


class SubscriberCounts:
    """Live per-channel subscriber counts from the stats sockets of one or more Pushpins.

    .. code-block:: python

        with SubscriberCounts("tcp://127.0.0.1:5564") as counts:
            if counts.has_subscribers("news"):
                publisher.publish_text("news", render_headlines())

    A thread subscribes to the ``sub`` packets of each Pushpin's ``stats_spec`` and keeps,
    per channel, the connections each Pushpin holds (WebSocket, stream/SSE, long-poll), each
    for its TTL. Reading is a lookup, from any thread or event loop.

    Pushpin sends a count when a channel gets its first subscriber, when the count changes,
    and again every 45 s (three quarters of ``stats_subscription_ttl``, 60 s by default). So
    for the first TTL after starting, the watcher may not know of channels whose count did
    not change since: :attr:`complete` is False, and :meth:`has_subscribers` answers True
    for every channel rather than let an app skip work for subscribers it cannot see yet.
    Long-poll counts stay up to ``subscription_linger`` (60 s) after the last poll, as
    Pushpin keeps them in case the client polls again.

    Args:
        stats_uris: the stats socket of each Pushpin (``stats_spec``): ``tcp://host:port``
            or ``ipc:///path``.
        ttl: the TTL to assume before the first packet says (Pushpin's
            ``stats_subscription_ttl``).
        on_change: called from the watcher's thread with ``(channel, count)`` whenever a
            channel's total changes (a count that expires included).
        clock: a monotonic clock in seconds (for tests).
    """

    def __init__(
        self,
        stats_uris: str | Iterable[str],
        *,
        ttl: float = DEFAULT_SUBSCRIPTION_TTL,
        on_change: Callable[[str, int], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        uris = [stats_uris] if isinstance(stats_uris, str) else list(stats_uris)
        if not uris:
            raise ValueError("SubscriberCounts needs at least one stats socket")
        self.addresses = tuple(stats_address(uri) for uri in uris)
        self._ttl = ttl
        self._on_change = on_change
        self._clock = clock
        self._table = SubscriberTable(clock(), ttl)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected: set[str] = set()
        self._bad_packets = 0
        self._failure: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SubscriberCounts:
        """Connect and start watching in a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("this SubscriberCounts is already started")
        zmq = _import_zmq()
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"sub ")
        sock.setsockopt(zmq.LINGER, 0)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        try:
            for address in self.addresses:
                sock.connect(address)
        except zmq.ZMQError as exc:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close()
            raise ValueError(f"cannot watch {address}: {exc}") from None
        with self._changed:
            self._table = SubscriberTable(self._clock(), self._ttl)
        self._thread = threading.Thread(
            target=self._run, args=(sock, monitor), name="grip-asgi-stats", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and close the socket (within a tenth of a second)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
            self._stop.clear()

    def __enter__(self) -> SubscriberCounts:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
        zmq = _import_zmq()
        from zmq.utils.monitor import recv_monitor_message

        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if monitor in ready:
                    event = recv_monitor_message(monitor)
                    self._peer_event(event["event"], event["endpoint"].decode(), zmq)
                if sock in ready:
                    while True:
                        try:
                            self._packet(sock.recv(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                self._expire()
        except BaseException as exc:  # reported by every later read, never lost
            self._failure = exc
            logger.exception("the stats watcher stopped")
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close()

    def _peer_event(self, event: int, endpoint: str, zmq: ModuleType) -> None:
        with self._changed:
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected.add(endpoint)
            else:
                self._connected.discard(endpoint)
            self._changed.notify_all()

    def _packet(self, message: bytes) -> None:
        try:
            stat = parse_subscription(message)
        except StatsPacketError as exc:
            self._bad_packets += 1
            if self._bad_packets == 1 or self._bad_packets % 1000 == 0:
                logger.warning("skipped %d malformed stats packet(s): %s", self._bad_packets, exc)
            return
        if stat is None:
            return
        self._expire()  # first, so that on_change hears of an expiry before what follows
        with self._changed:
            now = self._clock()
            changed = self._table.update(stat, now)
            total = self._table.count(stat.channel, now)
            self._changed.notify_all()
        if changed:
            self._notify(stat.channel, total)

    def _expire(self) -> None:
        with self._changed:
            now = self._clock()
            channels = self._table.expire(now)
            totals = [(channel, self._table.count(channel, now)) for channel in channels]
            if channels:
                self._changed.notify_all()
        for channel, total in totals:
            self._notify(channel, total)

    def _notify(self, channel: str, total: int) -> None:
        if self._on_change is not None:
            try:
                self._on_change(channel, total)
            except Exception:
                logger.exception("the SubscriberCounts on_change callback raised")

    # -- reading ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the stats watcher stopped") from self._failure

    def count(self, channel: str) -> int:
        """Connections subscribed to ``channel`` on the watched Pushpins, every kind together
        (0 also while the watcher cannot know yet: see :attr:`complete`)."""
        self._check()
        with self._changed:
            return self._table.count(channel, self._clock())

    def by_mode(self, channel: str) -> dict[str, int]:
        """``{"ws": n, "stream": n, "response": n}`` for ``channel``, kinds with none left out."""
        self._check()
        with self._changed:
            return self._table.by_mode(channel, self._clock())

    def counts(self) -> dict[str, int]:
        """Every channel with subscribers and their count."""
        self._check()
        with self._changed:
            return self._table.counts(self._clock())

    def has_subscribers(self, channel: str) -> bool:
        """Does anyone listen on ``channel``? False only when the watcher knows nobody does;
        True while it cannot know yet (see :attr:`complete`), so work is never skipped for
        subscribers it has not heard of."""
        self._check()
        with self._changed:
            now = self._clock()
            return self._table.count(channel, now) > 0 or not self._table.is_complete(now)

    @property
    def complete(self) -> bool:
        """The watcher has listened for a whole TTL, so a channel it gives no count has none."""
        with self._changed:
            return self._table.is_complete(self._clock())

    @property
    def connected(self) -> bool:
        """Every stats socket is connected (its handshake done)."""
        with self._changed:
            return len(self._connected) == len(self.addresses)

    def wait_for(self, channel: str, check: Callable[[int], bool], *, timeout: float) -> int:
        """Block until ``check(count(channel))`` holds and return the count; raises
        TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._check()
                count = self._table.count(channel, self._clock())
                if check(count):
                    return count
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{channel!r} has {count} subscriber(s) after {timeout} s")
                # Expiry changes counts without a packet: look again at least every 0.1 s.
                self._changed.wait(min(left, 0.1))

    def wait_connected(self, timeout: float) -> None:
        """Block until every stats socket is connected; raises TimeoutError after
        ``timeout`` seconds (a Pushpin that is not running never connects)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._connected) < len(self.addresses):
                self._check()
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(self.addresses) - self._connected)
                    raise TimeoutError(f"not connected after {timeout} s: {', '.join(missing)}")
                self._changed.wait(min(left, 0.1))
