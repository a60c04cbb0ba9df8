"""The history store's protocol, its values and errors, retention, and history URLs."""

from __future__ import annotations

import math
import os
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import unquote, urlsplit

from .._config import _redacted
from .._errors import GripConfigError, GripError
from .._stores import AsyncFace, BlockingFace, SyncBacked, UnavailableError

__all__ = (
    "DEFAULT_HISTORY_URL",
    "HistoryError",
    "HistoryGapError",
    "HistoryStore",
    "HistoryURL",
    "HistoryUnavailableError",
    "Retention",
    "StoredEvent",
    "SyncHistory",
    "open_history",
    "parse_history_url",
)

#: Where :func:`open_history` keeps history when neither its argument nor
#: ``GRIP_HISTORY_URL`` names a store: a SQLite file in the working directory.
DEFAULT_HISTORY_URL = "sqlite:///grip-history.sqlite3"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One message kept in a channel's history."""

    #: The channel it was appended to.
    channel: str
    #: Its place in the channel: 1, 2, 3, ... with no gaps.
    id: int
    #: The message text (JSON or plain text).
    data: str
    #: An event type name (the SSE ``event:`` field), None for plain messages.
    event: str | None
    #: Unix seconds when it was appended, by the store's clock (Redis: the server's).
    time: float


class HistoryError(GripError):
    """A channel history store failed. Subclasses say how."""


class HistoryGapError(HistoryError):
    """Reading after ``after_id`` cannot be done without a gap.

    Either the events after it were trimmed (retention), or ``after_id`` is beyond the
    channel's current id (a store that was reset or emptied). A reader should start again
    from ``current_id`` (with a snapshot of the state, or a "stream reset" to its client).

    ``first_id`` is the oldest id still stored, ``current_id + 1`` when none is.
    """

    def __init__(self, channel: str, after_id: int, current_id: int, first_id: int) -> None:
        if after_id > current_id:
            why = f"id {after_id} is beyond the current id {current_id} (was the store reset?)"
        else:
            why = (
                f"the events after id {after_id} are no longer stored (retention): "
                f"the oldest stored id is {first_id}, the current id {current_id}"
            )
        super().__init__(f"channel {channel!r}: {why}")
        self.channel = channel
        self.after_id = after_id
        self.current_id = current_id
        self.first_id = first_id

    def __reduce__(self) -> tuple[type[HistoryGapError], tuple[str, int, int, int]]:
        # Pickled with its fields (e.g. across processes), not with its message.
        return type(self), (self.channel, self.after_id, self.current_id, self.first_id)


class HistoryUnavailableError(UnavailableError, HistoryError):
    """The history backend cannot be used now (Redis down, SQLite locked past its timeout,
    the store closed). The backend's own exception is the ``__cause__``; ``store`` names the
    store (never with a password)."""


@dataclass(frozen=True)
class Retention:
    """How much history each channel keeps.

    Both limits apply, per channel, on every append (it removes what fell out, in one step;
    Redis removes at most 1,000 expired events per append, so as not to hold its one thread)
    and on :meth:`HistoryStore.trim`. A channel that nobody appends to keeps its events
    until the next ``trim()``: call it now and then (a cron job, a periodic task) when
    ``max_age`` matters. Ids keep counting after any trimming.
    """

    #: Most events kept per channel (the newest); None keeps any number.
    max_events: int | None = 1000
    #: Seconds an event is kept; None keeps events forever.
    max_age: float | None = 86400.0

    def __post_init__(self) -> None:
        events, age = self.max_events, self.max_age
        if events is not None and (type(events) is not int or events < 1):
            raise ValueError(f"max_events must be a positive integer or None, got {events!r}")
        if age is not None and (
            isinstance(age, bool)
            or not isinstance(age, int | float)
            or not math.isfinite(age)
            or age <= 0
        ):
            raise ValueError(f"max_age must be a positive number of seconds or None, got {age!r}")

    def age_cutoff(self, now: float) -> float | None:
        """Events appended before this time are expired at ``now`` (None: no age limit)."""
        return None if self.max_age is None else now - self.max_age


