"""Check a Pushpin configuration for settings that let clients in or lose messages.

``python -m grip_asgi check /etc/pushpin/pushpin.conf [routes]`` runs it from a shell; in
Python::

    config, routes, notes = load_pushpin("/etc/pushpin/pushpin.conf")
    for finding in notes + check_pushpin(config, routes, CheckOptions(audience=20000)):
        print(finding.line_text())

Everything but :func:`load_pushpin` is sans-IO: :func:`parse_config` and :func:`parse_routes`
take the files' contents. They read them as Pushpin 1.36 does, quirks included (those marked
"observed" were checked against Debian's Pushpin 1.36.0): Qt's ini format, where ``;``
starts a comment anywhere outside quotes, an unquoted ``,`` makes a list that a
single-valued setting reads as empty, ``no`` and ``off`` are true, and text is read as
Latin-1; and the routes syntax, where only spaces separate a condition from its targets.

Each :class:`Finding` has a stable id (``GRIP-PP001`` ...), listed in ``FINDINGS`` and in
docs/deploy-pushpin.md, so a CI job can ``--ignore`` one it has judged.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Literal

from ._config import GripSettings, Key
from ._errors import GripConfigError
from ._signature import ProxyVerifier, SigFailure, _HmacKey, _load_key
from .testing import make_grip_sig

__all__ = (
    "DEFAULT_LIBDIR",
    "FINDINGS",
    "CheckOptions",
    "Finding",
    "PushpinConfig",
    "Route",
    "RoutesFile",
    "Setting",
    "Severity",
    "check_pushpin",
    "findings_json",
    "load_pushpin",
    "parse_config",
    "parse_routes",
    "weak_verify_keys",
)

#: Where Debian's package (and Pushpin's default build) keeps ``internal.conf``.
DEFAULT_LIBDIR = "/usr/lib/pushpin"

#: Pushpin's stock ``sig_key``, published in its example config: a key anyone knows.
_PUBLIC_DEFAULT_KEY = b"changeme"
#: Below this many bytes an HMAC secret is guessable; the app warns about it too.
MIN_KEY_BYTES = 16


class Severity(StrEnum):
    """How bad a finding is: an error fails ``check``, a warning fails it with ``--strict``."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


#: Every finding id, with what it is about (docs/deploy-pushpin.md has the table).
FINDINGS: Mapping[str, str] = {
    "GRIP-PP000": "a file or key the check could not read, so settings went unchecked",
    "GRIP-PP001": "upstream_key is empty: any client can forge an upstream proxy's trust",
    "GRIP-PP002": "sig_key or sig_iss is empty: Grip-Sig is forgeable or missing",
    "GRIP-PP003": "a key is Pushpin's public default changeme, or under 16 bytes",
    "GRIP-PP004": "the app refuses the Grip-Sig that sig_key and sig_iss make",
    "GRIP-PP005": "the app's GRIP_URL has no key, so it trusts any Grip-Sig",
    "GRIP-PP006": "message_rate paces a publish's fan-out",
    "GRIP-PP007": "message_hwm drops deliveries past it",
    "GRIP-PP008": "id_cache_ttl is 0: a retried publish is delivered twice",
    "GRIP-PP009": "connection_subscription_max drops a connection's extra channels",
    "GRIP-PP010": "a publish interface is reachable beyond this machine",
    "GRIP-PP011": "a stats socket is reachable beyond this machine",
    "GRIP-PP012": "a route has a target without over_http",
    "GRIP-PP013": "accept_pushpin_route lets clients pick a route",
    "GRIP-PP014": "debug makes error responses name the backends",
    "GRIP-PP015": "a value Pushpin reads otherwise than it looks",
    "GRIP-PP016": "a routes line Pushpin skips",
}


@dataclass(frozen=True)
class Finding:
    """One risky setting: what it is now, what happens because of it, and the fix."""

    id: str
    severity: Severity
    #: The setting, e.g. ``[proxy] upstream_key``, or a route.
    setting: str
    #: What the setting is now, e.g. ``empty`` or ``2500 a second`` (never a secret).
    value: str
    consequence: str
    fix: str
    #: Where it is set; the main config file, with no line, for a setting left unset.
    file: str | None = None
    line: int | None = None

    def where(self) -> str:
        """``file:line``, ``file``, or ``""``."""
        if self.file is None:
            return ""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def line_text(self) -> str:
        """The finding on one line, as ``grip-asgi check`` prints it."""
        where = self.where()
        head = f"{where}: " if where else ""
        return (
            f"{head}{self.severity} {self.id} {self.setting} ({self.value}): "
            f"{self.consequence} Fix: {self.fix}"
        )

    def to_json(self) -> dict[str, object]:
        """The fields as a JSON-ready dict."""
        return {**asdict(self), "severity": str(self.severity)}


# --- pushpin.conf, read as Qt's QSettings reads an ini file ----------------------------------

#: A value as Qt reads it: text, or a list when an unquoted "," was in it.
Value = str | tuple[str, ...]


@dataclass(frozen=True)
class Setting:
    """One ``key=value`` line of a config file, with the value as Pushpin reads it."""

    value: Value
    file: str
    line: int


