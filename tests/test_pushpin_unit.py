"""grip_asgi.pushpin without a real Pushpin: config, routes, URLs, arguments, failures."""

from __future__ import annotations

import os
import random
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import grip_asgi.pushpin
from grip_asgi._config import parse_grip_uri
from grip_asgi.pushpin import Pushpin, _command_line, _free_ports, _ini_string, _shutdown


def fake_pushpin(tmp_path: Path, script: str) -> str:
    """An executable that stands in for ``pushpin``."""
    path = tmp_path / "fake-pushpin"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def logged_run_dir(message: str) -> str:
    match = re.search(r"; log (/\S+)/pushpin\.log:", message)
    assert match is not None, message
    return match[1]


def test_config_runs_a_private_zurl_on_loopback_ports() -> None:
    pushpin = Pushpin(http_port=7000, control_port=7001, log_level=3)
    config = pushpin._render_config("/tmp/pushpin-x")
    lines = config.splitlines()

    assert "rundir=/tmp/pushpin-x" in lines
    assert "services=condure,zurl,pushpin-proxy,pushpin-handler" in lines
    assert "http_port=127.0.0.1:7000" in lines
    assert "push_in_http_addr=127.0.0.1" in lines
    assert "push_in_http_port=7001" in lines
    assert "client_maxconn=5000" in lines
    assert "id_cache_ttl=60" in lines  # a repeated item id is dropped, not delivered twice
    assert "log_level=3" in lines
    assert "zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in" in lines
    assert 'sig_iss="pushpin"' in lines
    assert 'sig_key="changeme"' in lines


def test_upstream_key_is_random_unless_given() -> None:
    def upstream_key(pushpin: Pushpin) -> str:
        [line] = [x for x in pushpin._render_config("/r").splitlines() if "upstream_key" in x]
        return line.removeprefix("upstream_key=")

    first, second = upstream_key(Pushpin()), upstream_key(Pushpin())
    assert first != second and len(first) > 40  # quoted, 32 random bytes
    assert upstream_key(Pushpin(upstream_key="s3cret")) == '"s3cret"'
    assert upstream_key(Pushpin(upstream_key="")) == '""'


@pytest.mark.parametrize(("message_rate", "written"), [(2500, "2500"), (10, "10"), (None, "-1")])
def test_message_rate_is_stock_unless_given(message_rate: int | None, written: str) -> None:
    # Pushpin reads -1 as "no limit"; its stock config says 2500.
    default = message_rate == 2500
    pushpin = Pushpin() if default else Pushpin(message_rate=message_rate)
    lines = pushpin._render_config("/r").splitlines()
    assert [line for line in lines if line.startswith("message_rate=")] == [
        f"message_rate={written}"
    ]


@pytest.mark.parametrize(("kwargs", "written"), [({}, "25000"), ({"message_hwm": 8}, "8")])
def test_message_hwm_is_stock_unless_given(kwargs: dict[str, int], written: str) -> None:
    lines = Pushpin(**kwargs)._render_config("/r").splitlines()  # type: ignore[arg-type]
    assert [line for line in lines if line.startswith("message_hwm=")] == [f"message_hwm={written}"]
    with pytest.raises(ValueError, match="message_hwm"):
        Pushpin(message_hwm=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("changeme", '"changeme"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a,b;c#d e", '"a,b;c#d e"'),
        ("@ByteArray(x)", '"@@ByteArray(x)"'),
        ("base64:aGk=", '"base64:aGk="'),
    ],
)
def test_ini_string_keeps_values_literal(value: str, expected: str) -> None:
    assert _ini_string(value) == expected


@pytest.mark.parametrize(
    ("options", "expected_catch_all"),
    [
        ({}, "* 127.0.0.1:8000,over_http"),
        ({"route_options": ""}, "* 127.0.0.1:8000"),
        ({"route_options": "over_http,one_event"}, "* 127.0.0.1:8000,over_http,one_event"),
        ({"backends": ["h:1", "h:2"]}, "* h:1,over_http h:2,over_http"),
    ],
)
def test_routes_end_with_the_catch_all_route(
    options: dict[str, Any], expected_catch_all: str
) -> None:
    routes = Pushpin(**options)._render_routes()
    assert routes == f"pushpin-ready.invalid test\n{expected_catch_all}\n"


