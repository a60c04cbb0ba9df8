"""grip_django's settings, read from Django's settings with the environment as a fallback.

Each setting keeps its django-grip name. A setting that is absent (or None) in Django's
settings is read from the environment variable of the same name, so a twelve-factor
deployment can set ``GRIP_URL`` in the environment alone:

- ``GRIP_URL``: a GRIP URL, e.g. ``http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme``.
- ``GRIP_PROXIES``: a list of proxies, each a django-grip dict (``control_uri``, ``control_iss``,
  ``key``, ``verify_iss``, ``verify_key``), a :class:`~grip_asgi.GripConfig` or a GRIP URL.
  In the environment: a JSON list of objects. Used together with ``GRIP_URL`` if both are set.
- ``GRIP_VERIFY_KEY``: the key that verifies ``Grip-Sig`` for proxies configured without one,
  and on its own when no proxy is configured. A proxy entry's ``key`` verifies too where it
  has no ``verify_key``, as in django-grip. Once any key is configured, a request counts as
  proxied only when its ``Grip-Sig`` verifies.
- ``GRIP_PREFIX``: prepended to every channel on subscribe and on publish.
- ``GRIP_PROXY_REQUIRED``: django-grip's meaning: a view that gives GRIP instructions
  (``set_hold_longpoll``, ``set_hold_stream``, ``request.grip.start_instruct()``) to a request
  that did not come through the proxy answers 501; other direct requests (health checks,
  the admin, static files) are served as usual.
- ``GRIP_PROXY_ONLY``: answer 501 to every request that did not come through the proxy.
- ``GRIP_MAX_BODY_SIZE``: largest WebSocket-over-HTTP body accepted, in bytes (Django only).
- ``GRIP_HISTORY_URL``: where reliable channels keep their history (``sqlite:///...``,
  ``redis://...``, ``memory:``); default: a SQLite file in the working directory.
- ``GRIP_LINK_KEY``: the secret that signs the next links of recoverable streams; default:
  derived from ``SECRET_KEY``.

Django's settings are never modified (django-grip's defect D1).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.conf import settings

from grip_asgi._config import GripConfig, GripSettings, Key, env_flag
from grip_asgi._context import GripLimits, GripProcessor
from grip_asgi._errors import GripConfigError
from grip_asgi.history import HistoryStore, open_history
from grip_asgi.presence import PresenceStore
from grip_asgi.presence._base import open_presence_beside_history

__all__ = (
    "GRIP_SETTINGS",
    "GripDjangoSettings",
    "GripSettingError",
    "grip_conf",
    "read_limits",
    "read_prefix",
    "read_proxies",
    "read_proxy_only",
    "read_proxy_required",
    "read_settings",
    "read_verify_key",
)

#: The settings grip_django reads; a change to any of them reloads its configuration.
GRIP_SETTINGS = frozenset(
    (
        "GRIP_URL",
        "GRIP_PROXIES",
        "GRIP_VERIFY_KEY",
        "GRIP_PREFIX",
        "GRIP_PROXY_REQUIRED",
        "GRIP_PROXY_ONLY",
        "GRIP_HISTORY_URL",
        "GRIP_LINK_KEY",
        "SECRET_KEY",
        "GRIP_MAX_BODY_SIZE",
        "GRIP_MAX_EVENTS",
        "GRIP_MAX_EVENT_SIZE",
    )
)


class GripSettingError(GripConfigError):
    """A GRIP setting is malformed; ``setting`` names it (``"GRIP_URL"``, ...)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


def _django_setting(name: str) -> Any:
    return getattr(settings, name, None)


def _type_name(value: object) -> str:
    return type(value).__name__


def read_proxies(environ: Mapping[str, str] = os.environ) -> tuple[GripConfig, ...]:
    """The proxies from ``GRIP_URL`` and ``GRIP_PROXIES``, or else from the environment."""
    url = _django_setting("GRIP_URL")
    entries = _django_setting("GRIP_PROXIES")
    if url is None and entries is None:
        env = {name: environ[name] for name in ("GRIP_URL", "GRIP_PROXIES") if name in environ}
        try:
            return GripSettings.from_env(env).proxies
        except GripConfigError as exc:
            raise GripSettingError("environment", str(exc)) from None
    proxies: list[GripConfig] = []
    if url is not None:
        if not isinstance(url, str):
            raise GripSettingError("GRIP_URL", f"must be a str, got {_type_name(url)}")
        if url.strip():
            try:
                proxies.append(GripConfig.from_uri(url))
            except GripConfigError as exc:
                raise GripSettingError("GRIP_URL", str(exc)) from None
    if entries is not None:
        if not isinstance(entries, (list, tuple)):
            raise GripSettingError(
                "GRIP_PROXIES", f"must be a list of proxies, got {_type_name(entries)}"
            )
        for index, entry in enumerate(entries):
            try:
                proxies.append(_proxy(entry))
            except GripConfigError as exc:
                raise GripSettingError(f"GRIP_PROXIES[{index}]", str(exc)) from None
    return tuple(proxies)


def _proxy(entry: object) -> GripConfig:
    if isinstance(entry, GripConfig):
        return entry
    if isinstance(entry, str):
        return GripConfig.from_uri(entry)
    if isinstance(entry, Mapping):
        return GripConfig.from_dict(entry)
    raise GripConfigError(f"expected a dict, a GripConfig or a GRIP URL, got {_type_name(entry)}")


