"""grip-asgi against the libraries it replaces; run with ``benchmarks/run`` (see README.md)."""

from __future__ import annotations
