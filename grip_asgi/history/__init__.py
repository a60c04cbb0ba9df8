"""Channel history: every message kept with a per-channel id, so subscribers can catch up.

Open a store by URL with :func:`open_history` (``memory:``, ``sqlite:///path.db``,
``redis://host:port/db``); each store has an async face and a blocking twin, ``store.sync``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._stores import lazy_redis_store
from ._base import (
    DEFAULT_HISTORY_URL,
    HistoryError,
    HistoryGapError,
    HistoryStore,
    HistoryUnavailableError,
    HistoryURL,
    Retention,
    StoredEvent,
    SyncHistory,
    open_history,
    parse_history_url,
)
from .memory import MemoryHistory
from .sqlite import SQLiteHistory

if TYPE_CHECKING:
    from .redis import RedisHistory

__all__ = (
    "DEFAULT_HISTORY_URL",
    "HistoryError",
    "HistoryGapError",
    "HistoryStore",
    "HistoryURL",
    "HistoryUnavailableError",
    "MemoryHistory",
    "RedisHistory",
    "Retention",
    "SQLiteHistory",
    "StoredEvent",
    "SyncHistory",
    "open_history",
    "parse_history_url",
)


# The Redis backend needs the optional redis package: it is imported only when asked for.
__getattr__ = lazy_redis_store(__name__, "RedisHistory")
