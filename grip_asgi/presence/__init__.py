"""Presence: who is here on each channel, for reliable WebSocket endpoints.

Open a store by URL with :func:`open_presence` (``memory:``, ``sqlite:///path.db``,
``redis://host:port/db``, the same URLs as the channel history); each store has an async
face and a blocking twin, ``store.sync``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._stores import lazy_redis_store
from ._base import (
    Member,
    PresenceError,
    PresenceStore,
    PresenceUnavailableError,
    SyncPresence,
    open_presence,
)
from .memory import MemoryPresence
from .sqlite import SQLitePresence

if TYPE_CHECKING:
    from .redis import RedisPresence

__all__ = (
    "Member",
    "MemoryPresence",
    "PresenceError",
    "PresenceStore",
    "PresenceUnavailableError",
    "RedisPresence",
    "SQLitePresence",
    "SyncPresence",
    "open_presence",
)


# The Redis backend needs the optional redis package: it is imported only when asked for.
__getattr__ = lazy_redis_store(__name__, "RedisPresence")
