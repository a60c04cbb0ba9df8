"""What the history and presence stores share: their faces' closing, the async face made
from the blocking one, the base of their unavailable errors, and the lazy Redis import."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar

__all__ = (
    "AsyncFace",
    "BlockingFace",
    "CallsInline",
    "SyncBacked",
    "UnavailableError",
    "lazy_redis_store",
)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class UnavailableError(Exception):
    """The base of a store kind's "backend cannot be used now" error (HistoryUnavailableError,
    PresenceUnavailableError): ``store`` names the store, never with a password."""

    def __init__(self, message: str, *, store: str = "") -> None:
        super().__init__(message)
        self.store = store


class BlockingFace(ABC):
    """A store's blocking face: :meth:`close`, also at the end of a ``with`` block."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFace(ABC):
    """A store's async face: :meth:`aclose`, also at the end of an ``async with`` block."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store's connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


_Sync = TypeVar("_Sync", bound=BlockingFace)


class SyncBacked(AsyncFace, Generic[_Sync]):
    """An async face that runs each operation of its blocking face ``sync`` through
    :meth:`_call`: a store kind's subclass says which operations, a backend's how to run them."""

    sync: _Sync

    def __init__(self, sync: _Sync) -> None:
        self.sync = sync

    @abstractmethod
    async def _call(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``function`` without blocking the event loop for long."""

    async def aclose(self) -> None:
        self.sync.close()


class CallsInline:
    """For a :class:`SyncBacked` store whose every call is a few dict operations under a lock
    held only that long (the memory stores): the event loop runs them itself."""

    async def _call(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return function(*args, **kwargs)


def lazy_redis_store(package: str, name: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports its Redis store ``name`` (from
    ``package.redis``) only when asked for: the Redis backends need the optional redis package."""

    def __getattr__(attribute: str) -> Any:
        if attribute == name:
            return getattr(importlib.import_module(".redis", package), name)
        raise AttributeError(f"module {package!r} has no attribute {attribute!r}")

    return __getattr__
