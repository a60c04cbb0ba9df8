"""Tnetstrings, the encoding of Pushpin's ZeroMQ messages: a small, strict codec, sans I/O.

A tnetstring is ``<length>:<payload><tag>``: the length in ASCII digits, a colon, exactly that
many bytes, and one tag byte that gives the type: ``,`` bytes, ``#`` integer, ``^`` float,
``!`` boolean, ``~`` null, ``]`` list, ``}`` dict (key and value tnetstrings in turn, every key
a string). Pushpin's stats packets and its command socket (ZRPC) speak it.

The decoder is strict where Pushpin is lenient: no leading zeros in a length, nothing after
the value, integers in plain decimal, dict keys in UTF-8 and never repeated, nesting at most
:data:`MAX_DEPTH` deep. Anything else raises :class:`TnetstringError` naming the offset.
Strings come back as ``bytes`` (tnetstrings have no text type); dict keys as ``str``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ("MAX_DEPTH", "TnetstringError", "dumps", "loads")

#: How deeply lists and dicts may nest in a decoded value.
MAX_DEPTH = 64
# Nine digits: up to 999,999,999 bytes, more than any message Pushpin reads.
_LENGTH = re.compile(rb"(0|[1-9][0-9]{0,8}):")
_INT = re.compile(rb"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class TnetstringError(ValueError):
    """The bytes are not one well-formed tnetstring (the message says where and why)."""


def dumps(value: Any) -> bytes:
    """Encode ``value``: None, bool, int, float, str (as UTF-8), bytes, a list or tuple, or a
    dict with str keys. Raises TypeError for anything else, ValueError for NaN or infinity."""
    parts: list[bytes] = []
    _dump(value, parts)
    return b"".join(parts)


def _frame(payload: bytes, tag: bytes, out: list[bytes]) -> None:
    out += (str(len(payload)).encode("ascii"), b":", payload, tag)


def _dump(value: Any, out: list[bytes]) -> None:
    # bool before int: True is an int too.
    if value is None:
        out.append(b"0:~")
    elif value is True:
        out.append(b"4:true!")
    elif value is False:
        out.append(b"5:false!")
    elif isinstance(value, bytes):
        _frame(value, b",", out)
    elif isinstance(value, str):
        _frame(value.encode("utf-8"), b",", out)
    elif isinstance(value, int):
        _frame(str(value).encode("ascii"), b"#", out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a tnetstring float must be finite, got {value!r}")
        _frame(repr(value).encode("ascii"), b"^", out)
    elif isinstance(value, Mapping):
        inner: list[bytes] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"tnetstring dict keys must be str, got {type(key).__name__}")
            _frame(key.encode("utf-8"), b",", inner)
            _dump(item, inner)
        _frame(b"".join(inner), b"}", out)
    elif isinstance(value, Sequence):
        inner = []
        for item in value:
            _dump(item, inner)
        _frame(b"".join(inner), b"]", out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a tnetstring")


def loads(data: bytes) -> Any:
    """Decode exactly one tnetstring that fills ``data``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    value, end = _load(data, 0, len(data), 0)
    if end != len(data):
        raise TnetstringError(f"{len(data) - end} byte(s) after the value, at offset {end}")
    return value


def _load(data: bytes, start: int, limit: int, depth: int) -> tuple[Any, int]:
    """The value at ``start`` (which must end by ``limit``), and the offset after it."""
    match = _LENGTH.match(data, start, limit)
    if match is None:
        raise TnetstringError(f"no length prefix (digits and ':') at offset {start}")
    begin = match.end()
    end = begin + int(match[1])
    if end >= limit:
        raise TnetstringError(f"the value at offset {start} runs past the end of its container")
    payload = data[begin:end]
    tag = data[end : end + 1]
    if tag == b",":
        value: Any = payload
    elif tag == b"#":
        if not _INT.fullmatch(payload):
            raise TnetstringError(f"not an integer at offset {begin}: {payload[:40]!r}")
        value = int(payload)
    elif tag == b"^":
        if not _FLOAT.fullmatch(payload):
            raise TnetstringError(f"not a float at offset {begin}: {payload[:40]!r}")
        value = float(payload)
    elif tag == b"!":
        if payload not in (b"true", b"false"):
            raise TnetstringError(f"not a boolean at offset {begin}: {payload[:40]!r}")
        value = payload == b"true"
    elif tag == b"~":
        if payload:
            raise TnetstringError(f"a null with a payload at offset {begin}")
        value = None
    elif tag in (b"]", b"}"):
        if depth >= MAX_DEPTH:
            raise TnetstringError(f"nested more than {MAX_DEPTH} deep at offset {start}")
        value = _load_list(data, begin, end, depth + 1)
        if tag == b"}":
            value = _as_dict(value, begin)
    else:
        raise TnetstringError(f"unknown type tag {tag!r} at offset {end}")
    return value, end + 1


def _load_list(data: bytes, start: int, end: int, depth: int) -> list[Any]:
    items = []
    at = start
    while at < end:
        item, at = _load(data, at, end, depth)
        items.append(item)
    return items


def _as_dict(items: list[Any], offset: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index in range(0, len(items), 2):
        key = items[index]
        if not isinstance(key, bytes):
            raise TnetstringError(f"a dict key at offset {offset} is not a string")
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise TnetstringError(f"a dict key at offset {offset} is not UTF-8") from None
        if name in out:
            raise TnetstringError(f"the dict at offset {offset} repeats the key {name!r}")
        if index + 1 == len(items):
            raise TnetstringError(f"the dict at offset {offset} has a key without a value")
        out[name] = items[index + 1]
    return out
