"""``Publisher.refresh()``: have the proxy call the app for each WebSocket of a reliable
channel, over HTTP (Pushpin 1.38+, Fanout) and over Pushpin's command socket (1.36+).

Unit tests on ``httpx.MockTransport`` and the ZRPC encoding; the end-to-end test against a
real Pushpin 1.36 is ``tests/e2e/test_refresh.py``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from grip_asgi import GripSettings, Publisher, PublishError, SyncPublisher
from grip_asgi.history import MemoryHistory
from grip_asgi.zmq import _protocol
from grip_asgi.zmq._tnetstring import loads

REFRESH = {"channel": "reliable:room", "formats": {"ws-message": {"action": "refresh"}}}


class Proxy:
    """Records publish bodies; answers ``status`` (Pushpin 1.36 refuses a refresh: 400)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.items: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        refuses = self.status != 200 and any("action" in str(i["formats"]) for i in items)
        if refuses:
            return httpx.Response(self.status, text="Invalid format: \n")
        self.items.extend(items)
        return httpx.Response(200, text="Published\n")


SETTINGS = GripSettings.build("https://pushpin.test/")


def async_publisher(proxy: Proxy) -> Publisher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(proxy))
    return Publisher(SETTINGS, client=client, history=MemoryHistory(), retries=0)


def sync_publisher(proxy: Proxy) -> SyncPublisher:
    client = httpx.Client(transport=httpx.MockTransport(proxy))
    return SyncPublisher(SETTINGS, client=client, history=MemoryHistory(), retries=0)


@pytest.mark.anyio
async def test_refresh_publishes_the_refresh_action_on_the_reliable_channel() -> None:
    proxy = Proxy()
    async with async_publisher(proxy) as publisher:
        await publisher.refresh("room")
    assert proxy.items == [REFRESH]


@pytest.mark.anyio
async def test_publish_reliable_with_refresh_publishes_then_refreshes() -> None:
    proxy = Proxy()
    async with async_publisher(proxy) as publisher:
        stored = await publisher.publish_reliable("room", "hello", refresh=True)
    assert stored.id == 1
    assert [item.get("id") for item in proxy.items] == ["1", None]
    assert proxy.items[1] == REFRESH


@pytest.mark.anyio
async def test_a_proxy_that_refuses_a_refresh_raises_and_says_which_versions_take_it() -> None:
    proxy = Proxy(status=400)
    async with async_publisher(proxy) as publisher:
        with pytest.raises(PublishError) as raised:
            await publisher.publish_reliable("room", "hello", refresh=True)
    notes = "\n".join(raised.value.__notes__)
    assert "Pushpin 1.38 or later" in notes and "mode=command" in notes
    assert "stored in 'room' as id 1" in notes  # the message itself got through
    assert [item["id"] for item in proxy.items] == ["1"]


def test_the_blocking_twin_refreshes_too() -> None:
    proxy = Proxy()
    with sync_publisher(proxy) as publisher:
        publisher.publish_reliable("room", "hello", refresh=True)
        publisher.refresh("room")
    assert proxy.items[1:] == [REFRESH, REFRESH]
    refused = Proxy(status=400)
    with sync_publisher(refused) as publisher, pytest.raises(PublishError) as raised:
        publisher.refresh("room")
    assert "Pushpin 1.38 or later" in "\n".join(raised.value.__notes__)


def test_a_refresh_names_a_reliable_channel() -> None:
    with sync_publisher(Proxy()) as publisher, pytest.raises(ValueError, match="cannot hold"):
        publisher.refresh("two words")


def test_on_the_command_socket_a_refresh_is_a_zrpc_refresh_of_its_own() -> None:
    plain = {"channel": "room", "formats": {"ws-message": {"content": "hi"}}}
    batches = _protocol.command_messages([plain, REFRESH, plain])
    assert len(batches) == 3
    first, refresh, last = (loads(_protocol.zrpc_batch(b"7", batch)) for batch in batches)
    assert first["method"] == last["method"] == b"publish"
    assert refresh == {"id": b"7", "method": b"refresh", "args": {"channel": b"reliable:room"}}


def test_a_refresh_item_with_more_than_the_action_is_published_as_an_item() -> None:
    with_id = {**REFRESH, "id": "3"}
    [batch] = _protocol.command_messages([with_id])
    assert loads(_protocol.zrpc_batch(b"1", batch))["method"] == b"publish"
