"""Server-Sent Events: encode events and comments, read ``Last-Event-ID`` (WHATWG HTML §9.2)."""

from __future__ import annotations

__all__ = (
    "SSE_CONTENT_TYPE",
    "SSE_KEEP_ALIVE",
    "encode_sse_event",
    "parse_last_event_id",
    "sse_comment",
)

#: The media type of an SSE stream.
SSE_CONTENT_TYPE = "text/event-stream"
#: An empty comment: a keep-alive that clients ignore (for example as Grip-Keep-Alive data).
SSE_KEEP_ALIVE = ":\n\n"


def _lines(text: str) -> list[str]:
    # SSE ends a line at CRLF, CR or LF; str.splitlines() would also split at \v, \f, \x1c...
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _comment_lines(text: str) -> list[str]:
    return [f": {line}" if line else ":" for line in _lines(text)]


def _check_field(name: str, value: str) -> None:
    # A line break would end the field early and let the rest forge fields; browsers ignore
    # an id that contains NUL.
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"SSE {name} must not contain CR, LF or NUL, got {value!r}")


def encode_sse_event(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> str:
    """Encode one SSE event, ending with the blank line that dispatches it.

    Fields come out in the order comment, ``event``, ``id``, ``retry``, ``data``. Multi-line
    ``data`` (or ``comment``) becomes one line per line, split at CRLF, CR and LF, so the
    client sees the same text back.

    Args:
        data: the event's data; None writes no ``data`` line (an event without data updates
            the last event id but is not dispatched).
        event: the event type (``message`` when absent).
        id: the event id the client sends back as ``Last-Event-ID`` when it reconnects.
        retry: the client's reconnection delay, in milliseconds.
        comment: a comment, ignored by clients.

    Raises:
        ValueError: ``event`` or ``id`` contains CR, LF or NUL, ``retry`` is negative, or
            there is nothing to encode.
    """
    lines = _comment_lines(comment) if comment is not None else []
    if event is not None:
        _check_field("event", event)
        lines.append(f"event: {event}")
    if id is not None:
        _check_field("id", id)
        lines.append(f"id: {id}")
    if retry is not None:
        if not isinstance(retry, int) or isinstance(retry, bool):
            raise TypeError(f"SSE retry must be an int, got {type(retry).__name__}")
        if retry < 0:
            raise ValueError(f"SSE retry must not be negative, got {retry}")
        lines.append(f"retry: {retry}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _lines(data))
    if not lines:
        raise ValueError("an SSE event needs data, event, id, retry or comment")
    lines.append("\n")
    return "\n".join(lines)


def sse_comment(text: str = "") -> str:
    """Encode an SSE comment (``: text``), one line per line of ``text``; clients ignore it.

    ``sse_comment()`` is :data:`SSE_KEEP_ALIVE`.
    """
    return "\n".join(_comment_lines(text)) + "\n\n"


def parse_last_event_id(value: str | None) -> str | None:
    """Read a ``Last-Event-ID`` request header: the id, or None if absent, empty or invalid.

    An id containing NUL is invalid: a browser never sends one back (it ignores such ids).
    """
    if value is None:
        return None
    value = value.strip(" \t")
    if not value or "\0" in value:
        return None
    return value
