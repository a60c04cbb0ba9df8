"""Presence URLs: the history's URL shapes, and every way one can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from grip_asgi import GripConfigError
from grip_asgi.presence import MemoryPresence, SQLitePresence, open_presence
from grip_asgi.presence.redis import RedisPresence

from .._stores import RedisServer, hide_the_redis_package


def test_memory() -> None:
    store = open_presence("memory:")
    assert isinstance(store, MemoryPresence)
    store.sync.join("room", "c1", ttl=60)
    assert [m.client for m in store.sync.members("room")] == ["c1"]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///presence.db", "presence.db"),
        ("sqlite:///data/sub/grip.sqlite3", "data/sub/grip.sqlite3"),
        ("sqlite:////var/lib/app/grip.db", "/var/lib/app/grip.db"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_paths_are_relative_or_absolute_as_for_history(url: str, path: str) -> None:
    store = open_presence(url)
    assert isinstance(store, SQLitePresence)
    assert store.path == path


def test_a_relative_sqlite_path_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_presence("sqlite:///here.sqlite3").sync as store:
        store.join("room", "c1", ttl=60)
    assert (tmp_path / "here.sqlite3").exists()


@pytest.mark.parametrize(
    ("url", "prefix", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "grip:", "redis://127.0.0.1:6379/0"),
        ("rediss://cache.example:6380/2?key_prefix=app:", "app:", "rediss://cache.example:6380/2"),
        ("redis://u:s3cret@h:1/0?socket_timeout=2&key_prefix=x%3A", "x:", "redis://***@h:1/0"),
    ],
)
def test_redis_urls_take_a_key_prefix(url: str, prefix: str, shown: str) -> None:
    store = open_presence(url)
    assert isinstance(store, RedisPresence)
    assert (store.key_prefix, store.url) == (prefix, shown)
    assert "s3cret" not in repr(store)


def test_a_redis_url_reaches_the_server_with_its_prefix(redis_server: RedisServer) -> None:
    with open_presence(f"{redis_server.url}?key_prefix=url-test:").sync as store:
        store.join("room", "c1", ttl=60)
        with RedisPresence(redis_server.url, key_prefix="url-test:").sync as same:
            assert [m.client for m in same.members("room")] == ["c1"]
        assert store.leave("room", "c1") is not None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/x", "unknown presence URL scheme"),
        ("memory:somewhere", "just 'memory:'"),
        ("sqlite://relative.db", "sqlite:///relative/path.db"),
        ("sqlite:///", "names no file"),
        ("sqlite:///:memory:", "use 'memory:'"),
        ("memory:?max_events=5", "takes no 'max_events'"),
        ("sqlite:///p.db?max_age=60", "takes no 'max_age'"),
        ("redis://h:1/0?max_age=60", "takes no 'max_age'"),
        ("redis://h:1/0?max_events=none", "takes no 'max_events'"),
        ("redis://h:1/0?no_such_option=1", "invalid Redis presence URL"),
        ("redis://:s3cret@h:1/0?no_such_option=1", "invalid Redis presence URL"),
    ],
)
def test_bad_urls_are_refused_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(GripConfigError, match="presence URL") as caught:
        open_presence(url)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_url_must_be_a_str() -> None:
    with pytest.raises(GripConfigError, match="must be a str"):
        open_presence(b"memory:")  # type: ignore[arg-type]


def test_without_the_redis_package_a_redis_url_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_the_redis_package(monkeypatch, "grip_asgi.presence.redis")
    with pytest.raises(GripConfigError, match=r"pip install 'grip-asgi\[redis\]'") as caught:
        open_presence("redis://:s3cret@h/0")
    assert "for the presence URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert isinstance(open_presence("memory:"), MemoryPresence)


@pytest.mark.parametrize(
    ("history_url", "kept"),
    [("memory:?max_events=3", 3), ("memory:?max_age=60&max_events=none", None), ("memory:", 1000)],
)
def test_the_presence_beside_a_history_leaves_its_retention_to_the_history(
    history_url: str, kept: int | None
) -> None:
    """A reliable WebSocket with presence keeps its members where its history is; a history
    URL that limits retention must not refuse presence (it used to: GripConfigError)."""
    from grip_asgi import GripSettings, SyncPublisher
    from grip_asgi.presence import MemoryPresence

    settings = GripSettings.build("http://127.0.0.1:5561/", history_url=history_url)
    with SyncPublisher(settings) as publisher:
        assert isinstance(publisher.presence, MemoryPresence)
        assert publisher.history.retention.max_events == kept


def test_the_presence_beside_no_history_url_is_the_historys_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from grip_asgi.presence import MemoryPresence
    from grip_asgi.presence._base import open_presence_beside_history

    monkeypatch.setenv("GRIP_HISTORY_URL", "memory:?max_events=5")
    assert isinstance(open_presence_beside_history(None), MemoryPresence)


def test_the_presence_beside_a_sqlite_history_is_the_same_file(tmp_path: Path) -> None:
    from grip_asgi.presence._base import open_presence_beside_history

    path = tmp_path / "history.sqlite3"  # absolute: sqlite:////...
    store = open_presence_beside_history(f"sqlite:///{path}?max_events=10")
    assert isinstance(store, SQLitePresence)
    store.sync.join("room", "c1", ttl=30)
    assert path.exists()
    store.sync.close()
