"""The presence store's protocol, its values and errors, input checks, and presence URLs."""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .._config import _redacted
from .._errors import GripConfigError, GripError
from .._stores import AsyncFace, BlockingFace, SyncBacked, UnavailableError
from ..history._base import check_channel, history_url_or_default, parse_history_url

__all__ = (
    "Member",
    "PresenceError",
    "PresenceStore",
    "PresenceUnavailableError",
    "SyncPresence",
    "open_presence",
)


@dataclass(frozen=True, slots=True)
class Member:
    """One connection present on a channel: who is here, as the presence store knows it."""

    #: The channel it is present on.
    channel: str
    #: The connection id (Pushpin's ``Connection-Id``): one member per connection.
    client: str
    #: The application's user name or id for the connection, None when anonymous.
    user: str | None
    #: What the endpoint said about the member: any JSON value, or None.
    info: Any
    #: Unix seconds when it joined (a refresh keeps the time of the first join).
    joined: float
    #: Unix seconds when it stops being a member unless refreshed or touched.
    expires: float

    def to_json(self) -> dict[str, Any]:
        """The member as clients see it in ``members``, ``join`` and ``leave`` messages."""
        return {"client": self.client, "user": self.user, "info": self.info}


class PresenceError(GripError):
    """A presence store failed. Subclasses say how."""


class PresenceUnavailableError(UnavailableError, PresenceError):
    """The presence backend cannot be used now (Redis down, SQLite locked past its timeout,
    the store closed). The backend's own exception is the ``__cause__``; ``store`` names the
    store (never with a password)."""


# -- input checks, the same for every backend ---------------------------------------------------


def check_presence_channel(channel: str) -> None:
    """A channel name as history takes them, but not empty."""
    check_channel(channel)
    if not channel:
        raise ValueError("channel must be a non-empty str")


def check_key(channel: str, client: str) -> None:
    """A channel name and a connection id."""
    check_presence_channel(channel)
    _check_text("client", client)


