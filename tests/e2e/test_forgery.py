"""A client posing as the proxy, through a real Pushpin (docs/security.md, "Threat model").

A client that sends its own ``Grip-Sig``, ``Grip-Last``, ``Grip-Feature`` and ``Meta-*``
through Pushpin gets nothing from them: Pushpin strips ``Grip-*`` and signs the request
itself, and the app only trusts what verifies with its own key. With Pushpin 1.36's empty
``upstream_key`` (``Pushpin(upstream_key="")``), a token HMAC'd with the empty key makes
Pushpin pass the client's headers through unsigned; the app still refuses them, because it
verifies with its own key. Without a verify key the forgery works, which is why the app
logs a warning at start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from grip_asgi.testing import make_grip_sig

from .servers import ProxiedApp

FAULTAPP = "tests.e2e.faultapp:app"
TIMEOUT = 15
ProxiedAppFactory = Callable[..., ProxiedApp]

#: HMAC'd with the empty key: what Pushpin 1.36-1.41 trust with their default upstream_key.
EMPTY_KEY_TOKEN = make_grip_sig(b"", expires_in=3600)
FORGED = {
    "Grip-Last": "orders; last-id=forged",
    "Grip-Feature": "forged-feature",
    "Meta-User": "mallory",
}


async def seen_over_http(app: ProxiedApp, headers: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{app.http_url}/seen", headers=headers)
    assert response.status_code == 200, response.text
    seen: dict[str, Any] = response.json()
    return seen


async def seen_over_websocket(app: ProxiedApp, headers: dict[str, str]) -> dict[str, Any]:
    async with connect(f"{app.ws_url}/ws/seen", additional_headers=headers, open_timeout=5) as ws:
        seen: dict[str, Any] = json.loads(await ws.recv())
    return seen


#: What a client may send as its own Grip-Sig: nothing, junk, a token signed with the empty
#: key, or one with Pushpin's own key (valid for 2 h, so it differs from Pushpin's tokens).
CLIENT_TOKENS = {
    "none": None,
    "garbage": "garbage",
    "empty key": EMPTY_KEY_TOKEN,
    "Pushpin's key": make_grip_sig("changeme", expires_in=7200),
}


@pytest.mark.anyio
async def test_pushpin_strips_what_a_client_forges(proxied_app: ProxiedAppFactory) -> None:
    """With an ``upstream_key`` set (the runner's default), nothing forged gets through."""
    app = proxied_app(FAULTAPP, ready_path="/health")
    for name, client_token in CLIENT_TOKENS.items():
        headers = FORGED if client_token is None else {"Grip-Sig": client_token, **FORGED}
        with anyio.fail_after(TIMEOUT):
            over_http = await seen_over_http(app, headers)
            over_websocket = await seen_over_websocket(app, headers)
        check_stripped(name, client_token, over_http, over_websocket)


def check_stripped(
    name: str, client_token: str | None, over_http: dict[str, Any], over_websocket: dict[str, Any]
) -> None:
    for seen in (over_http, over_websocket):
        # Proxied and signed, by Pushpin: its own fresh token, not the client's.
        assert (seen["proxied"], seen["signed"], seen["sig_error"]) == (True, True, None), name
        assert seen["headers"]["grip-sig"] != client_token, name
        assert seen["last"] == {}, name
        assert "grip-last" not in seen["headers"], name
        assert "forged" not in seen["headers"]["grip-feature"], name
    # The connection's meta comes from Pushpin's store, never from the client's headers.
    assert over_websocket["meta"] == {}, name
    assert "meta-user" not in over_websocket["headers"], name
    # On a plain HTTP request Pushpin passes Meta-* through: it means nothing there, and
    # the library only reads Meta-* on WebSocket-over-HTTP requests.
    assert over_http["headers"]["meta-user"] == "mallory", name


@pytest.mark.anyio
async def test_pushpins_empty_upstream_key_passes_a_forgery_that_the_app_refuses(
    proxied_app: ProxiedAppFactory,
) -> None:
    app = proxied_app(FAULTAPP, ready_path="/health", upstream_key="")
    with anyio.fail_after(TIMEOUT):
        genuine = await seen_over_http(app, {})
        forged = await seen_over_http(app, {"Grip-Sig": EMPTY_KEY_TOKEN, **FORGED})
        with pytest.raises(InvalidStatus) as refused:
            await seen_over_websocket(app, {"Grip-Sig": EMPTY_KEY_TOKEN, **FORGED})

    assert (genuine["proxied"], genuine["signed"]) == (True, True)
    # Pushpin took the client for a trusted upstream proxy: the client's own token and
    # Grip-* headers reached the app, unsigned by Pushpin.
    assert forged["headers"]["grip-sig"] == EMPTY_KEY_TOKEN
    assert forged["headers"]["grip-last"] == FORGED["Grip-Last"]
    # The app verified the token with its own key and refused it.
    assert (forged["proxied"], forged["signed"], forged["sig_error"]) == (
        False,
        False,
        "bad signature",
    )
    assert forged["last"] == {}
    # A WebSocket with the forged token gets no WebSocket context: the route refuses it.
    assert refused.value.response.status_code == 400


@pytest.mark.anyio
async def test_without_a_verify_key_the_same_forgery_succeeds(
    proxied_app: ProxiedAppFactory,
) -> None:
    """Why the verify key matters: an app that trusts any Grip-Sig takes the forgery."""
    app = proxied_app(
        FAULTAPP, ready_path="/health", upstream_key="", env={"GRIP_URL": "http://127.0.0.1:1/"}
    )
    with anyio.fail_after(TIMEOUT):
        forged = await seen_over_http(app, {"Grip-Sig": EMPTY_KEY_TOKEN, **FORGED})

    assert (forged["proxied"], forged["signed"]) == (True, False)
    assert forged["last"] == {"orders": "forged"}
    assert "any client can pose as the proxy" in app.server.read_log()
