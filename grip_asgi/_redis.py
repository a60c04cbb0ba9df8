"""The Redis client machinery of the Redis history and presence stores."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from ._config import _redacted
from ._errors import GripConfigError
from ._stores import UnavailableError

try:
    import redis
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - the test environment has the extra
    raise ImportError(
        "the Redis history and presence stores need the redis package: "
        "pip install 'grip-asgi[redis]'"
    ) from exc

__all__ = ("Clients", "RedisError", "Scripts", "check_url")

#: What redis-py raises when Redis cannot be used (the __cause__ of the unavailable errors).
RedisError = redis.RedisError

# Seconds to connect and to wait for a reply before the store's unavailable error, unless
# the URL says otherwise (?socket_timeout=, ?socket_connect_timeout=).
_TIMEOUT = 5.0
# A failed connection is retried twice, quickly. Few: a retry of a history append whose reply
# was lost would store it twice (under two ids), and a caller wants to hear soon that Redis
# is down.
_RETRIES = 2
_BACKOFF = (0.01, 0.25)  # base and cap, in seconds

#: A client's registered Lua scripts, by name: call one as ``script(keys, args)``.
Scripts = dict[str, Any]


class Clients:
    """The URL, the lazily made clients of both faces with their ``scripts`` registered, and
    the open/closed state of one store.

    Errors are ``error`` (the store kind's unavailable error), with messages that name the
    ``kind`` of store ("history", "presence") and never the URL's password.
    """

    def __init__(
        self, url: str, scripts: Mapping[str, str], *, kind: str, error: type[UnavailableError]
    ) -> None:
        self.url = url
        #: The URL as messages show it: without its password and parameters.
        self.shown = _redacted(url)
        self._scripts = scripts
        self._kind = kind
        self._error = error
        self._lock = threading.Lock()
        self._closed = False
        self._sync: tuple[redis.Redis, Scripts] | None = None
        # redis.asyncio clients belong to the event loop they were made on: one per loop.
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            tuple[redis.asyncio.Redis, Scripts, AsyncGenerator[None, None]],
        ] = weakref.WeakKeyDictionary()

    def sync_client(self) -> tuple[redis.Redis, Scripts]:
        with self._lock:
            self._check_open()
            if self._sync is None:
                retry = Retry(ExponentialWithJitterBackoff(*_BACKOFF), _RETRIES)
                client = redis.Redis.from_url(self.url, **_client_options(), retry=retry)
                self._sync = client, self._register(client)
            return self._sync

    async def async_client(self) -> tuple[redis.asyncio.Redis, Scripts]:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check_open()
            made = self._async.get(loop)
        if made is None:
            retry = AsyncRetry(ExponentialWithJitterBackoff(*_BACKOFF), _RETRIES)
            client = redis.asyncio.Redis.from_url(self.url, **_client_options(), retry=retry)
            closer = _close_with_loop(client)
            await anext(closer)  # runs to its yield at once: no other task comes in between
            made = client, self._register(client), closer
            with self._lock:
                self._async[loop] = made
        return made[0], made[1]

    def close_sync(self) -> None:
        with self._lock:
            self._closed = True
            made, self._sync = self._sync, None
        if made is not None:
            made[0].close()

    async def aclose(self) -> None:
        self.close_sync()
        with self._lock:
            made = self._async.pop(asyncio.get_running_loop(), None)
            self._async.clear()  # the clients of other loops close when their loop ends
        if made is not None:
            await made[2].aclose()

    def unavailable(self, exc: redis.RedisError) -> UnavailableError:
        return self._error(
            f"the Redis {self._kind} store {self.shown} is unavailable: {exc}", store=self.shown
        )

    def _check_open(self) -> None:
        if self._closed:
            raise self._error(
                f"the Redis {self._kind} store {self.shown} is closed", store=self.shown
            )

    def _register(self, client: redis.Redis | redis.asyncio.Redis) -> Scripts:
        # register_script runs EVALSHA and falls back to loading the script when Redis lacks it.
        return {name: client.register_script(source) for name, source in self._scripts.items()}


async def _close_with_loop(client: redis.asyncio.Redis) -> AsyncGenerator[None, None]:
    """Close ``client`` when its event loop ends.

    asyncio.run() (and asyncio.Runner, anyio, asgiref) finalize every async generator still
    open in their loop before closing it, so a store used from several loops in turn (tests,
    a script that calls asyncio.run() per task) leaves no connection behind.
    """
    try:
        yield
    finally:
        await client.aclose()


def _client_options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": _TIMEOUT,
        "socket_connect_timeout": _TIMEOUT,
    }


def check_url(url: str, *, kind: str) -> None:
    """Raise GripConfigError now for a URL that redis-py would reject at the first call."""
    try:
        pool = redis.ConnectionPool.from_url(url, **_client_options())
        # Making a connection object checks every option's name; it does not connect.
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError) as exc:
        raise GripConfigError(f"invalid Redis {kind} URL {_redacted(url)!r}: {exc}") from None