def test_extra_routes_come_before_the_catch_all_route() -> None:
    routes = Pushpin("b:1", extra_routes=["*,path_beg=/raw b:2"])._render_routes()
    assert routes.splitlines() == [
        "pushpin-ready.invalid test",
        "*,path_beg=/raw b:2",
        "* b:1,over_http",
    ]


def test_urls() -> None:
    pushpin = Pushpin(http_port=7999, control_port=5561)

    assert pushpin.http_port == 7999 and pushpin.control_port == 5561
    assert pushpin.http_url == "http://127.0.0.1:7999"
    assert pushpin.ws_url == "ws://127.0.0.1:7999"
    assert pushpin.control_url == "http://127.0.0.1:5561"
    assert pushpin.publish_url == "http://127.0.0.1:5561/publish/"
    assert pushpin.grip_url == "http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme"
    assert pushpin.backends == ("127.0.0.1:8000",)


@pytest.mark.parametrize(
    ("sig_key", "verify_key"),
    [
        ("a+b&c=d e/f?g#h%i", "a+b&c=d e/f?g#h%i"),
        ("base64:AAEC/w==", b"\x00\x01\x02\xff"),
    ],
)
def test_grip_url_round_trips_through_parse_grip_uri(sig_key: str, verify_key: str | bytes) -> None:
    pushpin = Pushpin(control_port=5561, sig_key=sig_key, sig_iss="iss & co")
    config = parse_grip_uri(pushpin.grip_url)

    assert config.publish_url == "http://127.0.0.1:5561/publish/"
    assert config.verify_iss == "iss & co"
    assert config.verify_key == verify_key


def test_zero_ports_pick_distinct_free_ports() -> None:
    pushpin = Pushpin(http_port=0, control_port=5561)
    assert pushpin.control_port == 5561 and pushpin.http_port > 0
    ports = _free_ports(20)
    assert len(set(ports)) == 20 and all(port > 0 for port in ports)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backends": []}, "at least one"),
        ({"backend": "h:1 h:2"}, "whitespace"),
        ({"route_options": "over_http, ssl"}, "whitespace"),
        ({"sig_key": "a\nb"}, "line break"),
        ({"upstream_key": "a\rb"}, "line break"),
        ({"extra_routes": ["a b\n* c"]}, "line break"),
        ({"http_port": 70000}, "out of range"),
        ({"control_port": -1}, "out of range"),
        ({"log_level": -1}, "log_level"),
        ({"message_rate": 0}, "message_rate"),
        ({"max_connections": 0}, "max_connections"),
        ({"run_dir": "/tmp/" + "d" * 80}, "too long"),
    ],
)
def test_bad_arguments_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pushpin(**options)


def test_state_before_start() -> None:
    pushpin = Pushpin(http_port=7999)

    assert pushpin.run_dir is None and pushpin.log_path is None and pushpin.pid is None
    assert not pushpin.running
    assert pushpin.read_log() == ""
    assert repr(pushpin) == "<Pushpin http://127.0.0.1:7999 -> 127.0.0.1:8000 stopped>"
    pushpin.stop()  # a no-op


def test_missing_executable_says_how_to_install() -> None:
    pushpin = Pushpin(executable="no-such-pushpin-executable")
    with pytest.raises(FileNotFoundError, match="run scripts/install-pushpin or apt-get install"):
        pushpin.start()
    assert pushpin.run_dir is None


def test_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        pushpin = Pushpin(http_port=port, executable=fake_pushpin(tmp_path, "exit 0"))
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port} is already in use"):
            pushpin.start()


def test_exit_during_startup_reports_the_log(tmp_path: Path) -> None:
    pushpin = Pushpin(executable=fake_pushpin(tmp_path, 'echo "no config: $*"; exit 3'))
    with pytest.raises(RuntimeError, match="exited with code 3") as raised:
        pushpin.start()

    message = str(raised.value)
    assert "no config: --config /" in message and "pushpin.conf --merge-output" in message
    assert pushpin.run_dir is None and not pushpin.running
    assert not os.path.exists(logged_run_dir(message))
    assert pushpin.read_log().startswith("no config")


