"""A room member in a process of its own, for the presence tests to kill or freeze.

``python -m tests.e2e.presence_member WS_URL CHANNEL`` connects a ``ReliableClient`` and reads
until it is stopped, so it answers Pushpin's pings as any live client does. Each item it gets
goes to stderr (the test's output).
"""

from __future__ import annotations

import asyncio
import sys

from grip_asgi.client import ReliableClient


async def member(url: str, channel: str) -> None:
    async with ReliableClient(url, channels=[channel]) as client:
        async for item in client:
            print(f"presence-member: {item}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(member(sys.argv[1], sys.argv[2]))