class PushpinConfig:
    """A ``pushpin.conf`` as Pushpin reads it: its own settings over those of its include.

    Keys are ``section/name`` (``proxy/sig_key``). The accessors convert as Pushpin's Qt code
    does: :meth:`text` is empty for a list, :meth:`number` is 0 for anything but an integer,
    :meth:`flag` is true for anything but ``""``, ``0`` and ``false``.
    """

    def __init__(
        self,
        settings: Mapping[str, Setting],
        *,
        file: str,
        include: Mapping[str, Setting] | None = None,
        libdir: str = DEFAULT_LIBDIR,
    ) -> None:
        self.file = file
        self._main = dict(settings)
        self._include = dict(include or {})
        # As Settings() in Pushpin's src/corelib/settings.cpp: these come from the main file
        # only, read before the include.
        self.libdir = self._raw_text("global/libdir") or libdir
        self._vars = {
            "{libdir}": self.libdir,
            "{rundir}": self._raw_text("global/rundir") or self._raw_text("runner/rundir"),
            "{ipc_prefix}": self._raw_text("global/ipc_prefix", "pushpin-"),
        }

    def with_include(self, include: PushpinConfig) -> PushpinConfig:
        """This config over ``include`` (its include file, as read by :func:`parse_config`)."""
        return PushpinConfig(self._main, file=self.file, include=include._main, libdir=self.libdir)

    def include_path(self) -> str | None:
        """The file ``[global] include`` names, as Pushpin resolves it; None if none."""
        include = self._raw_text("global/include")
        if include == "internal.conf":  # Pushpin's own special case
            include = "{libdir}/internal.conf"
        include = self.resolve(include)
        if not include:
            return None
        return os.path.join(os.path.dirname(self.file), include)  # absolute paths stay

    def sections(self) -> set[str]:
        """The sections this file (not its include) sets something in."""
        return {key.rpartition("/")[0] for key in self._main}

    def get(self, key: str) -> Setting | None:
        """The setting ``key`` (``section/name``) from this file, else from its include."""
        return self._main.get(key) or self._include.get(key)

    def resolve(self, text: str) -> str:
        """``{libdir}``, ``{rundir}`` and ``{ipc_prefix}`` replaced, as Pushpin does."""
        for name, value in self._vars.items():
            text = text.replace(name, value)
        return text

    def text(self, key: str, default: str = "") -> str:
        """``key`` as one string (Qt's ``toString()``: a list of several is ``""``)."""
        setting = self.get(key)
        if setting is None:
            return default
        return self.resolve(_as_text(setting.value))

    def texts(self, key: str) -> list[str]:
        """``key`` as a list of strings, empty items left out."""
        setting = self.get(key)
        if setting is None:
            return []
        items = setting.value if isinstance(setting.value, tuple) else (setting.value,)
        return [self.resolve(item.strip()) for item in items if item.strip()]

    def number(self, key: str, default: int) -> int:
        """``key`` as an integer (Qt's ``toInt()``: 0 when it is not one)."""
        setting = self.get(key)
        if setting is None:
            return default
        try:
            return int(_as_text(setting.value).strip(), 10)
        except ValueError:
            return 0

    def flag(self, key: str) -> bool:
        """``key`` as a boolean (Qt's ``toBool()``: only ``""``, ``0`` and ``false`` are false)."""
        setting = self.get(key)
        if setting is None or isinstance(setting.value, tuple):
            return False
        return setting.value.strip().lower() not in ("", "0", "false")

    def _raw_text(self, key: str, default: str = "") -> str:
        setting = self._main.get(key)
        return default if setting is None else _as_text(setting.value)


def _as_text(value: Value) -> str:
    if isinstance(value, tuple):
        return value[0] if len(value) == 1 else ""
    return value


def parse_config(
    data: bytes | str, *, file: str = "pushpin.conf", libdir: str = DEFAULT_LIBDIR
) -> PushpinConfig:
    """Read a ``pushpin.conf`` (its bytes; ``str`` is taken as written in UTF-8).

    The include is not read: see :meth:`PushpinConfig.include_path` and
    :meth:`PushpinConfig.with_include`, or :func:`load_pushpin`, which does both.
    """
    return PushpinConfig(_parse_ini(data, file), file=file, libdir=libdir)


def _parse_ini(data: bytes | str, file: str) -> dict[str, Setting]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    # Qt 5's QSettings reads an ini file as Latin-1, and Pushpin turns a value back into bytes
    # as UTF-8: a key "clé" in a UTF-8 file signs with "clÃ©" (observed on Pushpin 1.36).
    text = data.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    settings: dict[str, Setting] = {}
    section = ""
    for number, line in _ini_lines(text):
        if line.startswith("["):
            end = line.find("]")
            section = (line[1:end] if end != -1 else line[1:]).strip()
            section = "" if section.lower() == "general" else section
            continue
        equals = _unquoted_index(line, "=")
        if equals == -1:
            continue  # Qt skips a line without "=" (so "# comment" lines are skipped)
        name = line[:equals].strip()
        if name:
            key = f"{section}/{name}" if section else name
            # A repeated key: the last one wins.
            settings[key] = Setting(_ini_value(line[equals + 1 :]), file, number)
    return settings


def _ini_lines(text: str) -> Iterator[tuple[int, str]]:
    """Qt's logical lines, with their first line number (``QConfFileSettingsPrivate::
    readIniLine``): ``;`` outside quotes starts a comment, and a line break inside quotes or
    after a backslash does not end the line."""
    i, end, number = 0, len(text), 1
    while i < end:
        while i < end and text[i] in " \t\r\n\f\v":
            number += text[i] == "\n"
            i += 1
        if i < end and text[i] == ";":
            while i < end and text[i] not in "\r\n":
                i += 1
            continue
        start, first = i, number
        in_quotes = False
        while i < end:
            char = text[i]
            if char in "\r\n;" and not in_quotes:
                break
            if char == "\\" and i + 1 < end:
                # The next character is escaped: \r\n or \n\r as one line break.
                escaped = text[i + 1 : i + 3]
                escaped = escaped if escaped in ("\r\n", "\n\r") else text[i + 1]
                number += "\n" in escaped
                i += 1 + len(escaped)
                continue
            if char == '"':
                in_quotes = not in_quotes
            else:
                number += char == "\n"
            i += 1
        if i > start:
            yield first, text[start:i]


def _unquoted_index(line: str, wanted: str) -> int:
    in_quotes = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            in_quotes = not in_quotes
        elif char == wanted and not in_quotes:
            return i
        i += 1
    return -1