def test_timeout_stops_the_process_and_removes_the_run_dir(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f'echo $$ > {pid_file}; echo "waiting"; exec sleep 30'
    pushpin = Pushpin(executable=fake_pushpin(tmp_path, script))

    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"not ready after 0.3 s; log .*:\nwaiting") as raised:
        pushpin.start(timeout=0.3)

    assert time.monotonic() - started < 5
    assert _command_line(int(pid_file.read_text())) == ""
    assert pushpin.run_dir is None
    assert not os.path.exists(logged_run_dir(str(raised.value)))


def test_shutdown_signals_only_processes_whose_command_line_has_the_marker(tmp_path: Path) -> None:
    (tmp_path / "self.pid").write_text(str(os.getpid()))
    (tmp_path / "empty.pid").write_text("")
    (tmp_path / "junk.pid").write_text("junk")
    (tmp_path / "gone.pid").write_text("999999999")

    _shutdown(None, f"{tmp_path}/never-in-a-command-line", str(tmp_path), grace=0)

    assert _command_line(os.getpid())  # still alive


def test_an_executable_that_cannot_run_leaves_nothing_behind(tmp_path: Path) -> None:
    executable = tmp_path / "broken-pushpin"
    executable.write_text("#!/no/such/interpreter\n")
    executable.chmod(0o755)
    pushpin = Pushpin(executable=str(executable), run_dir=str(tmp_path / "run"))

    with pytest.raises(FileNotFoundError):
        pushpin.start()

    assert pushpin.run_dir is None and pushpin.pid is None
    assert (tmp_path / "run" / "routes").exists()  # a given run dir is kept


def test_a_log_deleted_under_us_reads_as_empty(tmp_path: Path) -> None:
    pushpin = Pushpin(executable=fake_pushpin(tmp_path, "rm pushpin.log; exit 1"))
    with pytest.raises(RuntimeError, match="exited with code 1"):
        pushpin.start()
    assert pushpin.read_log() == ""


def test_a_long_temp_dir_falls_back_to_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", "/var/folders/" + "x" * 70)
    run_dir = Pushpin()._make_run_dir()
    try:
        assert run_dir.startswith("/tmp/pushpin-") and len(run_dir) <= 75
    finally:
        os.rmdir(run_dir)


def test_the_module_runs_as_a_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grip_asgi.pushpin", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stdout.startswith("usage: python -m grip_asgi.pushpin")
    assert "--control-port" in result.stdout


def test_free_ports_are_distinct_and_below_the_ephemeral_range() -> None:
    low, _ = grip_asgi.pushpin._ephemeral_range()
    ports = grip_asgi.pushpin._free_ports(3)
    assert len(set(ports)) == 3
    assert all(grip_asgi.pushpin._PORTS_FROM <= port < low for port in ports)


def _two_adjacent_ports() -> tuple[socket.socket, socket.socket]:
    """Two bound sockets on ports P and P + 1 (a busy machine may hold P + 1: try again)."""
    while True:
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        second = socket.socket()
        try:
            second.bind(("127.0.0.1", first.getsockname()[1] + 1))
        except OSError:
            first.close()
            second.close()
            continue
        return first, second


def test_free_ports_skip_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    taken, reserved = _two_adjacent_ports()
    port = taken.getsockname()[1]
    with taken:
        # Only two candidates, the first of them taken.
        monkeypatch.setattr(grip_asgi.pushpin, "_PORTS_FROM", port)
        monkeypatch.setattr(grip_asgi.pushpin, "_ephemeral_range", lambda: (port + 2, 60999))
        monkeypatch.setattr(random, "shuffle", lambda ports: None)
        reserved.close()  # free P + 1 just before the pick
        assert grip_asgi.pushpin._free_ports(1) == [port + 1]


def test_free_ports_fall_back_to_the_system_with_an_unusual_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(grip_asgi.pushpin, "_ephemeral_range", lambda: (1024, 2048))
    [port] = grip_asgi.pushpin._free_ports(1)
    assert port > 0


def test_ephemeral_range_defaults_when_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(*args: object, **kwargs: object) -> None:
        raise OSError("no /proc here")

    monkeypatch.setattr(grip_asgi.pushpin, "open", unreadable, raising=False)
    assert grip_asgi.pushpin._ephemeral_range() == (32768, 60999)