def check_gap(channel: str, after_id: int, current_id: int, first_id: int) -> None:
    """Raise :class:`HistoryGapError` unless every event after ``after_id`` is still stored."""
    if after_id > current_id or after_id < first_id - 1:
        raise HistoryGapError(channel, after_id, current_id, first_id)


def check_channel(channel: str) -> None:
    if not isinstance(channel, str):
        raise TypeError(f"channel must be a str, got {type(channel).__name__}")
    _check_utf8("channel", channel)


def check_append(channel: str, data: str, event: str | None) -> None:
    """Reject what no backend could store as given, the same way for every backend."""
    check_channel(channel)
    if not isinstance(data, str):
        raise TypeError(f"data must be a str, got {type(data).__name__}")
    _check_utf8("data", data)
    if event is not None:
        if not isinstance(event, str):
            raise TypeError(f"event must be a str or None, got {type(event).__name__}")
        # An SSE field cannot hold a line break, and "" would read back as "no event type".
        if not event or "\n" in event or "\r" in event:
            raise ValueError(f"event must be a non-empty name without line breaks, got {event!r}")
        _check_utf8("event", event)


def check_after_id(after_id: int, limit: int) -> None:
    if type(after_id) is not int or after_id < 0:
        raise ValueError(f"after_id must be an integer >= 0, got {after_id!r}")
    check_count("limit", limit)


