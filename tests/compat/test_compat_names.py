"""What the compat names do where the peers have nothing to compare with: the refusals of
what grip-asgi does not provide, its extensions, and the errors that must never be silent."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from grip_asgi import GripConfig, GripConfigError
from grip_asgi.compat import faas_grip
from grip_asgi.compat.gripcontrol import (
    GripPubControl,
    HttpStreamFormat,
    WebSocketContext,
    WebSocketEvent,
    create_hold,
)
from grip_asgi.compat.pubcontrol import Item

from .harness import CaptureServer


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: GripPubControl(sub_callback=print), "sub_callback and zmq_context"),
        (lambda: GripPubControl(zmq_context=object()), "sub_callback and zmq_context"),
        (lambda: GripPubControl({"control_zmq_uri": "tcp://127.0.0.1:5563"}), "control_zmq_uri"),
        (
            lambda: GripPubControl({"control_uri": "http://h", "require_subscribers": True}),
            "require_subscribers",
        ),
        (lambda: GripPubControl().apply_config({"zmq_uri": "tcp://h:5563"}), "only 'uri'"),
        (lambda: GripPubControl().set_origin(host="h", port=80), "Fanout Cloud"),
    ],
)
def test_what_is_not_provided_says_so(make: object, what: str) -> None:
    with pytest.raises(NotImplementedError, match=what):
        make()  # type: ignore[operator]


def test_zeromq_refusals_point_to_grip_asgis_own_zeromq() -> None:
    with pytest.raises(NotImplementedError, match=r"zmq\+tcp://"):
        GripPubControl({"control_zmq_uri": "tcp://127.0.0.1:5563"})


def test_a_proxy_entry_without_control_uri_or_with_unknown_keys_is_refused() -> None:
    with pytest.raises(GripConfigError, match="needs 'control_uri'"):
        GripPubControl({"key": "k"})
    with pytest.raises(GripConfigError, match="unknown GRIP proxy setting"):
        GripPubControl({"control_uri": "http://h", "verify_kye": "typo"})


def test_grip_urls_and_grip_configs_are_taken_too(capture: CaptureServer) -> None:
    pub = GripPubControl([f"{capture.url}/a", GripConfig(f"{capture.url}/b")])
    pub.publish_http_stream("news", "x", blocking=True)
    pub.close()
    assert sorted(record["path"] for record in capture.take()) == ["/a/publish/", "/b/publish/"]


def test_a_callback_that_raises_is_logged(
    capture: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(success: bool, message: str | None) -> None:
        raise RuntimeError("the callback's own bug")

    pub = GripPubControl({"control_uri": capture.url})
    with caplog.at_level(logging.ERROR, logger="grip_asgi.compat.gripcontrol"):
        pub.publish("news", Item(HttpStreamFormat("x")), callback=callback)
        pub.wait_all_sent()
    pub.close()
    assert len(capture.take()) == 1
    [record] = caplog.records
    assert record.getMessage() == "the publish callback for 'news' raised"
    assert record.exc_info is not None and "the callback's own bug" in str(record.exc_info[1])


def test_item_export_for_tnetstring_is_refused() -> None:
    with pytest.raises(ValueError, match="ZMQ"):
        Item(HttpStreamFormat("x")).export(tnetstring=True)


def test_events_read_with_str_content_and_shown_as_given() -> None:
    # gripcontrol failed on str content in recv(); it is read as its UTF-8 bytes.
    ws = WebSocketContext("c", {}, [WebSocketEvent("TEXT", "hé"), WebSocketEvent("CLOSE")])
    assert (ws.recv(), ws.recv(), ws.close_code) == ("hé", None, None)
    assert repr(WebSocketEvent("TEXT", "hé")) == "WebSocketEvent('TEXT', 'hé')"
    assert repr(WebSocketEvent("OPEN")) == "WebSocketEvent('OPEN')"


def test_a_stream_hold_keeps_a_timeout_as_gripcontrol_wrote_it() -> None:
    assert '"timeout": 7' in create_hold("stream", "news", None, 7)


@pytest.fixture
def faas_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("GRIP_PROXIES", "GRIP_VERIFY_KEY", "GRIP_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def test_faas_publisher_follows_the_environment(
    faas_environment: pytest.MonkeyPatch, capture: CaptureServer
) -> None:
    environment = faas_grip._environment
    faas_environment.setenv("GRIP_URL", f"{capture.url}/first")
    first = environment.publisher()
    assert environment.publisher() is first
    faas_environment.setenv("GRIP_URL", f"{capture.url}/second")
    faas_grip.publish("news", HttpStreamFormat("x"))
    assert first.closed  # the publisher of the old environment was closed
    assert [record["path"] for record in capture.take()] == ["/second/publish/"]
    assert faas_grip.get_pubcontrol() is faas_grip.get_pubcontrol()


def test_a_proxy_added_after_publishing_gets_the_next_publishes(capture: CaptureServer) -> None:
    pub = GripPubControl(f"{capture.url}/a")
    pub.publish_http_stream("news", "1", blocking=True)
    pub.apply_grip_config(f"{capture.url}/b")
    pub.publish_http_stream("news", "2", blocking=True)
    pub.close()
    paths = [record["path"] for record in capture.take()]
    assert paths[0] == "/a/publish/"
    assert sorted(paths[1:]) == ["/a/publish/", "/b/publish/"]
