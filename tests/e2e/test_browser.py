"""The examples' chat page in a real browser: headless Chromium, through a real Pushpin.

Two pages join the same room; page A sends a message with the form and page B shows it. The
browser is Debian's ``chromium`` (``scripts/install-chromium``), driven by Playwright; no
browser is downloaded. ``GRIP_CHROMIUM`` names another Chromium or Chrome executable.

A screenshot of page B is saved under the test's ``tmp_path``, and copied to
``$GRIP_SCREENSHOT_DIR`` when that is set; the test prints where.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from .servers import ProcessServer, ProxiedApp
from .test_examples import django_asgi, fastapi

TIMEOUT = 20  # seconds any one test may take, start-up of the app excluded
CHROMIUM = os.environ.get("GRIP_CHROMIUM", "/usr/bin/chromium")
# Headless and offline: no sandbox (CI runs as root), no GPU, no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SENDS = 10  # how often page A may send before page B must have shown the message

ProxiedAppFactory = Callable[..., ProxiedApp]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run scripts/install-chromium "
            "(or set GRIP_CHROMIUM to a Chromium or Chrome executable)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


async def open_chat(browser: Browser, url: str) -> Page:
    """A new page on the chat, once it says it is connected to the lobby (it joins at load)."""
    page = await browser.new_page(viewport={"width": 800, "height": 600})
    page.set_default_timeout(5_000)
    await page.goto(url)
    await expect(page.locator("#state")).to_have_text("connected to lobby")
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


@pytest.mark.parametrize(
    ("name", "server"), [("fastapi", fastapi), ("django", django_asgi)], ids=["fastapi", "django"]
)
@pytest.mark.anyio
async def test_a_message_from_one_page_shows_on_the_other(
    proxied_app: ProxiedAppFactory,
    name: str,
    server: Callable[[int, dict[str, str]], ProcessServer],
    browser: Browser,
    tmp_path: Path,
) -> None:
    app = proxied_app(server)
    message = f"Hello from page A, through Pushpin to the {name} example!"
    with anyio.fail_after(TIMEOUT):
        page_a = await open_chat(browser, f"{app.http_url}/")
        page_b = await open_chat(browser, f"{app.http_url}/")

        # The first message may race B's subscription (spec §6.1): send until B shows one.
        for _ in range(SENDS):
            await send(page_a, message)
            if await _shows(page_b, message, timeout=1_000):
                break
        else:
            raise AssertionError(f"page B did not show the message after {SENDS} sends")
        # A publish reaches every member of the room, the sender too.
        await expect(page_a.locator("#log")).to_contain_text(message)

        screenshot = tmp_path / f"grip-browser-{name}.png"
        await page_b.screenshot(path=screenshot)
    print(f"screenshot of page B: {screenshot}")
    if os.environ.get("GRIP_SCREENSHOT_DIR"):
        copy = Path(os.environ["GRIP_SCREENSHOT_DIR"], screenshot.name)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, copy)
        print(f"screenshot of page B copied to {copy}")


async def _shows(page: Page, text: str, *, timeout: float) -> bool:
    """Whether the page's chat log shows ``text`` within ``timeout`` milliseconds."""
    try:
        await expect(page.locator("#log")).to_contain_text(text, timeout=timeout)
    except AssertionError:
        return False
    return True