_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    '"': '"', "?": "?", "'": "'", "\\": "\\",
}  # fmt: skip
_HEX = "0123456789abcdefABCDEF"


def _ini_value(raw: str) -> Value:
    """A value as ``QSettingsPrivate::iniUnescapedStringList`` and ``stringToVariant`` read
    it: quotes, C escapes, an unquoted ``,`` makes a list, and ``@`` a type marker."""
    items: list[str] = []
    current: list[str] = []
    is_list = in_quotes = quoted = False
    keep = 0  # characters before this index are never trimmed (escaped or quoted)
    i, end = 0, len(raw)

    def skip_spaces(at: int) -> int:
        while at < end and raw[at] in " \t":
            at += 1
        return at

    def trim() -> None:
        while len(current) > keep and current[-1] in " \t":
            current.pop()

    i = skip_spaces(i)
    while i < end:
        char = raw[i]
        if char == "\\":
            i += 1
            if i >= end:
                break
            escape = raw[i]
            i += 1
            if escape in _ESCAPES:
                current.append(_ESCAPES[escape])
            elif escape == "x" or escape in "01234567":
                digits, base = (_HEX, 16) if escape == "x" else ("01234567", 8)
                start = i if escape == "x" else i - 1
                while i < end and raw[i] in digits:
                    i += 1
                if i > start:
                    current.append(chr(int(raw[start:i], base) & 0xFFFF))
            elif escape in "\r\n" and i < end and raw[i] in "\r\n" and raw[i] != escape:
                i += 1  # an escaped line break (\r\n or \n\r) continues the value
            # Qt drops any other escaped character, backslash and all.
            keep = len(current)
        elif char == '"':
            i += 1
            quoted = True
            in_quotes = not in_quotes
            if not in_quotes:
                i = skip_spaces(i)
                keep = len(current)
        elif char == "," and not in_quotes:
            if not quoted:
                trim()
            items.append("".join(current))
            current, is_list, quoted, keep = [], True, False, 0
            i = skip_spaces(i + 1)
        else:
            current.append(char)
            i += 1
    if not quoted:
        trim()
    items.append("".join(current))
    values = [_qt_variant(item) for item in items]
    return tuple(values) if is_list else values[0]


def _qt_variant(text: str) -> str:
    # QSettingsPrivate::stringToVariant: "@" starts a type marker, "@@" is a literal "@".
    if text.startswith("@") and text.endswith(")"):
        for marker in ("@ByteArray(", "@String("):
            if text.startswith(marker):
                return text[len(marker) : -1]
        if text == "@Invalid()":
            return ""  # an invalid QVariant: "" and 0 to Pushpin's toString() and toInt()
    return text[1:] if text.startswith("@@") else text


# --- routes, read as Pushpin's src/proxy/routesfile.cpp and domainmap.cpp read them -----------


@dataclass(frozen=True)
class RouteSection:
    """A condition or a target: its first value and its ``name=value`` options."""

    value: str
    options: Mapping[str, tuple[str, ...]]

    def option(self, name: str) -> str | None:
        """The option's last value (as Pushpin's QMultiHash gives it); None when absent."""
        values = self.options.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Route:
    """One routes line Pushpin accepts: a condition and its targets."""

    line: int
    text: str
    condition: RouteSection
    targets: tuple[RouteSection, ...]


@dataclass(frozen=True)
class RoutesFile:
    """A routes file: the routes Pushpin uses, and the lines it skips with the reason."""

    file: str
    routes: tuple[Route, ...] = ()
    skipped: tuple[tuple[int, str, str], ...] = ()


class _RouteSyntaxError(ValueError):
    pass


def parse_routes(data: bytes | str, *, file: str = "routes") -> RoutesFile:
    """Read a routes file (its bytes or text), keeping the lines Pushpin would skip apart."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    routes: list[Route] = []
    skipped: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            sections = _route_sections(line)
            if not sections:
                continue  # blank, or a comment
            routes.append(_route(number, line, sections))
        except _RouteSyntaxError as exc:
            skipped.append((number, line.strip(), str(exc)))
    return RoutesFile(file, tuple(routes), tuple(skipped))


def _route_sections(line: str) -> list[RouteSection]:
    """The sections of a line: runs separated by spaces (only spaces: not tabs), each a
    value then ``,name=value`` options; ``"..."`` quotes; ``#`` ends the line."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    i, end = 0, len(line)
    while True:
        while i < end and line[i] == " ":
            i += 1
        if i >= end or line[i] == "#":
            break
        first = True
        while True:
            part, i = _route_part(line, i)
            if first and "=" not in part:
                sections.append((part, {}))
            else:
                if first:
                    sections.append(("", {}))  # "name=value" first: no value, options only
                name, _, value = part.partition("=")
                if not part:
                    raise _RouteSyntaxError("an empty option")
                if not name:
                    raise _RouteSyntaxError(f"an option without a name: {part!r}")
                sections[-1][1].setdefault(name, []).append(value)
            first = False
            if i < end and line[i] == ",":
                i += 1
                continue
            break
    return [
        RouteSection(value, {name: tuple(values) for name, values in options.items()})
        for value, options in sections
    ]


def _route_part(line: str, i: int) -> tuple[str, int]:
    """One value or option, up to the next unquoted ``,``, space or ``#``."""
    part: list[str] = []
    end = len(line)
    while i < end and line[i] not in ", #":
        if line[i] != '"':
            part.append(line[i])
            i += 1
            continue
        i += 1
        while True:
            if i >= end:
                raise _RouteSyntaxError("an unterminated quote")
            if line[i] == '"':
                i += 1
                break
            if line[i] == "\\":
                if i + 1 >= end or line[i + 1] not in '\\"':
                    raise _RouteSyntaxError('a backslash not followed by \\ or " in quotes')
                i += 1
            part.append(line[i])
            i += 1
    return "".join(part), i


