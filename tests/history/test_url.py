"""History URLs: every shape open_history takes, and every way one can be wrong."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from grip_asgi import GripConfigError
from grip_asgi.history import (
    DEFAULT_HISTORY_URL,
    MemoryHistory,
    RedisHistory,
    Retention,
    SQLiteHistory,
    open_history,
    parse_history_url,
)

from .._stores import hide_the_redis_package

# -- shapes --------------------------------------------------------------------------------------


def test_memory() -> None:
    parsed = parse_history_url("memory:")
    assert (parsed.backend, parsed.retention) == ("memory", Retention())
    assert isinstance(open_history("memory:"), MemoryHistory)
    assert parse_history_url("MEMORY:").backend == "memory"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///grip.db", "grip.db"),
        ("sqlite:///data/sub/grip.sqlite3", "data/sub/grip.sqlite3"),
        ("sqlite:////var/lib/app/grip.db", "/var/lib/app/grip.db"),
        ("sqlite:///with%20space.db", "with space.db"),
        ("SQLite:///grip.db", "grip.db"),
    ],
)
def test_sqlite_paths_follow_sqlalchemy(url: str, path: str) -> None:
    parsed = parse_history_url(url)
    assert (parsed.backend, parsed.path) == ("sqlite", path)
    store = open_history(url)
    assert isinstance(store, SQLiteHistory)
    assert store.path == path


@pytest.mark.parametrize(
    ("url", "redis_url", "prefix"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", "grip:"),
        ("redis://localhost", "redis://localhost", "grip:"),
        ("rediss://cache.example:6380/2", "rediss://cache.example:6380/2", "grip:"),
        ("redis://h:1/3?key_prefix=app:grip:", "redis://h:1/3", "app:grip:"),
        (
            "redis://:s3cret@h:1/0?socket_timeout=2&max_events=10&key_prefix=x%3A&health_check_interval=5",
            "redis://:s3cret@h:1/0?socket_timeout=2&health_check_interval=5",
            "x:",
        ),
        ("redis://h:1/0?key_prefix=", "redis://h:1/0", ""),
    ],
)
def test_redis_urls_go_to_redis_py_without_our_parameters(
    url: str, redis_url: str, prefix: str
) -> None:
    parsed = parse_history_url(url)
    assert (parsed.backend, parsed.redis_url, parsed.key_prefix) == ("redis", redis_url, prefix)
    store = open_history(url)
    assert isinstance(store, RedisHistory)
    assert store.key_prefix == prefix


def test_a_redis_store_never_shows_its_password() -> None:
    store = open_history("redis://user:s3cret@cache.example:6380/1?key_prefix=p:")
    assert isinstance(store, RedisHistory)
    assert store.url == "redis://***@cache.example:6380/1"
    assert "s3cret" not in repr(store)
    assert "s3cret" not in repr(parse_history_url("redis://:s3cret@h/0"))


@pytest.mark.parametrize(
    ("query", "retention"),
    [
        ("", Retention()),
        ("?max_events=10", Retention(max_events=10)),
        ("?max_age=3600", Retention(max_age=3600.0)),
        ("?max_age=0.5&max_events=1", Retention(max_events=1, max_age=0.5)),
        ("?max_events=none&max_age=None", Retention(max_events=None, max_age=None)),
        ("?max_events=NONE", Retention(max_events=None)),
    ],
)
@pytest.mark.parametrize("base", ["memory:", "sqlite:///h.db", "redis://h:1/0"])
def test_retention_from_any_url(base: str, query: str, retention: Retention) -> None:
    assert parse_history_url(base + query).retention == retention
    assert open_history(base + query).retention == retention


def test_the_retention_argument_wins_over_the_url() -> None:
    mine = Retention(max_events=5, max_age=None)
    for url in ("memory:?max_events=1", "sqlite:///h.db?max_age=10", "redis://h/0?max_events=9"):
        assert open_history(url, retention=mine).retention == mine


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIP_HISTORY_URL", "memory:?max_events=7")
    store = open_history()
    assert isinstance(store, MemoryHistory)
    assert store.retention.max_events == 7


@pytest.mark.parametrize("value", [None, ""])
def test_the_default_is_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("GRIP_HISTORY_URL", raising=False)
    else:
        monkeypatch.setenv("GRIP_HISTORY_URL", value)
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_HISTORY_URL == "sqlite:///grip-history.sqlite3"
    store = open_history()
    assert isinstance(store, SQLiteHistory)
    assert not (tmp_path / "grip-history.sqlite3").exists()  # nothing happens until used
    with store.sync:
        store.sync.append("ch", "x")
    assert (tmp_path / "grip-history.sqlite3").exists()


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "unknown history URL scheme"),
        ("postgres://db/grip", "unknown history URL scheme"),
        ("postgres://db/grip?max_events=3&foo=1", "unknown history URL scheme"),
        ("grip-history.sqlite3", "unknown history URL scheme"),
        ("memory://somewhere", "a memory history URL is just 'memory:'"),
        ("memory:name", "a memory history URL is just 'memory:'"),
        ("memory:#x", "no #fragment"),
        ("sqlite://host/grip.db", "sqlite:///relative/path.db or sqlite:////absolute/path.db"),
        ("sqlite:grip.db", "sqlite:///relative/path.db or sqlite:////absolute/path.db"),
        ("sqlite:///", "names no file"),
        ("sqlite:///data/", "names no file"),
        ("sqlite:///:memory:", "use 'memory:' instead"),
        ("redis:h:1", "starts with redis:// or rediss://"),
        ("redis://[::1/0", "invalid history URL"),
        ("memory:?max_events=0", "max_events must be a positive integer or None, got 0"),
        ("memory:?max_events=-3", "max_events must be a positive integer or None, got -3"),
        ("memory:?max_events=1.5", "max_events='1.5' is not an integer or 'none'"),
        ("memory:?max_events=", "max_events='' is not an integer or 'none'"),
        ("memory:?max_age=0", "max_age must be a positive number of seconds or None"),
        ("memory:?max_age=soon", "max_age='soon' is not a number of seconds or 'none'"),
        ("memory:?max_age=inf", "max_age must be a positive number of seconds or None, got inf"),
        ("memory:?max_age=nan", "max_age must be a positive number of seconds or None, got nan"),
        ("memory:?max_events=1&max_events=2", "parameter 'max_events' is given twice"),
        ("sqlite:///h.db?key_prefix=x", "unknown parameter 'key_prefix'"),
        ("sqlite:///h.db?timeout=5", "unknown parameter 'timeout'"),
        ("memory:?foo=1", "unknown parameter 'foo'"),
        ("redis://h/0?key_prefix=a&key_prefix=b", "parameter 'key_prefix' is given twice"),
        ("redis://h/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://h/0?no_such_option=1", "no_such_option"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(GripConfigError, match=message.replace("?", r"\?").replace("[", r"\[")):
        open_history(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@h/0?no_such_option=1",
        "redis://user:s3cret@h/0?socket_timeout=soon",
        "redis://:s3cret@h/0?max_events=zero",
        "postgres://user:s3cret@db/grip",
        "memory:?password=s3cret",
    ],
)
def test_config_errors_never_echo_a_password(url: str) -> None:
    with pytest.raises(GripConfigError) as caught:
        open_history(url)
    assert "s3cret" not in str(caught.value)


def test_a_url_must_be_a_str() -> None:
    with pytest.raises(GripConfigError, match="must be a str, got bytes"):
        open_history(b"memory:")  # type: ignore[arg-type]


def test_the_retention_argument_must_be_a_retention() -> None:
    with pytest.raises(TypeError, match="retention must be a Retention"):
        open_history("memory:", retention={"max_events": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_events": 0}, "max_events"),
        ({"max_events": -1}, "max_events"),
        ({"max_events": 2.0}, "max_events"),
        ({"max_events": True}, "max_events"),
        ({"max_events": "10"}, "max_events"),
        ({"max_age": 0}, "max_age"),
        ({"max_age": -0.5}, "max_age"),
        ({"max_age": math.inf}, "max_age"),
        ({"max_age": math.nan}, "max_age"),
        ({"max_age": True}, "max_age"),
        ({"max_age": "60"}, "max_age"),
    ],
)
def test_retention_rejects_what_is_not_a_positive_number(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Retention(**fields)  # type: ignore[arg-type]


def test_retention_takes_positive_numbers_and_none() -> None:
    assert Retention(max_events=1, max_age=1) == Retention(max_events=1, max_age=1.0)
    assert Retention(max_events=None, max_age=None).age_cutoff(100.0) is None
    assert Retention(max_age=30).age_cutoff(100.0) == 70.0


def test_without_the_redis_package_a_redis_url_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_the_redis_package(monkeypatch, "grip_asgi.history.redis")
    with pytest.raises(GripConfigError, match=r"pip install 'grip-asgi\[redis\]'"):
        open_history("redis://:s3cret@h/0")
    assert isinstance(open_history("memory:"), MemoryHistory)


def test_the_history_package_imports_no_framework_and_not_redis() -> None:
    code = (
        "import sys, grip_asgi.history; "
        "print(sorted({m.partition('.')[0] for m in sys.modules} "
        "& {'starlette', 'fastapi', 'django', 'redis', 'anyio'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reprs_name_the_store_and_its_retention() -> None:
    assert repr(open_history("memory:?max_events=5")) == (
        "<MemoryHistory Retention(max_events=5, max_age=86400.0)>"
    )
    assert repr(open_history("sqlite:///h.db?max_age=none")) == (
        "<SQLiteHistory 'h.db' Retention(max_events=1000, max_age=None)>"
    )
    assert repr(open_history("redis://:s3cret@h:1/0")) == (
        "<RedisHistory redis://***@h:1/0 key_prefix='grip:' "
        "Retention(max_events=1000, max_age=86400.0)>"
    )


def test_the_package_has_no_other_names() -> None:
    import grip_asgi.history

    with pytest.raises(AttributeError, match="no attribute 'RedisStore'"):
        grip_asgi.history.RedisStore  # noqa: B018