def read_verify_key(environ: Mapping[str, str] = os.environ) -> Key | None:
    """``GRIP_VERIFY_KEY``: a str (``base64:`` for binary) or bytes, or None."""
    key = _django_setting("GRIP_VERIFY_KEY")
    if key is None:
        return environ.get("GRIP_VERIFY_KEY") or None
    if not isinstance(key, (str, bytes)):
        raise GripSettingError("GRIP_VERIFY_KEY", f"must be a str or bytes, got {_type_name(key)}")
    return key


def read_prefix(environ: Mapping[str, str] = os.environ) -> str:
    """``GRIP_PREFIX``, "" when unset."""
    prefix = _django_setting("GRIP_PREFIX")
    if prefix is None:
        return environ.get("GRIP_PREFIX", "")
    if not isinstance(prefix, str):
        raise GripSettingError("GRIP_PREFIX", f"must be a str, got {_type_name(prefix)}")
    return prefix


def read_proxy_required(environ: Mapping[str, str] = os.environ) -> bool:
    """``GRIP_PROXY_REQUIRED``, False when unset."""
    return _read_flag("GRIP_PROXY_REQUIRED", environ)


def read_proxy_only(environ: Mapping[str, str] = os.environ) -> bool:
    """``GRIP_PROXY_ONLY``, False when unset."""
    return _read_flag("GRIP_PROXY_ONLY", environ)


def _read_flag(name: str, environ: Mapping[str, str]) -> bool:
    value = _django_setting(name)
    if value is None:
        try:
            return env_flag(environ, name)
        except GripConfigError as exc:
            raise GripSettingError("environment", str(exc)) from None
    if not isinstance(value, bool):
        raise GripSettingError(name, f"must be True or False, got {_type_name(value)}")
    return value


#: Django setting → GripLimits field.
_LIMIT_SETTINGS = {
    "GRIP_MAX_BODY_SIZE": "max_body_size",
    "GRIP_MAX_EVENTS": "max_events",
    "GRIP_MAX_EVENT_SIZE": "max_event_size",
}


def read_limits() -> GripLimits:
    """The request limits: ``GRIP_MAX_BODY_SIZE``, ``GRIP_MAX_EVENTS`` and
    ``GRIP_MAX_EVENT_SIZE`` where set, :class:`~grip_asgi.GripLimits`' defaults elsewhere."""
    limits = GripLimits()
    for setting, field in _LIMIT_SETTINGS.items():
        value = _django_setting(setting)
        if value is not None:
            try:
                limits = replace(limits, **{field: value})
            except ValueError as exc:
                raise GripSettingError(setting, str(exc)) from None
    return limits


def read_settings(environ: Mapping[str, str] = os.environ) -> GripSettings:
    """All GRIP settings as one :class:`~grip_asgi.GripSettings`. Raises GripSettingError."""
    return GripSettings.build(
        read_proxies(environ),
        verify_key=read_verify_key(environ),
        prefix=read_prefix(environ),
        proxy_required=read_proxy_required(environ),
        proxy_only=read_proxy_only(environ),
        history_url=_read_str("GRIP_HISTORY_URL", environ),
        # Every worker has SECRET_KEY: next links verify wherever Pushpin sends them.
        link_key=_read_str("GRIP_LINK_KEY", environ) or getattr(settings, "SECRET_KEY", None),
    )


def _read_str(name: str, environ: Mapping[str, str]) -> str | None:
    value = _django_setting(name)
    if value is None:
        return environ.get(name) or None
    if not isinstance(value, str):
        raise GripSettingError(name, f"must be a str, got {_type_name(value)}")
    return value or None


class GripDjangoSettings:
    """The GRIP configuration the middleware and the publishers use, built on first use.

    It never modifies Django's settings. :meth:`reload` drops what it built; grip_django's
    app config calls it whenever a ``GRIP_*`` setting changes (``override_settings``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: GripSettings | None = None
        self._processor: GripProcessor | None = None
        self._history: HistoryStore | None = None
        self._presence: PresenceStore | None = None

    @property
    def settings(self) -> GripSettings:
        """The proxies, prefix and proxy requirement (all a publisher needs)."""
        with self._lock:
            return self._read_settings()

    @property
    def processor(self) -> GripProcessor:
        """The request/response rules the middleware applies."""
        with self._lock:
            if self._processor is None:
                self._processor = GripProcessor(self._read_settings(), limits=read_limits())
            return self._processor

    @property
    def history(self) -> HistoryStore:
        """The channel history of reliable channels (``GRIP_HISTORY_URL``), one per process,
        shared by the recoverable views and the publishers."""
        with self._lock:
            if self._history is None:
                self._history = open_history(self._read_settings().history_url)
            return self._history

    @property
    def presence(self) -> PresenceStore:
        """The member lists of reliable WebSockets, kept where the history is, one per
        process."""
        with self._lock:
            if self._presence is None:
                url = self._read_settings().history_url
                self._presence = open_presence_beside_history(url)
            return self._presence

    def _read_settings(self) -> GripSettings:
        # Called with the lock held.
        if self._settings is None:
            self._settings = read_settings()
        return self._settings

    def reload(self) -> None:
        """Forget the built configuration; the next use reads the settings again."""
        with self._lock:
            self._settings = None
            self._processor = None
            self._history = None
            self._presence = None


#: The process-wide instance.
grip_conf = GripDjangoSettings()