def _route(number: int, line: str, sections: list[RouteSection]) -> Route:
    # The checks of DomainMap's parseRouteLine() that make Pushpin skip a line.
    if len(sections) < 2:
        raise _RouteSyntaxError(
            "no target after the condition (only spaces separate them, not tabs)"
        )
    condition, targets = sections[0], tuple(sections[1:])
    for name, allowed in (("proto", ("http", "ws")), ("ssl", ("yes", "no"))):
        value = condition.option(name)
        if value is not None and value not in allowed:
            raise _RouteSyntaxError(f"{name} must be {' or '.join(allowed)}, not {value!r}")
    if condition.option("path_beg") == "":
        raise _RouteSyntaxError("path_beg is empty")
    for target in targets:
        if target.value == "test" or target.value.startswith(("zhttp/", "zhttpreq/")):
            continue
        _, colon, port = target.value.partition(":")  # the first ":", as Pushpin 1.36
        if not colon:
            raise _RouteSyntaxError(f"target {target.value!r} is not host:port")
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise _RouteSyntaxError(f"target {target.value!r} has no valid port")
    return Route(number, line.strip(), condition, targets)


# --- Reading the files ------------------------------------------------------------------------


def load_pushpin(
    config_path: str,
    routes_path: str | None = None,
    *,
    libdir: str = DEFAULT_LIBDIR,
) -> tuple[PushpinConfig, RoutesFile | None, list[Finding]]:
    """Read ``config_path``, its include, and its routes (``routes_path``, else the config's
    ``routesfile``), as Pushpin finds them.

    Returns the config, the routes (None when the config's own routes file is missing), and
    ``GRIP-PP000`` notes for an include or routes file that could not be read.

    Raises:
        OSError: ``config_path``, or a ``routes_path`` that was given, cannot be read.
        ValueError: ``config_path`` is no Pushpin config (it has none of its sections).
    """
    with open(config_path, "rb") as file:
        data = file.read()
    config = parse_config(data, file=config_path, libdir=libdir)
    if not config.sections() & {"runner", "proxy", "handler"}:
        raise ValueError(f"{config_path} has no [runner], [proxy] or [handler] section")
    notes: list[Finding] = []
    include = config.include_path()
    if include is not None:
        try:
            with open(include, "rb") as file:
                config = config.with_include(parse_config(file.read(), file=include))
        except OSError as exc:
            notes.append(_unread(config, "global/include", include, exc))
    given = routes_path is not None
    if routes_path is None:
        routes_path = os.path.join(os.path.dirname(config_path), config.text("proxy/routesfile"))
    try:
        with open(routes_path, "rb") as file:
            data = file.read()
    except OSError as exc:
        if given:
            raise
        notes.append(_unread(config, "proxy/routesfile", routes_path, exc))
        return config, None, notes
    return config, parse_routes(data, file=routes_path), notes


def _unread(config: PushpinConfig, key: str, path: str, exc: OSError) -> Finding:
    section, _, name = key.partition("/")
    return Finding(
        "GRIP-PP000",
        Severity.INFO,
        f"[{section}] {name}",
        f"{path}: {exc.strerror or exc}",
        "The settings in that file were not checked.",
        "Run the check where Pushpin's files are, or name them: --libdir for"
        " {libdir}/internal.conf, the second argument for the routes file.",
        config.file,
        _line(config, key),
    )


def _line(config: PushpinConfig, key: str) -> int | None:
    setting = config.get(key)
    return None if setting is None or setting.file != config.file else setting.line


# --- The checks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOptions:
    """What the check knows beyond the files: the app's GRIP settings and the audience."""

    #: The app's settings (its ``GRIP_URL``): checked against ``sig_key`` and ``sig_iss``.
    grip: GripSettings | None = None
    #: Subscribers of the largest channel, to check ``message_rate`` and ``message_hwm``.
    audience: int | None = None
    #: Most channels one connection subscribes to.
    channels_per_connection: int | None = None
    #: Paths WebSocket clients connect to, e.g. ``("/chat",)``.
    websocket_paths: Sequence[str] = ()
    #: The longest a publish may take to reach the whole audience, in seconds.
    max_fanout_seconds: float = 1.0
    #: Finding ids to leave out.
    ignore: frozenset[str] = field(default_factory=frozenset)


def check_pushpin(
    config: PushpinConfig, routes: RoutesFile | None = None, options: CheckOptions | None = None
) -> list[Finding]:
    """Every risky setting of ``config`` and ``routes``, errors first.

    Raises:
        GripConfigError: a key in ``options.grip`` does not load (the app would not start).
    """
    options = options or CheckOptions()
    findings = [
        finding
        for rule in _RULES
        for finding in rule(_Context(config, routes, options))
        if finding.id not in options.ignore
    ]
    return sorted(findings, key=lambda f: (list(Severity).index(f.severity), f.id))


@dataclass(frozen=True)
class _Context:
    config: PushpinConfig
    routes: RoutesFile | None
    options: CheckOptions

    def finding(
        self, id: str, severity: Severity, key: str, value: str, consequence: str, fix: str
    ) -> Finding:
        """A finding about the setting ``key`` (``section/name``), located where it is set."""
        setting = self.config.get(key)
        section, _, name = key.rpartition("/")
        return Finding(
            id,
            severity,
            f"[{section}] {name}",
            value,
            consequence,
            fix,
            self.config.file if setting is None else setting.file,
            None if setting is None else setting.line,
        )

    def route_finding(
        self, id: str, severity: Severity, route: Route, value: str, consequence: str, fix: str
    ) -> Finding:
        """A finding about ``route``, located at its line."""
        file = None if self.routes is None else self.routes.file
        return Finding(
            id, severity, f"route {route.text!r}", value, consequence, fix, file, route.line
        )

    def about(
        self,
        route: Route | None,
        id: str,
        severity: Severity,
        key: str,
        value: str,
        consequence: str,
        fix: str,
    ) -> Finding:
        """A finding about ``key``, or (given ``route``) about the route's option of that name."""
        if route is None:
            return self.finding(id, severity, key, value, consequence, fix)
        value = f"{key.partition('/')[2]}: {value}"
        return self.route_finding(id, severity, route, value, consequence, fix)


