"""What the peer process and the test process share: cases, observations, a capture server.

A case is a function of a :class:`Harness` that uses ``harness.api`` (the peer's names, or
ours) and returns plain data: what an app would see. :func:`run_case` turns that, or the
exception raised, into JSON, so the peer's observation (made in :mod:`tests.compat.oracle`)
and ours compare with ``==``. This module imports neither the peers nor grip_asgi.
"""

from __future__ import annotations

import base64
import builtins
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

Case = Callable[["Harness"], object]


@dataclass
class Harness:
    """What a case gets: the API under test, and a publish endpoint that records requests."""

    api: Any
    capture: CaptureServer
    #: Free for a cases module's own setup.
    state: dict[str, Any] = field(default_factory=dict)


class CaseRegistry(dict[str, Case]):
    """The cases of a module, by function name, in definition order."""

    def __call__(self, function: Case) -> Case:
        if function.__name__ in self:
            raise ValueError(f"case {function.__name__} is defined twice")
        self[function.__name__] = function
        return function


def observe(value: object) -> Any:
    """``value`` as JSON: bytes become ``{"bytes": <latin-1 text>}``, tuples lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).decode("latin-1")}
    if isinstance(value, (list, tuple)):
        return [observe(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): observe(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(observe(item) for item in value)
    raise TypeError(f"a case must return plain data, not {type(value).__name__}")


def raised(exc: BaseException) -> str:
    """The most specific built-in class of ``exc``: what a caller's ``except`` can name."""
    for kind in type(exc).__mro__:
        name: str = kind.__name__
        if getattr(builtins, name, None) is kind:
            return name
    return "BaseException"  # pragma: no cover - every exception has a built-in base


def run_case(case: Case, harness: Harness) -> dict[str, Any]:
    """``{"value": ...}`` or ``{"raises": "ValueError"}``; the case's publishes are reset."""
    harness.capture.take()
    try:
        return {"value": observe(case(harness))}
    except Exception as exc:
        return {"raises": raised(exc), "message": f"{type(exc).__name__}: {exc}"}


def same(peer: dict[str, Any], ours: dict[str, Any]) -> bool:
    """The two observations agree (an exception's message is information, not behaviour)."""
    return {k: v for k, v in peer.items() if k != "message"} == {
        k: v for k, v in ours.items() if k != "message"
    }


def api(**names: Any) -> SimpleNamespace:
    return SimpleNamespace(**names)


_COMPAT_IMPORT = re.compile(r"^from grip_asgi\.compat\.(\w+) import ", re.MULTILINE)


def original_source(path: Path) -> str:
    """The source of the peer's app that ``path`` was ported from: the same file with its
    ``from grip_asgi.compat.X import`` lines turned back into ``from X import``."""
    ported = path.read_text(encoding="utf-8")
    original = _COMPAT_IMPORT.sub(r"from \1 import ", ported)
    if original == ported:
        raise ValueError(f"{path} imports nothing from grip_asgi.compat")
    return original


def load_original(path: Path) -> ModuleType:
    """The peer's app that ``path`` was ported from (see :func:`original_source`), imported."""
    module = ModuleType(f"original_{path.stem}")
    module.__file__ = str(path)
    exec(compile(original_source(path), str(path), "exec"), module.__dict__)
    return module


# --- A publish endpoint that records what reaches it -----------------------------------------


class CaptureServer:
    """An HTTP server on 127.0.0.1 that answers every POST as Pushpin's publish endpoint
    does and records it: ``with CaptureServer() as capture: ... capture.take()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        records, lock = self._records, self._lock

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with lock:
                    records.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                reply = b"Published\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def take(self) -> list[dict[str, Any]]:
        """The requests recorded since the last call, oldest first."""
        with self._lock:
            taken = list(self._records)
            self._records.clear()
        return taken


# --- Normalising what went over the wire -------------------------------------------------------


def published_items(records: list[dict[str, Any]], key: str | bytes) -> list[dict[str, Any]]:
    """The items published, in order, each as Pushpin reads it: the path and authentication
    of its request (a JWT checked against ``key``, or the scheme), and its formats decoded.

    How items are grouped into requests is left out: pubcontrol batches queued items, and
    Pushpin acts on each item alike either way.
    """
    import jwt  # PyJWT: a dev dependency, and the peers' own

    out = []
    for record in records:
        auth = record["headers"].get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme == "Bearer" and credentials.count(".") == 2:
            claims = jwt.decode(credentials, key, algorithms=["HS256"])
            authentication: Any = {"jwt": {"iss": claims.get("iss"), "has_exp": "exp" in claims}}
        else:
            authentication = scheme or None
        for item in json.loads(record["body"])["items"]:
            out.append(
                {
                    "path": record["path"],
                    "content_type": record["headers"].get("content-type"),
                    "authentication": authentication,
                    "item": wire_item(item),
                }
            )
    return out


_FORMAT_NAMES = ("http-response", "http-stream", "ws-message")


def wire_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as Pushpin acts on it: pubcontrol put the formats at the top level and grip-asgi
    under ``"formats"``, and text or base64 content that decodes to the same bytes is the same."""
    formats = dict(item.get("formats", {}))
    formats.update({name: item[name] for name in _FORMAT_NAMES if name in item})
    out: dict[str, Any] = {
        name: item[name] for name in ("channel", "id", "prev-id", "meta") if item.get(name)
    }
    out["formats"] = {name: wire_format(name, value) for name, value in formats.items()}
    return out


def wire_format(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(value)
    for key in ("body", "content"):
        if key + "-bin" in out:
            out[key] = {"bytes": base64.b64decode(out.pop(key + "-bin")).decode("latin-1")}
            if name == "ws-message":
                out.setdefault("type", "binary")
        elif key in out:
            out[key] = {"bytes": out[key].encode("utf-8").decode("latin-1")}
            if name == "ws-message":
                out.setdefault("type", "text")
    if not out.get("content-filters"):
        out.pop("content-filters", None)  # absent and empty both mean no filters
    if out.get("action") == "send":
        del out["action"]  # the default
    return out


def reply_events(body: bytes) -> list[Any]:
    """A WebSocket-over-HTTP reply body as events, with control messages' JSON parsed.

    Written here, not taken from either library, so that neither decodes its own output.
    """
    events: list[Any] = []
    rest = body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        name, _, size = line.partition(b" ")
        if not size:
            events.append([name.decode()])
            continue
        length = int(size, 16)
        content, rest = rest[:length], rest[length + 2 :]
        if content.startswith(b"c:"):
            events.append([name.decode(), "c", json.loads(content[2:])])
        else:
            events.append([name.decode(), {"bytes": content.decode("latin-1")}])
    return events
