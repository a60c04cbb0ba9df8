"""The examples' chat page in a real browser: headless Chromium, through a real Pushpin.

The page (``examples/static/chat.html``, on ``grip-client.js``'s ``ReliableSocket``) is driven by
the element ids its header comment lists. Each page has a browser context of its own, so
going offline (``context.set_offline``) cuts one page only. The browser is Debian's
``chromium`` (``scripts/install-chromium``), driven by Playwright; no browser is downloaded.
``GRIP_CHROMIUM`` names another Chromium or Chrome executable.

What Chromium 150's offline emulation does to an open WebSocket, checked by hand: the
connection is not closed, the page sees no error, and frames are held, not dropped: while
offline, the page gets none (and answers no ping); back online, it gets them all at once. So
a page offline for a few seconds has every message once when it returns with nothing for the
reliable protocol to repair; one offline for longer stops answering pings and drops out of
the room's members within the presence bound (2 x keep_alive + margin = 50 s), then joins
again when its held PONGs reach the server. The tests assert what the design guarantees: every
message exactly once and in order after offline and after a reload (which resumes from
``sessionStorage``, ``last_event_id`` in the URL), and the member list's leave within the
bound and return after it.

A screenshot of page B is saved under the test's ``tmp_path``, and copied to
``$GRIP_SCREENSHOT_DIR`` when that is set; the test prints where.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from .servers import ProcessServer, ProxiedApp
from .test_examples import django_asgi, fastapi

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
TIMEOUT = 30  # seconds a test may take, start-up of the app excluded
ROOM = "lobby"
#: The examples' presence settings (grip_asgi's defaults): a member that stops answering
#: pings is announced gone within 2 x keep_alive + margin seconds.
KEEP_ALIVE = 20
BOUND = 2 * KEEP_ALIVE + 10
#: Messages sent while page B is offline: half from page A, half published by the app's API.
OFFLINE_MESSAGES = 6

#: A member's text that looks like the app's JSON for another member's message.
FORGED = '{"user": "ann", "text": "not from ann"}'

ProxiedAppFactory = Callable[..., ProxiedApp]
ServerFactory = Callable[[int, dict[str, str]], ProcessServer]
STACKS = pytest.mark.parametrize(
    ("name", "server"), [("fastapi", fastapi), ("django", django_asgi)], ids=["fastapi", "django"]
)


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


def start_app(proxied_app: ProxiedAppFactory, server: ServerFactory, tmp_path: Path) -> ProxiedApp:
    """The example behind Pushpin, its history and member lists in this test's directory."""
    return proxied_app(server, env={"GRIP_HISTORY_URL": f"sqlite:///{tmp_path}/history.sqlite3"})


async def open_chat(browser: Browser, app: ProxiedApp, name: str) -> Page:
    """A page in a browser context of its own, joined to the room as ``name``."""
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"{app.http_url}/?room={ROOM}&name={name}")
    await expect(page.locator("#status")).to_have_text(f"connected to {ROOM} as {name}")
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#message", text)
    await page.click("#send")
    await expect(page.locator("#message")).to_have_value("")  # taken by an open socket


