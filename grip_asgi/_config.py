"""GRIP proxy configuration: GRIP_URL parsing, Fastly Fanout, and the environment."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast
from urllib.parse import (
    SplitResult,
    parse_qsl,
    quote,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

from ._errors import GripConfigError
from .zmq._protocol import ZMQ_SCHEMES, ZmqEndpoint, parse_zmq_uri

__all__ = (
    "FASTLY_FANOUT_PUBLIC_KEY",
    "GripConfig",
    "GripSettings",
    "parse_grip_uri",
)

Key = str | bytes

#: The ES256 public key Fastly Fanout signs ``Grip-Sig`` with (also published as a JWK).
FASTLY_FANOUT_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECKo5A1ebyFcnmVV8SE5On+8G81Jy
BjSvcrx4VLetWCjuDAmppTo3xM/zz763COTCgHfp/6lPdCyYjjqc+GM7sw==
-----END PUBLIC KEY-----
"""

_FASTLY_API = "https://api.fastly.com/service/"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class GripConfig(Mapping[str, Key]):
    """One GRIP proxy: where to publish, how to authenticate, and how to verify ``Grip-Sig``.

    The field names are gripcontrol's, and a config also reads like the dict gripcontrol's
    ``parse_grip_uri`` returned: ``config["control_uri"]``, ``"key" in config``,
    ``config.get("verify_iss")``, ``dict(config)``. As in that dict, a field that is not set
    is absent; ``GripConfig.from_dict(config)`` reads it back. It stays an immutable value
    (compared and hashed by its fields, never equal to a dict). Secrets are left out of
    ``repr()`` so a logged config leaks nothing.

    ``control_uri`` may name one of Pushpin's ZeroMQ sockets instead (``pip install
    "grip-asgi[zmq]"``): ``zmq+tcp://host:port`` or ``zmq+ipc:///path`` PUSHes each item to
    one Pushpin's ``push_in_spec``; adding ``?mode=pub`` binds a PUB socket there that any
    number of Pushpins subscribe to (``push_in_sub_specs`` with ``push_in_sub_connect=true``),
    and ``?mode=pub&bind=false`` connects it instead (to a Pushpin's bound SUB socket, or a
    broker). A PUSH or PUB send confirms nothing: a publish returns once the items are queued
    on the socket, with no word from Pushpin. ``?mode=command`` sends ZRPC ``publish``
    requests to one Pushpin's ``command_spec`` instead, and waits for its answer, as over
    HTTP. ``key`` and ``control_iss`` are not sent there
    (ZeroMQ has no auth); ``verify_iss`` and ``verify_key`` still check ``Grip-Sig``.
    """

    #: Base URI of the proxy's control API; items are POSTed to ``<control_uri>/publish/``.
    #: Or a ZeroMQ socket, ``zmq+tcp://host:port[?mode=pub]`` (see above).
    control_uri: str
    #: Issuer of the JWT sent when publishing (with ``key``); None sends ``key`` as a Bearer token.
    control_iss: str | None = None
    #: Publish secret: the JWT signing key with ``control_iss``, else a Bearer token.
    key: Key | None = field(default=None, repr=False)
    #: Required ``iss`` claim of incoming ``Grip-Sig`` tokens.
    verify_iss: str | None = None
    #: Key that verifies ``Grip-Sig``: a shared secret, a PEM public key, or a JWK (JSON).
    verify_key: Key | None = field(default=None, repr=False)
    #: Basic credentials for publishing, from ``user:pass@`` in the URL.
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.control_uri, str):
            raise GripConfigError(
                f"control_uri must be a string, got {type(self.control_uri).__name__}"
            )
        parts = _split_url(self.control_uri)
        if parts.scheme in ZMQ_SCHEMES:
            parse_zmq_uri(self.control_uri)  # raises GripConfigError saying what is wrong
            if self.user is not None or self.password is not None:
                raise GripConfigError("a ZeroMQ control_uri takes no user or password")
            return
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GripConfigError(
                "control_uri must be an http:// or https:// URL with a host, "
                f"got {_redacted(self.control_uri)!r} (or zmq+tcp:// or zmq+ipc:// for ZeroMQ)"
            )

    @classmethod
    def from_uri(cls, uri: str) -> GripConfig:
        """Parse a GRIP URL, e.g. ``http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme``."""
        return parse_grip_uri(uri)

    @classmethod
    def fastly(
        cls, service_id: str, api_token: str, *, verify_key: Key = FASTLY_FANOUT_PUBLIC_KEY
    ) -> GripConfig:
        """Configuration for Fastly Fanout from a service id and an API token.

        Publishing authenticates with the token as a Bearer token; ``Grip-Sig`` is verified
        against Fastly's ES256 public key with ``iss`` ``fastly:<service_id>``.
        """
        if not service_id or "/" in service_id or "?" in service_id:
            raise GripConfigError(f"invalid Fastly service id {service_id!r}")
        if not api_token:
            raise GripConfigError("a Fastly API token is required to publish")
        return cls(
            control_uri=_FASTLY_API + service_id,
            key=api_token,
            verify_iss=f"fastly:{service_id}",
            verify_key=verify_key,
        )

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> GripConfig:
        """Build from a django-grip / gripcontrol style dict (``GRIP_PROXIES`` entries)."""
        unknown = set(entry) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise GripConfigError(f"unknown GRIP proxy setting(s): {', '.join(sorted(unknown))}")
        if "control_uri" not in entry:
            raise GripConfigError("a GRIP proxy entry needs 'control_uri'")
        fields: dict[str, Any] = {
            k: _decode_key(v) if k.endswith("key") else v for k, v in entry.items()
        }
        return cls(**fields)

    @property
    def publish_url(self) -> str:
        """The URL items are POSTed to (query parameters kept after ``/publish/``); for a
        ZeroMQ proxy, the socket's address (``tcp://host:port`` or ``ipc:///path``)."""
        endpoint = self.zmq_endpoint
        if endpoint is not None:
            return endpoint.address
        parts = urlsplit(self.control_uri)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/publish/"))

    @property
    def zmq_endpoint(self) -> ZmqEndpoint | None:
        """The ZeroMQ socket a ``zmq+`` control URI names (address, mode, bind); None for
        an HTTP proxy."""
        if not self.control_uri.startswith("zmq+"):
            return None
        return parse_zmq_uri(self.control_uri)

    @property
    def signature_key(self) -> Key | None:
        """The key that verifies ``Grip-Sig``: ``verify_key``; else, for Fastly Fanout, its
        public key; else ``key``, the publish secret (as django-grip and js-grip read it)."""
        # An empty key is no key (spec §8.10): it must not count as a configured one.
        if self.verify_key:
            return self.verify_key
        if self.control_uri.startswith(_FASTLY_API):
            # Fanout signs with this key alone; its API token could never verify anything.
            return FASTLY_FANOUT_PUBLIC_KEY
        return self.key or None

    def with_verify_key(self, verify_key: Key | None) -> GripConfig:
        """A copy whose ``verify_key`` is set, unless this config already has one."""
        if verify_key is None or self.verify_key is not None:
            return self
        return replace(self, verify_key=verify_key)

    # gripcontrol's dict view: the fields that are set, by name.
    def __getitem__(self, name: str) -> Key:
        value = getattr(self, name, None) if name in _FIELD_NAMES else None
        if value is None:
            raise KeyError(name)
        return cast(Key, value)

    def __iter__(self) -> Iterator[str]:
        return (name for name in _FIELD_NAMES if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_FIELD_NAMES = tuple(f.name for f in fields(GripConfig))


def parse_grip_uri(uri: str) -> GripConfig:
    """Parse a GRIP URL into a :class:`GripConfig` (gripcontrol's convention).

    The query parameters ``iss``, ``key``, ``verify-iss`` and ``verify-key`` are consumed
    (``base64:`` keys are decoded to bytes); any others stay on ``control_uri``.
    ``user:pass@`` becomes Basic credentials. A trailing ``/`` is removed.

    ``zmq+tcp://host:port`` and ``zmq+ipc:///path`` publish over ZeroMQ instead: PUSH to one
    Pushpin, with ``?mode=pub`` a PUB socket Pushpins subscribe to, or with ``?mode=command``
    answered requests to Pushpin's command socket (see :class:`GripConfig`). ``mode`` and
    ``bind`` stay on ``control_uri``; ``verify-iss`` and ``verify-key`` are read as for HTTP.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise GripConfigError("GRIP URL is empty")
    uri = uri.strip()
    parts = _split_url(uri)
    zmq = parts.scheme in ZMQ_SCHEMES
    if parts.scheme not in ("http", "https") and not zmq:
        raise GripConfigError(
            "GRIP URL must start with http:// or https://, "
            f"got {_redacted(uri)!r} (or zmq+tcp:// or zmq+ipc:// for ZeroMQ)"
        )
    try:
        port = parts.port
    except ValueError:
        raise GripConfigError(f"GRIP URL has an invalid port: {_redacted(uri)!r}") from None
    if not parts.hostname and not zmq:
        raise GripConfigError(f"GRIP URL has no host: {_redacted(uri)!r}")

    # A literal "+" in a base64 key means "+", not a space (gripcontrol does the same).
    query = parse_qsl(parts.query.replace("+", "%2B"), keep_blank_values=True)
    consumed: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    for name, value in query:
        if name in ("iss", "key", "verify-iss", "verify-key"):
            if name in consumed:
                raise GripConfigError(f"GRIP URL repeats the {name!r} parameter")
            consumed[name] = value
        else:
            kept.append((name, value))

    rest = urlencode(kept, quote_via=quote)
    if zmq:  # the address as given ("*" binds every interface), and zmq+ipc:// keeps its //
        control_uri = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
    else:
        hostname = parts.hostname or ""
        netloc = hostname if ":" not in hostname else f"[{hostname}]"
        if port is not None:
            netloc += f":{port}"
        control_uri = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), rest, ""))
    return GripConfig(
        control_uri=control_uri,
        control_iss=consumed.get("iss") or None,
        key=_decode_key(consumed.get("key")),
        verify_iss=consumed.get("verify-iss") or None,
        verify_key=_decode_key(consumed.get("verify-key")),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _split_url(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. a bad [IPv6] host
        raise GripConfigError(f"invalid URL {_redacted(url)!r}: {exc}") from None


def _redacted(url: str) -> str:
    """``url`` fit for an error message: no query (it may carry keys), no password."""
    url = url.partition("?")[0].partition("#")[0]
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return scheme + sep + netloc + slash + path


def _decode_key(value: Key | None) -> Key | None:
    if isinstance(value, str) and value.startswith("base64:"):
        try:
            value = base64.b64decode(value[len("base64:") :], validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise GripConfigError("a base64: key is not valid base64") from None
    if not value:
        # An empty key would be an empty HMAC secret that anyone can sign with: never a key.
        return None
    return value


@dataclass(frozen=True)
class GripSettings:
    """Everything a middleware or publisher needs: the proxies plus app-wide options."""

    proxies: tuple[GripConfig, ...] = ()
    #: Prepended to every channel name on subscribe and on publish.
    prefix: str = ""
    #: Answer 501 when a handler gives GRIP instructions to a request that did not come
    #: through the proxy (django-grip's ``GRIP_PROXY_REQUIRED``); other direct requests pass.
    proxy_required: bool = False
    #: The key that verifies ``Grip-Sig`` where no proxy says otherwise; it counts even when
    #: no proxy is configured, so that a verify key alone is never ignored.
    verify_key: Key | None = field(default=None, repr=False)
    #: Answer 501 to every request that did not come through the proxy.
    proxy_only: bool = False
    #: Where reliable channels keep their history (``sqlite:///...``, ``redis://...``,
    #: ``memory:``); None: ``GRIP_HISTORY_URL``, else a SQLite file in the working directory.
    history_url: str | None = field(default=None, repr=False)
    #: The key that signs next links of recoverable streams; None derives one (see
    #: ``grip_asgi.link_signer_for``).
    link_key: Key | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        grip: str | GripConfig | Iterable[str | GripConfig] | None,
        *,
        verify_key: Key | None = None,
        prefix: str = "",
        proxy_required: bool = False,
        proxy_only: bool = False,
        history_url: str | None = None,
        link_key: Key | None = None,
    ) -> GripSettings:
        """Normalise a GRIP URL, a config, or a list of either; ``verify_key`` fills the gaps
        (and verifies ``Grip-Sig`` on its own when there is no proxy)."""
        if grip is None:
            items: Sequence[str | GripConfig] = ()
        elif isinstance(grip, (str, GripConfig)):
            items = (grip,)
        else:
            items = tuple(grip)
        key = _decode_key(verify_key)
        proxies = []
        for item in items:
            if isinstance(item, str):
                item = parse_grip_uri(item)
            elif not isinstance(item, GripConfig):
                raise GripConfigError(
                    f"expected a GRIP URL or GripConfig, got {type(item).__name__}"
                )
            proxies.append(item.with_verify_key(key))
        return cls(
            tuple(proxies),
            prefix,
            proxy_required,
            key,
            proxy_only,
            history_url or None,
            _decode_key(link_key),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GripSettings:
        """Read ``GRIP_URL`` (or ``GRIP_PROXIES``, a JSON list), ``GRIP_VERIFY_KEY``,
        ``GRIP_PREFIX``, ``GRIP_PROXY_REQUIRED``, ``GRIP_PROXY_ONLY``, ``GRIP_HISTORY_URL`` and
        ``GRIP_LINK_KEY``."""
        env = os.environ if environ is None else environ
        grip: list[str | GripConfig] = []
        if env.get("GRIP_URL", "").strip():
            grip.append(env["GRIP_URL"])
        if env.get("GRIP_PROXIES", "").strip():
            try:
                entries = json.loads(env["GRIP_PROXIES"])
            except ValueError as exc:
                raise GripConfigError(f"GRIP_PROXIES is not valid JSON: {exc}") from None
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise GripConfigError("GRIP_PROXIES must be a JSON list of objects")
            grip.extend(GripConfig.from_dict(e) for e in entries)
        return cls.build(
            grip,
            verify_key=env.get("GRIP_VERIFY_KEY") or None,
            prefix=env.get("GRIP_PREFIX", ""),
            proxy_required=env_flag(env, "GRIP_PROXY_REQUIRED"),
            proxy_only=env_flag(env, "GRIP_PROXY_ONLY"),
            history_url=env.get("GRIP_HISTORY_URL"),
            link_key=env.get("GRIP_LINK_KEY") or None,
        )


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """A true/false environment variable (1/0, yes/no, on/off); unset is False."""
    value = env.get(name, "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise GripConfigError(f"{name} must be true or false, got {value!r}")
    return value in _TRUE
