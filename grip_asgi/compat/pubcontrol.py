"""pubcontrol 3.x's ``Item`` and ``Format``, as gripcontrol code imports them.

Only what GRIP code uses is here; the publisher is
:class:`~grip_asgi.compat.gripcontrol.GripPubControl`, on grip-asgi's
:class:`~grip_asgi.SyncPublisher`. pubcontrol's own transport (``PubControl``,
``PubControlClient``) and its ZMQ publishing are not provided.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from .. import _publish

__all__ = ("Format", "Item")


class Format(abc.ABC):
    """The base of publish formats: ``name()`` is the format's key in an item and
    ``export()`` its JSON. gripcontrol's formats are registered as subclasses; grip-asgi
    publishes only those (Pushpin knows no other format)."""

    @abc.abstractmethod
    def name(self) -> str:
        """The format's key in the published item, e.g. ``"http-stream"``."""

    @abc.abstractmethod
    def export(self) -> dict[str, Any]:
        """The format's JSON object."""


class Item(_publish.Item):
    """pubcontrol's ``Item(formats, id=None, prev_id=None, meta={})``: a grip-asgi
    :class:`~grip_asgi.Item`, so any grip-asgi publisher takes it too."""

    __slots__ = ()

    def __init__(
        self,
        # Untyped, as in pubcontrol: grip-asgi's Item checks each format.
        formats: Any,
        id: str | None = None,
        prev_id: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        # pubcontrol's default is {}, which means no meta.
        _publish.Item.__init__(self, formats, id, prev_id, meta or None)

    def export(self, formats_field: bool = False, tnetstring: bool = False) -> dict[str, Any]:
        """The item as pubcontrol exported it: the formats at the top level, or under
        ``"formats"`` with ``formats_field=True`` (how Pushpin's HTTP API takes them)."""
        if tnetstring:
            raise ValueError("tnetstring export is for ZMQ publishing, which is not supported")
        out = self.to_dict("")
        del out["channel"]
        if not formats_field:
            out.update(out.pop("formats"))
        return out