_Rule = Callable[[_Context], Iterable[Finding]]

_SECRET_FIX = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def _described(ctx: _Context, key: str) -> str:
    """How an unset, empty or misread setting looks, for a finding's value."""
    setting = ctx.config.get(key)
    if setting is None:
        return "unset"
    if isinstance(setting.value, tuple):
        return "read as empty: an unquoted comma made it a list"
    return "a base64: key of no bytes" if setting.value else "empty"


def _check_upstream_key(ctx: _Context) -> Iterator[Finding]:
    # src/proxy/app.cpp: DecodingKey::fromConfigString("") is an empty HMAC key in 1.36 to
    # 1.41, and proxyutil.cpp trusts any Grip-Sig it verifies (fixed after 1.41, #48353).
    if _pushpin_secret(ctx.config.text("proxy/upstream_key")) == b"":
        yield ctx.finding(
            "GRIP-PP001",
            Severity.ERROR,
            "proxy/upstream_key",
            _described(ctx, "proxy/upstream_key"),
            "On Pushpin 1.36 to 1.41 any client can sign its own Grip-Sig with the empty key and"
            " pass as a trusted upstream proxy: its Grip-* headers reach the app, and the app's"
            " raw GRIP instructions come back to it.",
            f"Set upstream_key to a long random secret (e.g. {_SECRET_FIX}), even with no"
            " proxy in front of Pushpin.",
        )


def _check_signing(ctx: _Context) -> Iterator[Finding]:
    # proxyutil.cpp signs only when sig_iss is set, with sig_key even when it is empty.
    if not ctx.config.text("proxy/sig_iss", "pushpin"):
        yield ctx.finding(
            "GRIP-PP002",
            Severity.ERROR,
            "proxy/sig_iss",
            _described(ctx, "proxy/sig_iss"),
            "Pushpin sends no Grip-Sig, so an app with a verify key takes every request as"
            " direct, and one without takes anybody's Grip-Sig.",
            "Set sig_iss=pushpin and give it to the app as verify-iss in GRIP_URL.",
        )
    elif _pushpin_secret(ctx.config.text("proxy/sig_key")) == b"":
        yield ctx.finding(
            "GRIP-PP002",
            Severity.ERROR,
            "proxy/sig_key",
            _described(ctx, "proxy/sig_key"),
            "Pushpin 1.36 to 1.41 sign Grip-Sig with an empty key anyone can use, so the app"
            " cannot tell Pushpin's requests from a client's.",
            f"Set sig_key to a long random secret (e.g. {_SECRET_FIX}) and give it to the app"
            " as verify-key in GRIP_URL.",
        )


def _check_weak_keys(ctx: _Context) -> Iterator[Finding]:
    consequences = {
        "proxy/sig_key": "Anyone who knows or guesses it can sign requests the app takes as"
        " Pushpin's.",
        "proxy/upstream_key": "Anyone who knows or guesses it can pass as a trusted upstream"
        " proxy, and send Grip-* headers through Pushpin to the app.",
    }
    keys: list[tuple[Route | None, str, str]] = [
        (None, key, ctx.config.text(key)) for key in consequences
    ]
    keys += [
        (route, "proxy/sig_key", value)
        for route in _routes(ctx)
        if (value := route.condition.option("sig_key")) is not None
    ]
    for route, key, value in keys:
        secret = _pushpin_secret(value)
        weakness = _weakness(secret) if secret else None
        if weakness is not None:
            yield ctx.about(
                route,
                "GRIP-PP003",
                Severity.WARNING,
                key,
                weakness,
                consequences[key],
                f"Replace it with a random secret of {MIN_KEY_BYTES} bytes or more (e.g."
                f" {_SECRET_FIX}), and give the app the new sig_key.",
            )


def _signers(ctx: _Context) -> list[tuple[Route | None, str, str]]:
    """(route, sig_iss, sig_key): how Pushpin signs, and how each route that overrides it."""
    iss = ctx.config.text("proxy/sig_iss", "pushpin")
    key = ctx.config.text("proxy/sig_key")
    signers: list[tuple[Route | None, str, str]] = [(None, iss, key)]
    for route in _routes(ctx):
        route_iss, route_key = route.condition.option("sig_iss"), route.condition.option("sig_key")
        if route_iss is not None or route_key is not None:
            # 1.37 and later take either alone; 1.36 only both together (domainmap.cpp).
            signers.append((route, route_iss or iss, route_key or key))
    return signers