def check_count(name: str, value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_utf8(name: str, text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate, e.g. from a bad decode upstream
            raise ValueError(
                f"{name} is not valid Unicode text (it holds a lone surrogate)"
            ) from None


class SyncHistory(BlockingFace):
    """The blocking face of a history store, for Django sync views, WSGI and scripts.

    Every method matches the async one of :class:`HistoryStore` of the same name.
    """

    retention: Retention

    @abstractmethod
    def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        """See :meth:`HistoryStore.append`."""

    @abstractmethod
    def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        """See :meth:`HistoryStore.read`."""

    @abstractmethod
    def last_id(self, channel: str) -> int:
        """See :meth:`HistoryStore.last_id`."""

    @abstractmethod
    def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        """See :meth:`HistoryStore.latest`."""

    @abstractmethod
    def trim(self) -> int:
        """See :meth:`HistoryStore.trim`."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections; later calls raise :class:`HistoryUnavailableError`."""


class HistoryStore(AsyncFace):
    """A store of each channel's recent messages, numbered 1, 2, 3, ... per channel.

    Ids are strictly increasing and gap-free in the order readers see them: once a reader
    sees id N, every id below N that is still kept is readable too. Any ``str`` is a
    channel name. ``sync`` is the blocking twin of the same store: both faces see each
    other's writes. Backend failures raise :class:`HistoryUnavailableError`.

    Open one with :func:`open_history`.
    """

    #: The blocking face of this store.
    sync: SyncHistory

    @property
    def retention(self) -> Retention:
        """How much history each channel keeps."""
        return self.sync.retention

    @abstractmethod
    async def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        """Store ``data`` as the channel's next event and return it with its id and time.

        ``event`` is an optional event type name (SSE's ``event:`` field). Retention is
        applied to the channel in the same step.
        """

    @abstractmethod
    async def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        """The events with an id above ``after_id``, oldest first, at most ``limit``.

        ``after_id`` equal to the current id gives ``[]``, and so does ``0`` on a channel
        that never had an event. Raises :class:`HistoryGapError` when some event after
        ``after_id`` is no longer stored, or ``after_id`` is beyond the current id.
        """

    @abstractmethod
    async def last_id(self, channel: str) -> int:
        """The channel's newest id, kept after trimming; 0 when it never had an event."""

    @abstractmethod
    async def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        """The newest ``count`` stored events, oldest first (a snapshot for a new subscriber)."""

    @abstractmethod
    async def trim(self) -> int:
        """Apply retention to every channel now; returns how many events were removed."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store's connections; later calls raise :class:`HistoryUnavailableError`."""


class SyncBackedStore(SyncBacked[SyncHistory], HistoryStore):
    """A store whose async face calls its sync face through :meth:`_call`."""

    async def append(self, channel: str, data: str, *, event: str | None = None) -> StoredEvent:
        return await self._call(self.sync.append, channel, data, event=event)

    async def read(self, channel: str, after_id: int = 0, *, limit: int = 100) -> list[StoredEvent]:
        return await self._call(self.sync.read, channel, after_id, limit=limit)

    async def last_id(self, channel: str) -> int:
        return await self._call(self.sync.last_id, channel)

    async def latest(self, channel: str, count: int = 1) -> list[StoredEvent]:
        return await self._call(self.sync.latest, channel, count)

    async def trim(self) -> int:
        return await self._call(self.sync.trim)


# -- URLs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryURL:
    """A parsed history URL: which backend, where, and the retention it asks for."""

    backend: Literal["memory", "sqlite", "redis"]
    retention: Retention = field(default_factory=Retention)
    #: SQLite: the database file, as given (relative to the working directory, or absolute).
    path: str = ""
    #: Redis: the URL handed to redis-py, without grip-asgi's own parameters.
    redis_url: str = field(default="", repr=False)
    #: Redis: the start of every key name.
    key_prefix: str = "grip:"


_RETENTION_PARAMS = ("max_events", "max_age")


def parse_history_url(url: str, *, kind: str = "history") -> HistoryURL:
    """Parse ``memory:``, ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``redis://host:port/db`` (and ``rediss://``), each with optional ``?max_events=N``
    and ``?max_age=SECONDS`` (``none`` for no limit); Redis URLs also take
    ``?key_prefix=...`` and pass every other parameter to redis-py.

    Raises :class:`GripConfigError` naming what is wrong (never echoing a password), and
    the ``kind`` of store the URL is for: :func:`grip_asgi.presence.open_presence`, whose
    URLs take these shapes, passes ``"presence"``.
    """
    if not isinstance(url, str):
        raise GripConfigError(f"a {kind} URL must be a str, got {type(url).__name__}")
    shown = _redacted(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. a bad [IPv6] host
        raise GripConfigError(f"invalid {kind} URL {shown!r}: {exc}") from None
    if parts.scheme not in ("memory", "sqlite", "redis", "rediss"):
        raise GripConfigError(
            f"unknown {kind} URL scheme in {shown!r}: "
            "use memory:, sqlite:///path or redis://host:port/db"
        )
    if parts.fragment:
        raise GripConfigError(f"a {kind} URL has no #fragment: {shown!r}")
    what = f"{kind} URL {shown!r}"
    ours, others = _split_query(parts.query, what, redis=parts.scheme in ("redis", "rediss"))
    retention = _retention(ours, what)
    if parts.scheme == "memory":
        if parts.netloc or parts.path:
            raise GripConfigError(f"a memory {kind} URL is just 'memory:', got {shown!r}")
        return HistoryURL("memory", retention)
    if parts.scheme == "sqlite":
        return HistoryURL(
            "sqlite", retention, path=_sqlite_path(url, parts.netloc, parts.path, kind)
        )
    if "//" not in url:
        raise GripConfigError(
            f"a Redis {kind} URL starts with redis:// or rediss://, got {shown!r}"
        )
    redis_url = parts._replace(query="&".join(others)).geturl()
    return HistoryURL(
        "redis", retention, redis_url=redis_url, key_prefix=ours.get("key_prefix", "grip:")
    )


def _split_query(query: str, what: str, *, redis: bool) -> tuple[dict[str, str], list[str]]:
    """grip-asgi's parameters, decoded; and the others (Redis only) as they were written."""
    known = (*_RETENTION_PARAMS, "key_prefix") if redis else _RETENTION_PARAMS
    ours: dict[str, str] = {}
    others: list[str] = []
    for piece in filter(None, query.split("&")):
        raw_name, _, raw_value = piece.partition("=")
        name = unquote(raw_name.replace("+", " "))
        if name not in known:
            if redis:  # redis-py's own options (socket_timeout, ...), checked when opened
                others.append(piece)
                continue
            raise GripConfigError(
                f"unknown parameter {name!r} in {what} (known: {', '.join(known)})"
            )
        if name in ours:
            raise GripConfigError(f"parameter {name!r} is given twice in {what}")
        ours[name] = unquote(raw_value.replace("+", " "))
    return ours, others


def _retention(params: dict[str, str], what: str) -> Retention:
    defaults = Retention()
    max_events, max_age = defaults.max_events, defaults.max_age
    try:
        if "max_events" in params:
            max_events = _parse_limit("max_events", params["max_events"], int, "an integer")
        if "max_age" in params:
            max_age = _parse_limit("max_age", params["max_age"], float, "a number of seconds")
        return Retention(max_events=max_events, max_age=max_age)
    except ValueError as exc:
        raise GripConfigError(f"{what}: {exc}") from None


def _parse_limit(name: str, text: str, kind: Callable[[str], _T], what: str) -> _T | None:
    if text.strip().lower() == "none":
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not {what} or 'none'") from None


def _sqlite_path(url: str, netloc: str, path: str, kind: str) -> str:
    # SQLAlchemy's convention: sqlite:///relative/file.db, sqlite:////absolute/file.db.
    if not url.lower().startswith("sqlite:///") or netloc:
        raise GripConfigError(
            f"a SQLite {kind} URL is sqlite:///relative/path.db or sqlite:////absolute/path.db, "
            f"got {_redacted(url)!r}"
        )
    file = unquote(path[1:])
    if not file or file.endswith("/"):
        raise GripConfigError(f"the SQLite {kind} URL {_redacted(url)!r} names no file")
    if file == ":memory:":
        raise GripConfigError(
            f"a SQLite {kind} URL cannot be sqlite:///:memory: (each thread would get a "
            "database of its own): use 'memory:' instead"
        )
    return file


def history_url_or_default(url: str | None) -> str:
    """``url`` unless it is None, else the ``GRIP_HISTORY_URL`` environment variable, else
    :data:`DEFAULT_HISTORY_URL`."""
    if url is not None:
        return url
    return os.environ.get("GRIP_HISTORY_URL") or DEFAULT_HISTORY_URL


def open_history(url: str | None = None, *, retention: Retention | None = None) -> HistoryStore:
    """Open the history store that ``url`` names.

    ``url`` defaults to the ``GRIP_HISTORY_URL`` environment variable, then to
    :data:`DEFAULT_HISTORY_URL` (a SQLite file in the working directory). See
    :func:`parse_history_url` for the URL shapes. ``retention``, when given, replaces the
    retention that the URL asks for. Nothing is connected until the first call.
    """
    url = history_url_or_default(url)
    parsed = parse_history_url(url)
    keep = parsed.retention if retention is None else retention
    if not isinstance(keep, Retention):
        raise TypeError(f"retention must be a Retention, got {type(keep).__name__}")
    if parsed.backend == "memory":
        from .memory import MemoryHistory

        return MemoryHistory(keep)
    if parsed.backend == "sqlite":
        from .sqlite import SQLiteHistory

        return SQLiteHistory(parsed.path, retention=keep)
    try:
        from .redis import RedisHistory
    except ImportError as exc:  # the optional redis package is missing
        raise GripConfigError(f"{exc} (for the history URL {_redacted(url)!r})") from exc
    return RedisHistory(parsed.redis_url, retention=keep, key_prefix=parsed.key_prefix)