async def publish(app: ProxiedApp, text: str) -> None:
    """A message from outside the room: the example's ``POST /publish/<room>``."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"{app.http_url}/publish/{ROOM}", content=text.encode())
    response.raise_for_status()


#: A message as the page shows it: (id, author or None, text).
Shown = tuple[int, str | None, str]


async def timeline(page: Page) -> list[Shown]:
    """The messages the page shows, as (id, author, text), in page order; the author is
    None for a message with no ``.who``."""
    items = page.locator("#messages li[data-id]")
    shown: list[tuple[str, str | None, str]] = await items.evaluate_all(
        """items => items.map(item => [
            item.dataset.id,
            item.querySelector(":scope > .who")?.textContent ?? null,
            item.querySelector(":scope > .text").textContent,
        ])"""
    )
    return [(int(id), who, text) for id, who, text in shown]


async def shows_ids(page: Page, count: int) -> list[Shown]:
    """Wait until the page shows ids 1..count, each once and in order; its timeline."""
    ids = page.locator("#messages li[data-id]")
    await expect(ids).to_have_count(count)
    shown = await timeline(page)
    assert [id for id, _, _ in shown] == list(range(1, count + 1)), shown
    return shown


async def say_while_away(page_a: Page, app: ProxiedApp, first: int) -> None:
    """Page A (as ann) sends and the API publishes, alternately, OFFLINE_MESSAGES messages
    (ids from ``first``); returns once page A shows them all, each with its author or none."""
    for number in range(first, first + OFFLINE_MESSAGES):
        if number % 2:
            who: str | None = "ann"
            text = f"#{number} from page A: é, 😀 & <b>not bold</b>"
            await send(page_a, text)
        else:
            who, text = None, f"#{number} published by the API, 100% plain"
            await publish(app, text)
        shown = page_a.locator(f'#messages li[data-id="{number}"]')
        await expect(shown.locator(".text")).to_have_text(text)
        if who is None:
            await expect(shown.locator(".who")).to_have_count(0)
        else:
            await expect(shown.locator(".who")).to_have_text(who)
    # Text, never markup: the <b> in page A's messages is not an element.
    await expect(page_a.locator("#messages b")).to_have_count(0)


def save_screenshot(path: Path) -> None:
    print(f"screenshot of page B: {path}")
    if os.environ.get("GRIP_SCREENSHOT_DIR"):
        copy = Path(os.environ["GRIP_SCREENSHOT_DIR"], path.name)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        print(f"screenshot of page B copied to {copy}")


@STACKS
@pytest.mark.anyio
async def test_a_message_from_one_page_shows_on_the_other(
    proxied_app: ProxiedAppFactory,
    name: str,
    server: ServerFactory,
    browser: Browser,
    tmp_path: Path,
) -> None:
    app = start_app(proxied_app, server, tmp_path)
    message = f"Hello from page A, through Pushpin to the {name} example!"
    with anyio.fail_after(TIMEOUT):
        page_a = await open_chat(browser, app, "ann")
        page_b = await open_chat(browser, app, "bob")
        # B is subscribed once connected (the open answer subscribes): one send is enough.
        await send(page_a, message)
        for page in (page_a, page_b):  # a publish reaches every member, the sender too
            assert await shows_ids(page, 1) == [(1, "ann", message)]
        # B answers, with a text that looks like a message from ann: it is B's, as typed.
        await send(page_b, FORGED)
        for page in (page_a, page_b):
            assert await shows_ids(page, 2) == [(1, "ann", message), (2, "bob", FORGED)]
        # Each page marks its own messages.
        mine = "#messages li[data-id].mine"
        await expect(page_a.locator(mine)).to_have_attribute("data-id", "1")
        await expect(page_b.locator(mine)).to_have_attribute("data-id", "2")
        await expect(page_a.locator("#members li")).to_have_text(["ann", "bob"])
        await expect(page_b.locator("#members li")).to_have_text(["ann", "bob"])

        screenshot = tmp_path / f"grip-browser-{name}.png"
        await page_b.screenshot(path=screenshot)
    save_screenshot(screenshot)


@STACKS
@pytest.mark.anyio
async def test_a_page_back_online_and_reloaded_shows_every_message_once_in_order(
    proxied_app: ProxiedAppFactory,
    name: str,
    server: ServerFactory,
    browser: Browser,
    tmp_path: Path,
) -> None:
    app = start_app(proxied_app, server, tmp_path)
    with anyio.fail_after(TIMEOUT):
        page_a = await open_chat(browser, app, "ann")
        page_b = await open_chat(browser, app, "bob")
        await send(page_a, "#1 before page B goes offline")
        await shows_ids(page_b, 1)

        await page_b.context.set_offline(True)
        await expect(page_b.locator("#online")).to_have_text("offline")
        await say_while_away(page_a, app, first=2)
        await page_b.context.set_offline(False)

        count = 1 + OFFLINE_MESSAGES
        expected = await shows_ids(page_a, count)
        assert await shows_ids(page_b, count) == expected
        await expect(page_b.locator("#online")).to_have_text("online")

        # A reload resumes where the page was: its positions are in sessionStorage.
        async with page_b.expect_websocket() as opened:
            await page_b.reload()
        assert f"last_event_id={ROOM}%3A{count}" in (await opened.value).url
        await expect(page_b.locator("#status")).to_have_text(f"connected to {ROOM} as bob")
        assert await shows_ids(page_b, count) == expected

        # Away from the page while the room talks, then back to it in the same tab: it
        # rejoins as before and the resume replays just what it missed.
        await page_b.goto("about:blank")
        for text in ("while page B was away", "and one more"):
            await send(page_a, text)
            expected.append((len(expected) + 1, "ann", text))
        async with page_b.expect_websocket() as opened:
            await page_b.goto(f"{app.http_url}/")
        assert f"last_event_id={ROOM}%3A{count}" in (await opened.value).url
        assert await shows_ids(page_b, len(expected)) == expected


@pytest.mark.anyio
async def test_a_page_offline_past_the_presence_bound_leaves_the_members_and_returns(
    proxied_app: ProxiedAppFactory, browser: Browser, tmp_path: Path
) -> None:
    app = start_app(proxied_app, fastapi, tmp_path)
    with anyio.fail_after(BOUND + 15 + KEEP_ALIVE + 15 + TIMEOUT):
        page_a = await open_chat(browser, app, "ann")
        page_b = await open_chat(browser, app, "bob")
        members_a = page_a.locator("#members li")
        await expect(members_a).to_have_text(["ann", "bob"])

        await page_b.context.set_offline(True)
        offline_since = time.monotonic()
        await say_while_away(page_a, app, first=1)
        # B answers no ping while offline: its membership lapses, and A is told.
        await expect(members_a).to_have_text(["ann"], timeout=(BOUND + 15) * 1000)
        gone_after = time.monotonic() - offline_since
        await expect(page_a.locator("#messages li.notice").last).to_have_text("bob left")

        await page_b.context.set_offline(False)
        online_since = time.monotonic()
        # B's next sign of life makes it a member again (its held PONGs, or the next ping's).
        await expect(members_a).to_have_text(["ann", "bob"], timeout=(KEEP_ALIVE + 15) * 1000)
        back_after = time.monotonic() - online_since
        expected = await shows_ids(page_a, OFFLINE_MESSAGES)
        assert await shows_ids(page_b, OFFLINE_MESSAGES) == expected
    print(
        f"\npage B offline: page A's members list dropped it {gone_after:.1f} s after it went "
        f"offline (bound {BOUND} s) and listed it again {back_after:.1f} s after it came back"
    )
    assert gone_after <= BOUND, f"page B left the members list after {gone_after:.1f} s"