def check_ttl(ttl: float) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number of seconds, got {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")


def check_join(channel: str, client: str, ttl: float, user: str | None, info: Any) -> str:
    """Check a join's arguments; returns ``info`` as JSON text, the form every backend keeps."""
    check_key(channel, client)
    check_ttl(ttl)
    if user is not None:
        _check_text("user", user, empty_ok=True)
    try:
        # allow_nan=False: NaN and Infinity are not JSON, and browsers could not parse them.
        return json.dumps(info, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"info must be a JSON value (or None): {exc}") from None


def decode_info(text: str) -> Any:
    return json.loads(text)


def member_order(member: Member) -> tuple[float, str]:
    """The order members are listed in: by ``joined``, then ``client``."""
    return member.joined, member.client


def _check_text(name: str, value: str, *, empty_ok: bool = False) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value and not empty_ok:
        raise ValueError(f"{name} must be a non-empty str")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: no backend can store it as text
        raise ValueError(f"{name} is not valid Unicode text (it holds a lone surrogate)") from None


# -- the two faces -------------------------------------------------------------------------------


class SyncPresence(BlockingFace):
    """The blocking face of a presence store, for Django sync views, WSGI and scripts.

    Every method matches the async one of :class:`PresenceStore` of the same name.
    """

    @abstractmethod
    def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        """See :meth:`PresenceStore.join`."""

    @abstractmethod
    def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        """See :meth:`PresenceStore.touch`."""

    @abstractmethod
    def leave(self, channel: str, client: str) -> Member | None:
        """See :meth:`PresenceStore.leave`."""

    @abstractmethod
    def members(self, channel: str) -> list[Member]:
        """See :meth:`PresenceStore.members`."""

    @abstractmethod
    def expire(self, channel: str) -> list[Member]:
        """See :meth:`PresenceStore.expire`."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections; later calls raise :class:`PresenceUnavailableError`."""


class PresenceStore(AsyncFace):
    """Who is here: the members of each channel, for reliable WebSocket endpoints.

    A member is one connection (``client``, Pushpin's ``Connection-Id``) with the ``user``
    and ``info`` the endpoint gave when it opened. Membership is a lease: each join or touch
    keeps the member for ``ttl`` seconds more, so a client that vanished without closing
    its connection drops out by itself. Every change that clients should hear about is
    reported once: :meth:`join` says whether the member is new, and a member leaves either
    through :meth:`leave` or through :meth:`expire`, never both, even with several
    processes (or hosts, with Redis) calling them at once. ``sync`` is the blocking twin of
    the same store. Backend failures raise :class:`PresenceUnavailableError`.

    Open one with :func:`open_presence`.
    """

    #: The blocking face of this store.
    sync: SyncPresence

    @abstractmethod
    async def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        """Make ``client`` a member of ``channel`` for ``ttl`` seconds from now.

        Returns True when it was not a live member before (a join to announce); a live
        member is refreshed instead (new ``user``, ``info`` and expiry, the same ``joined``)
        and False is returned. ``info`` is any JSON value; it comes back decoded from JSON.
        """

    @abstractmethod
    async def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        """Keep a live member for ``ttl`` seconds from now (a sign of life, such as a PONG).

        Returns False, and changes nothing, when ``client`` is not a live member (it
        expired, left or never joined): join it again to make it one.
        """

    @abstractmethod
    async def leave(self, channel: str, client: str) -> Member | None:
        """Remove a live member and return it (a leave to announce).

        Returns None when ``client`` is not a live member. An expired member stays for
        :meth:`expire`, which reports its leave.
        """

    @abstractmethod
    async def members(self, channel: str) -> list[Member]:
        """The channel's live members, by ``joined`` then ``client``; never an expired one."""

    @abstractmethod
    async def expire(self, channel: str) -> list[Member]:
        """Remove the channel's expired members and return them (leaves to announce).

        Atomic: when several callers (processes, hosts) sweep the same channel at once, each
        expired member is returned to one of them only, and never to a caller of
        :meth:`leave` as well. Ordered by ``joined`` then ``client``.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store's connections; later calls raise :class:`PresenceUnavailableError`."""


class SyncBackedPresence(SyncBacked[SyncPresence], PresenceStore):
    """A store whose async face calls its sync face through :meth:`_call`."""

    async def join(
        self, channel: str, client: str, *, ttl: float, user: str | None = None, info: Any = None
    ) -> bool:
        return await self._call(self.sync.join, channel, client, ttl=ttl, user=user, info=info)

    async def touch(self, channel: str, client: str, *, ttl: float) -> bool:
        return await self._call(self.sync.touch, channel, client, ttl=ttl)

    async def leave(self, channel: str, client: str) -> Member | None:
        return await self._call(self.sync.leave, channel, client)

    async def members(self, channel: str) -> list[Member]:
        return await self._call(self.sync.members, channel)

    async def expire(self, channel: str) -> list[Member]:
        return await self._call(self.sync.expire, channel)


# -- URLs ----------------------------------------------------------------------------------------

# History URLs limit how much each channel keeps; presence keeps what is live.
_HISTORY_ONLY_PARAMS = frozenset({"max_events", "max_age"})


def open_presence(url: str) -> PresenceStore:
    """Open the presence store that ``url`` names.

    The URLs are those of :func:`grip_asgi.history.parse_history_url`, so one Redis or
    SQLite URL can serve both: ``memory:``, ``sqlite:///relative.db``,
    ``sqlite:////absolute.db``, ``redis://host:port/db`` (and ``rediss://``), Redis URLs
    with ``?key_prefix=...`` and redis-py's own parameters. History's retention parameters
    are refused. Nothing is connected until the first call.

    Raises :class:`GripConfigError` naming what is wrong (never echoing a password).
    """
    parsed = parse_history_url(url, kind="presence")
    for piece in filter(None, urlsplit(url).query.split("&")):
        name = _param_name(piece)
        if name in _HISTORY_ONLY_PARAMS:
            raise GripConfigError(
                f"a presence URL takes no {name!r} (a history parameter): {_redacted(url)!r}"
            )
    if parsed.backend == "memory":
        from .memory import MemoryPresence

        return MemoryPresence()
    if parsed.backend == "sqlite":
        from .sqlite import SQLitePresence

        return SQLitePresence(parsed.path)
    try:
        from .redis import RedisPresence
    except ImportError as exc:  # the optional redis package is missing
        raise GripConfigError(f"{exc} (for the presence URL {_redacted(url)!r})") from exc
    return RedisPresence(parsed.redis_url, key_prefix=parsed.key_prefix)


def open_presence_beside_history(history_url: str | None) -> PresenceStore:
    """The presence store kept where the history of ``history_url`` is (None: the history's
    own default, ``GRIP_HISTORY_URL`` then :data:`~grip_asgi.history.DEFAULT_HISTORY_URL`).

    The history's retention parameters (``max_events``, ``max_age``) are the history's
    alone: they are left out, so a history URL that limits retention serves presence too.
    """
    # Cut by hand: urlunsplit would turn sqlite:////abs/path into sqlite://abs/path.
    base, _, query = history_url_or_default(history_url).partition("?")
    pieces = filter(None, query.split("&"))
    kept = [piece for piece in pieces if _param_name(piece) not in _HISTORY_ONLY_PARAMS]
    return open_presence(f"{base}?{'&'.join(kept)}" if kept else base)


def _param_name(piece: str) -> str:
    """The name of one ``name=value`` piece of a URL's query, decoded."""
    return unquote(piece.partition("=")[0].replace("+", " "))