def _check_app_keys(ctx: _Context) -> Iterator[Finding]:
    grip = ctx.options.grip
    if grip is None:
        return
    verifier = ProxyVerifier(grip.proxies, verify_key=grip.verify_key)
    if not verifier.any_has_key:
        yield Finding(
            "GRIP-PP005",
            Severity.ERROR,
            "GRIP_URL",
            "no verify-key",
            "The app takes any Grip-Sig header as the proxy's, so any client that reaches it"
            " directly can pose as Pushpin.",
            "Add verify-iss=<sig_iss>&verify-key=<sig_key> to the app's GRIP_URL.",
            ctx.config.file,
        )
        return
    for route, sig_iss, sig_key in _signers(ctx):
        if sig_key.startswith("file:"):
            yield ctx.about(
                route,
                "GRIP-PP000",
                Severity.INFO,
                "proxy/sig_key",
                "a key file",
                "A PEM key file is not compared with the app's verify key.",
                "Check that GRIP_URL's verify-key is the public half of that key.",
            )
            continue
        secret = _pushpin_secret(sig_key)
        if not sig_iss or not secret:
            continue  # no Grip-Sig, or an empty key: GRIP-PP002
        # The time does not matter: the token is signed and checked at the same instant.
        reason = verifier.verify(make_grip_sig(secret, iss=sig_iss, now=0), 0).reason
        if reason is None:
            continue
        if reason is SigFailure.WRONG_ISSUER:
            key, value = "proxy/sig_iss", f"{sig_iss!r}, not the app's verify-iss"
        else:
            key, value = "proxy/sig_key", "not the app's verify-key"
        yield ctx.about(
            route,
            "GRIP-PP004",
            Severity.ERROR,
            key,
            value,
            "The app refuses every Grip-Sig this Pushpin sends, so no request counts as"
            " proxied: WebSockets get no context and GRIP instructions fail.",
            "Make the verify-key (and verify-iss) in the app's GRIP_URL Pushpin's sig_key"
            " (and sig_iss).",
        )


def _check_message_rate(ctx: _Context) -> Iterator[Finding]:
    # src/handler/ratelimiter.cpp: message_rate deliveries a second for the whole instance;
    # 0 or less (the default when unset) means no limit.
    rate = ctx.config.number("handler/message_rate", -1)
    if rate <= 0:
        return
    audience = ctx.options.audience
    value = f"{rate:,} a second"
    if audience is None:
        yield ctx.finding(
            "GRIP-PP006",
            Severity.INFO,
            "handler/message_rate",
            value,
            f"Pushpin sends at most {rate:,} messages a second in all, so one publish to"
            f" 10,000 subscribers takes {10_000 / rate:.3g} s to reach the last of them.",
            "Give --audience (your largest channel's subscribers) to check it; raise"
            " message_rate, or set it to -1 (no limit), if that is too slow.",
        )
        return
    seconds = audience / rate
    if seconds > ctx.options.max_fanout_seconds:
        yield ctx.finding(
            "GRIP-PP006",
            Severity.WARNING,
            "handler/message_rate",
            value,
            f"One publish to {audience:,} subscribers takes {seconds:.3g} s to reach the last"
            " of them, and every publish after it waits its turn.",
            f"Raise message_rate to {audience / ctx.options.max_fanout_seconds:,.0f} or more,"
            " or set it to -1 (no limit).",
        )


def _check_message_hwm(ctx: _Context) -> Iterator[Finding]:
    # src/handler/handlerengine.cpp (engine.cpp in 1.36): each delivery joins its route's
    # queue (one per route id=, one shared by routes without); past message_hwm it is
    # dropped with only a WARN "exceeded publish hwm", and the publish still succeeds.
    hwm = ctx.config.number("handler/message_hwm", -1)
    if hwm <= 0:
        return
    audience = ctx.options.audience
    value = f"{hwm:,} queued deliveries"
    if audience is None:
        yield ctx.finding(
            "GRIP-PP007",
            Severity.INFO,
            "handler/message_hwm",
            value,
            f"Past {hwm:,} deliveries queued on a route (one per subscriber of each publish),"
            " Pushpin drops the rest with only a log warning, while the publish still"
            ' answers "Published".',
            "Give --audience to check it against your largest channel.",
        )
    elif audience > hwm:
        yield ctx.finding(
            "GRIP-PP007",
            Severity.ERROR,
            "handler/message_hwm",
            value,
            f"One publish to {audience:,} subscribers on a route drops {audience - hwm:,}"
            " deliveries with only a log warning, while the publish answers"
            ' "Published".',
            f"Raise message_hwm above {audience:,}, with room for publishes in a row.",
        )


def _check_id_cache(ctx: _Context) -> Iterator[Finding]:
    # src/handler/handlerapp.cpp: id_cache_ttl defaults to 0; sequencer.cpp drops a repeated
    # (channel, id) only while it is cached.
    ttl = ctx.config.number("handler/id_cache_ttl", 0)
    if ttl <= 0:
        setting = ctx.config.get("handler/id_cache_ttl")
        yield ctx.finding(
            "GRIP-PP008",
            Severity.WARNING,
            "handler/id_cache_ttl",
            "unset (0)" if setting is None else str(ttl),
            "Pushpin forgets item ids at once, so a publish retried after a lost answer"
            " (grip-asgi retries items that have an id) is delivered twice.",
            "Set id_cache_ttl=60 (seconds), as Pushpin's stock config does.",
        )


def _check_subscriptions(ctx: _Context) -> Iterator[Finding]:
    # src/handler/httpsession.cpp drops a hold's channels past connection_subscription_max
    # (default 20) with a log warning; engine.cpp ignores a WebSocket's extra subscribes.
    limit = ctx.config.number("handler/connection_subscription_max", 20)
    wanted = ctx.options.channels_per_connection
    unset = ctx.config.get("handler/connection_subscription_max") is None
    value = f"{limit} channels" + (", the default" if unset else "")
    if wanted is None:
        yield ctx.finding(
            "GRIP-PP009",
            Severity.INFO,
            "handler/connection_subscription_max",
            value,
            f"A connection's subscriptions past {limit} channels are dropped (Pushpin at most"
            " logs it), so publishes to those channels never reach it.",
            "Give --channels-per-connection to check it; raise the setting if a connection"
            " needs more.",
        )
    elif wanted > limit:
        yield ctx.finding(
            "GRIP-PP009",
            Severity.WARNING,
            "handler/connection_subscription_max",
            value,
            f"A connection that subscribes to {wanted} channels loses {wanted - limit} of"
            " them: publishes there never reach it.",
            f"Set connection_subscription_max={wanted} or more.",
        )


