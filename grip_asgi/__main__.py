"""``python -m grip_asgi``: the grip-asgi command line."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
