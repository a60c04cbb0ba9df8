"""``publisher.refresh()`` through a real Pushpin 1.36: its command socket takes a refresh,
its HTTP publish endpoint does not (that needs 1.38).

A message is stored without being published, as when a proxy dropped it; the endpoint's idle
calls are ten minutes apart, so only the refresh can tell the client in time. It does: the
proxy calls the app, the app answers with the tip, and the client syncs what it lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from grip_asgi import PublishError, SyncPublisher
from grip_asgi.client import Event, ReliableClient
from grip_asgi.history import open_history

from .servers import ProxiedApp


@pytest.mark.anyio
async def test_a_refresh_on_the_command_socket_repairs_a_lost_message_at_once(
    proxied_app: Callable[..., ProxiedApp], tmp_path: Path
) -> None:
    history_url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    proxied = proxied_app(
        "tests.e2e.refreshapp:app", zmq_tcp=True, env={"GRIP_HISTORY_URL": history_url}
    )
    history = open_history(history_url)
    command = f"zmq+{proxied.pushpin.command_spec}?mode=command"
    url = f"{proxied.ws_url}/ws/room"
    async with ReliableClient(url, channels=["room"]) as client:
        with anyio.fail_after(10):
            while client.positions.get("room") != 0:  # the open's tip
                await anyio.sleep(0.05)
        history.sync.append("room", "stored, never published")
        with SyncPublisher(command) as publisher:
            publisher.refresh("room")
        with anyio.fail_after(15):
            item = await anext(aiter(client))
        assert item == Event("room", 1, "stored, never published", None)
        assert client.stats.repairs >= 1
    history.sync.close()


def test_pushpin_136_refuses_a_refresh_over_http_and_the_error_says_why(
    proxied_app: Callable[..., ProxiedApp],
) -> None:
    proxied = proxied_app("tests.e2e.refreshapp:app")
    with SyncPublisher(proxied.grip_url) as publisher, pytest.raises(PublishError) as raised:
        publisher.refresh("room")
    assert raised.value.status == 400
    assert "Pushpin 1.38 or later" in "\n".join(raised.value.__notes__)