#: How far an address reaches: it decides a bound port's severity.
_Reach = Literal["loopback", "private", "unknown", "public", "everywhere"]
_REACH_WORDS: Mapping[_Reach, str] = {
    "everywhere": "every interface",
    "public": "a public address",
    "private": "a private address",
    "unknown": "not known to be loopback",
    "loopback": "loopback",
}


def _reach(host: str) -> _Reach:
    host = host.strip("[]")
    if host in ("*", "", "0.0.0.0", "::"):
        return "everywhere"
    if host in ("localhost", "lo"):  # "lo": ZeroMQ binds to an interface by its name
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"  # another interface or host name
    if address.is_loopback:
        return "loopback"
    return "public" if address.is_global else "private"


def _zmq_host(spec: str) -> str | None:
    """The host of a ``tcp://host:port`` spec; None for ipc://, inproc:// and the like."""
    if not spec.startswith("tcp://"):
        return None
    return spec[len("tcp://") :].rpartition(":")[0]


def _publish_interfaces(config: PushpinConfig) -> Iterator[tuple[str, str, str | None]]:
    """(setting, address, host) of each interface that takes publishes (host None: local)."""
    if config.get("handler/push_in_http_port") is not None:
        # SimpleHttpServer listens on QHostAddress(push_in_http_addr): a host name, or
        # nothing, is no address, which listens on every interface (observed on 1.36).
        address = config.text("handler/push_in_http_addr")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            address = "0.0.0.0"
        port = config.number("handler/push_in_http_port", -1)
        if port > 0:
            port += config.number("global/port_offset", 0)
        yield "handler/push_in_http_addr", f"{address}:{port}", address
    for key in ("handler/push_in_spec", "handler/command_spec"):
        spec = config.text(key)
        yield key, spec, _zmq_host(spec)
    if not config.flag("handler/push_in_sub_connect"):  # else they name publishers elsewhere
        for spec in config.texts("handler/push_in_sub_specs"):
            yield "handler/push_in_sub_specs", spec, _zmq_host(spec)


def _check_exposed_ports(ctx: _Context) -> Iterator[Finding]:
    for key, address, host in _publish_interfaces(ctx.config):
        reach = "loopback" if host is None else _reach(host)
        if reach == "loopback":
            continue
        yield ctx.finding(
            "GRIP-PP010",
            Severity.ERROR if reach in ("everywhere", "public") else Severity.WARNING,
            key,
            f"{address}: {_REACH_WORDS[reach]}",
            "Pushpin authenticates nothing on its publish interfaces, so anyone who can reach"
            " this one can publish to any channel.",
            "Bind it to 127.0.0.1 (or to a private address only your publishers reach, behind"
            " a firewall).",
        )
    for key in ("handler/stats_spec", "proxy/stats_spec"):
        host = _zmq_host(ctx.config.text(key))
        reach = "loopback" if host is None else _reach(host)
        if reach != "loopback":
            yield ctx.finding(
                "GRIP-PP011",
                Severity.WARNING,
                key,
                f"{ctx.config.text(key)}: {_REACH_WORDS[reach]}",
                "Anyone who can reach it sees every channel name and subscriber count, and"
                " each client's IP address.",
                "Bind it to an ipc:// path or to 127.0.0.1.",
            )


def _check_over_http(ctx: _Context) -> Iterator[Finding]:
    for route in _routes(ctx):
        if route.condition.option("proto") == "http":
            continue  # no WebSocket ever takes this route
        plain = [
            target.value
            for target in route.targets
            if target.value != "test" and "over_http" not in target.options
        ]
        if not plain:
            continue
        prefix = route.condition.option("path_beg") or ""
        matching = [path for path in ctx.options.websocket_paths if path.startswith(prefix)]
        value = f"{', '.join(plain)} without over_http"
        fix = f"Add over_http to each target, e.g. {plain[0]},over_http."
        if matching:
            yield ctx.route_finding(
                "GRIP-PP012",
                Severity.WARNING,
                route,
                value,
                f"WebSocket clients of {', '.join(matching)} reach the app as plain WebSockets,"
                " not as WebSocket-over-HTTP, so its GRIP WebSocket handlers never see them.",
                fix,
            )
        else:
            yield ctx.route_finding(
                "GRIP-PP012",
                Severity.INFO,
                route,
                value,
                "A WebSocket client on this route reaches the app as a plain WebSocket, which"
                " GripMiddleware and grip_django do not handle (give --websocket-path to check"
                " your WebSocket paths).",
                fix,
            )


def _check_proxy_flags(ctx: _Context) -> Iterator[Finding]:
    # src/proxy/engine.cpp: with accept_pushpin_route, the Pushpin-Route header picks the
    # route by id.
    if ctx.config.flag("proxy/accept_pushpin_route"):
        yield ctx.finding(
            "GRIP-PP013",
            Severity.WARNING,
            "proxy/accept_pushpin_route",
            ctx.config.text("proxy/accept_pushpin_route"),
            "Any client can pick a route by its id with a Pushpin-Route header, whatever the"
            " route's host and path conditions say.",
            "Set accept_pushpin_route=false, unless a trusted proxy in front sets that header.",
        )
    # src/proxy/proxysession.cpp: debug error responses name the targets tried (observed:
    # "Unable to connect to any targets. Tried: 127.0.0.1:8000").
    if ctx.config.flag("proxy/debug"):
        yield ctx.finding(
            "GRIP-PP014",
            Severity.INFO,
            "proxy/debug",
            ctx.config.text("proxy/debug"),
            "Pushpin's error responses tell clients which backends it tried and why it failed.",
            "Set debug=false in production.",
        )
    for route in _routes(ctx):
        if route.condition.option("debug") is not None:
            yield ctx.route_finding(
                "GRIP-PP014",
                Severity.INFO,
                route,
                "debug",
                "This route's error responses tell clients which backends it tried.",
                "Remove the route's debug option in production.",
            )


