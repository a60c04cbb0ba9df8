"""The browser's reliable clients (grip-client.js) in headless Chromium, through a real
Pushpin, against the FastAPI example: ``GripClient.ReliableEventSource`` on the recoverable
``GET /events/{channel}``, and ``GripClient.ReliableSocket`` on the chat's WebSocket.

- SSE: a new page gets the channel's history and the live messages; after a reload it
  resumes from the id it kept in sessionStorage (``?last_event_id=``), each message once.
- WebSocket: Pushpin drops part of a burst (tiny ``message_hwm``) and two messages were never
  published; the page repairs the gaps through the app and shows each message once.

The chat page itself, offline and back, is ``test_browser.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from grip_asgi.history import open_history

from .servers import ProxiedApp
from .test_browser import browser  # noqa: F401 (the fixture)
from .test_examples import fastapi

CHANNEL = "news"
START = """() => {
  window.got = [];
  window.sse = new GripClient.ReliableEventSource("/events/news", {
    onevent: (e) => window.got.push([e.id, e.data]),
  });
}"""


async def publish(app: ProxiedApp, text: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"{app.http_url}/publish/{CHANNEL}", content=text.encode())
    response.raise_for_status()


async def shown(page: Page, count: int) -> list[Any]:
    """What the page's client delivered, once it has ``count`` events (10 s at most)."""
    await page.wait_for_function(f"window.got.length >= {count}", timeout=10_000)
    got: list[Any] = await page.evaluate("window.got")
    return got


@pytest.mark.anyio
async def test_the_reliable_event_source_resumes_after_a_reload_with_no_duplicate(
    browser: Browser,  # noqa: F811 (the fixture)
    proxied_app: Callable[..., ProxiedApp],
    tmp_path: Path,
) -> None:
    app = proxied_app(fastapi, env={"GRIP_HISTORY_URL": f"sqlite:///{tmp_path}/h.sqlite3"})
    for text in ("one", "two ünïcode", "three\nlines"):
        await publish(app, text)
    context = await browser.new_context()
    page = await context.new_page()
    opened: list[str] = []
    page.on("request", lambda request: opened.append(request.url))
    await page.goto(f"{app.http_url}/")  # the chat page, which loads grip-client.js
    await page.evaluate(START)
    # A new subscriber gets the history (the example keeps 10 for it), then the live ones.
    assert await shown(page, 3) == [[1, "one"], [2, "two ünïcode"], [3, "three\nlines"]]
    await publish(app, "four")
    assert (await shown(page, 4))[3] == [4, "four"]

    await page.reload()
    await page.evaluate(START)
    await publish(app, "five")
    # Only what came after the reload: the resume named the last id the page had.
    assert await shown(page, 1) == [[5, "five"]]
    assert any("/events/news?last_event_id=news%3A4" in url for url in opened)
    stats = await page.evaluate("window.sse.stats")
    assert stats == {"delivered": 1, "duplicates": 0, "resets": 0}
    await context.close()


SOCKET = """() => {
  window.got = [];
  window.socket = new GripClient.ReliableSocket("/chat/lobby?name=reader", {
    onevent: (e) => window.got.push(e.id),
  });
}"""


@pytest.mark.anyio
async def test_the_reliable_socket_repairs_what_pushpin_dropped(
    browser: Browser,  # noqa: F811 (the fixture)
    proxied_app: Callable[..., ProxiedApp],
    tmp_path: Path,
) -> None:
    """Pushpin with a tiny ``message_hwm`` drops part of a burst of live messages, and two
    messages are stored without being published at all (as when no proxy took them); the
    page's ReliableSocket sees the gaps by id, asks the app for them, and shows every
    message once, in order."""
    history_url = f"sqlite:///{tmp_path}/h.sqlite3"
    app = proxied_app(fastapi, env={"GRIP_HISTORY_URL": history_url}, message_hwm=2)
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{app.http_url}/")
    await page.evaluate(SOCKET)
    await page.wait_for_function("window.socket.state === 'open'", timeout=10_000)
    async with open_history(history_url) as history:
        for n in (1, 2):
            await history.append("lobby", f"stored only {n}")
    async with httpx.AsyncClient(timeout=5) as http:
        for n in range(3, 43):
            response = await http.post(f"{app.http_url}/publish/lobby", content=f"m{n}")
            response.raise_for_status()
    await page.wait_for_function("window.got.length >= 42", timeout=30_000)
    assert await page.evaluate("window.got") == list(range(1, 43))
    stats = await page.evaluate("window.socket.stats")
    assert stats["delivered"] == 42 and stats["repairs"] >= 1
    print(f"\nbrowser socket through Pushpin with message_hwm=2: {stats}")
    await context.close()