#: Settings Pushpin reads with Qt's toBool(), where "no" and "off" are true
#: (src/proxy/app.cpp, src/handler/handlerapp.cpp, src/runner).
_FLAGS = (
    "global/stats_connection_send",
    "runner/allow_compression",
    "proxy/debug",
    "proxy/auto_cross_origin",
    "proxy/accept_x_forwarded_protocol",
    "proxy/accept_pushpin_route",
    "proxy/log_from",
    "proxy/log_user_agent",
    "handler/push_in_sub_connect",
    "handler/share_all",
    "handler/update_on_first_subscription",
)
#: Single-valued settings this check reads, and what a list (an unquoted comma) makes of
#: them: Qt's toString() of a list is "", its toInt() 0.
_SINGLE: Mapping[str, str] = {
    "proxy/sig_iss": "empty",
    "proxy/sig_key": "empty",
    "proxy/upstream_key": "empty",
    "handler/push_in_http_addr": "empty",
    "handler/push_in_http_port": "0",
    "handler/push_in_spec": "empty",
    "handler/command_spec": "empty",
    "handler/stats_spec": "empty",
    "handler/message_rate": "0",
    "handler/message_hwm": "0",
    "handler/id_cache_ttl": "0",
    "handler/connection_subscription_max": "0",
}


def _check_misread(ctx: _Context) -> Iterator[Finding]:
    for key in _FLAGS:
        setting = ctx.config.get(key)
        if setting is None or isinstance(setting.value, tuple):
            continue
        if setting.value.strip().lower() in ("no", "off", "n", "disabled", "disable"):
            yield ctx.finding(
                "GRIP-PP015",
                Severity.WARNING,
                key,
                f"{setting.value!r}, read as true",
                f"Pushpin reads any value but false, 0 or nothing as true, so {key} is on.",
                f"Write {key.partition('/')[2]}=false.",
            )
    for key, read_as in _SINGLE.items():
        setting = ctx.config.get(key)
        if setting is not None and isinstance(setting.value, tuple):
            yield ctx.finding(
                "GRIP-PP015",
                Severity.WARNING,
                key,
                f"read as {read_as}: an unquoted comma made it a list",
                "Pushpin reads a value with an unquoted comma as a list, and this setting as"
                f" {read_as}.",
                f'Quote the value: {key.partition("/")[2]}="...".',
            )


def _check_skipped_routes(ctx: _Context) -> Iterator[Finding]:
    if ctx.routes is None:
        return
    for number, text, reason in ctx.routes.skipped:
        yield Finding(
            "GRIP-PP016",
            Severity.WARNING,
            f"route {text!r}",
            reason,
            "Pushpin skips this line (with only a log warning), so its requests take another"
            " route or get an error.",
            "Fix the line: a condition, a space, then targets like 127.0.0.1:8000,over_http.",
            ctx.routes.file,
            number,
        )


def _routes(ctx: _Context) -> tuple[Route, ...]:
    return () if ctx.routes is None else ctx.routes.routes


_RULES: tuple[_Rule, ...] = (
    _check_upstream_key,
    _check_signing,
    _check_weak_keys,
    _check_app_keys,
    _check_message_rate,
    _check_message_hwm,
    _check_id_cache,
    _check_subscriptions,
    _check_exposed_ports,
    _check_over_http,
    _check_proxy_flags,
    _check_misread,
    _check_skipped_routes,
)


# --- Keys -------------------------------------------------------------------------------------


def _pushpin_secret(value: str) -> bytes | None:
    """The HMAC secret Pushpin makes of a key setting (``Jwt::*Key::fromConfigString``);
    None for a ``file:`` (PEM) key."""
    if value.startswith("file:"):
        return None
    if value.startswith("base64:"):
        # QByteArray::fromBase64 skips every character outside the alphabet, "=" included,
        # and drops the bits that do not make a whole byte.
        text = "".join(c for c in value[7:] if c.isascii() and (c.isalnum() or c in "+/"))
        text = text[: len(text) - len(text) % 4 if len(text) % 4 == 1 else len(text)]
        return base64.b64decode(text + "=" * (-len(text) % 4))
    return value.encode("utf-8")


def _weakness(secret: bytes) -> str | None:
    if secret == _PUBLIC_DEFAULT_KEY:
        return "Pushpin's public default 'changeme'"
    if len(secret) < MIN_KEY_BYTES:
        return f"only {len(secret)} bytes"
    return None


def weak_verify_keys(settings: GripSettings) -> list[str]:
    """What is weak about the app's ``Grip-Sig`` verify keys, one line per key: Pushpin's
    public default ``changeme``, or a secret under 16 bytes. PEM and JWK public keys, and
    keys that do not load, are left out."""
    verify_key = settings.verify_key
    keys: list[tuple[str, Key | None]] = [
        # As ProxyVerifier: a proxy's own key, else the app-wide one.
        (f"the Grip-Sig verify key of {proxy.control_uri}", proxy.signature_key or verify_key)
        for proxy in settings.proxies
    ]
    if not settings.proxies:
        keys.append(("the Grip-Sig verify key", verify_key))
    problems: list[str] = []
    for name, key in keys:
        try:
            loaded = _load_key(key)
        except GripConfigError:
            continue  # reported where the key is used
        if isinstance(loaded, _HmacKey):
            weakness = _weakness(loaded._secret)
            if weakness is not None:
                problems.append(f"{name} is {weakness}")
    return problems


def findings_json(findings: Sequence[Finding], config: str, routes: str | None) -> str:
    """The ``--json`` output: the files, the findings, and a count per severity."""
    counts = {str(s): sum(f.severity is s for f in findings) for s in Severity}
    document = {
        "config": config,
        "routes": routes,
        "findings": [finding.to_json() for finding in findings],
        "counts": counts,
    }
    return json.dumps(document, indent=2)
