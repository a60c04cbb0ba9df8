"""grip_asgi.pushpin_check and ``grip-asgi check``: Pushpin's settings read as Pushpin reads
them, each rule, the three configs issue 14 names (Debian's stock one, our runner's, a
hardened one), the command's output and exit codes, and the start-up warnings."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from grip_asgi import GripMiddleware, GripSettings, _cli
from grip_asgi._errors import GripConfigError
from grip_asgi.pushpin import Pushpin, _ini_string
from grip_asgi.pushpin_check import (
    FINDINGS,
    CheckOptions,
    Finding,
    Severity,
    check_pushpin,
    load_pushpin,
    parse_config,
    parse_routes,
    weak_verify_keys,
)

STOCK_CONFIG = Path("/etc/pushpin/pushpin.conf")
SIG_KEY = "hardened-sig-key-0123456789abcdef"
UPSTREAM_KEY = "hardened-upstream-key-fedcba9876543210"
APP_GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={SIG_KEY}"

# A production config: every rule satisfied for the options below.
HARDENED: dict[str, dict[str, str]] = {
    "global": {
        "include": "{libdir}/internal.conf",
        "rundir": "/var/run/pushpin",
        "ipc_prefix": "pushpin-",
        "port_offset": "0",
    },
    "runner": {"services": "condure,pushpin-proxy,pushpin-handler", "http_port": "7999"},
    "proxy": {
        "routesfile": "routes",
        "debug": "false",
        "accept_pushpin_route": "false",
        "sig_iss": "pushpin",
        "sig_key": SIG_KEY,
        "upstream_key": UPSTREAM_KEY,
        "updates_check": "off",
    },
    "handler": {
        "push_in_spec": "tcp://127.0.0.1:5560",
        "push_in_sub_specs": "tcp://127.0.0.1:5562",
        "push_in_sub_connect": "false",
        "push_in_http_addr": "127.0.0.1",
        "push_in_http_port": "5561",
        "stats_spec": "ipc://{rundir}/{ipc_prefix}stats",
        "command_spec": "tcp://127.0.0.1:5563",
        "message_rate": "50000",
        "message_hwm": "200000",
        "id_cache_ttl": "60",
        "connection_subscription_max": "50",
    },
}
HARDENED_ROUTES = "* 127.0.0.1:8000,over_http\n"
HARDENED_OPTIONS = CheckOptions(
    grip=GripSettings.build(APP_GRIP_URL),
    audience=20_000,
    channels_per_connection=10,
    websocket_paths=("/chat",),
)


def render(changes: Mapping[str, str | None] | None = None) -> str:
    """The hardened config with ``section/name`` settings changed (None: left out)."""
    sections = {name: dict(values) for name, values in HARDENED.items()}
    for key, value in (changes or {}).items():
        section, _, name = key.partition("/")
        if value is None:
            sections[section].pop(name, None)
        else:
            sections.setdefault(section, {})[name] = value
    return "".join(
        f"[{section}]\n" + "".join(f"{name}={value}\n" for name, value in values.items())
        for section, values in sections.items()
    )


def run_check(
    config: str | bytes,
    routes: str | None = HARDENED_ROUTES,
    options: CheckOptions = HARDENED_OPTIONS,
) -> list[Finding]:
    parsed_routes = None if routes is None else parse_routes(routes)
    return check_pushpin(parse_config(config), parsed_routes, options)


def line_of(text: str, start: str) -> int:
    [number] = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start)]
    return number


def ids(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(finding.id, str(finding.severity)) for finding in findings]


def found(changes: Mapping[str, str | None], **options: Any) -> list[tuple[str, str]]:
    """The ids and severities for the hardened config with ``changes``."""
    return ids(run_check(render(changes), options=replace(HARDENED_OPTIONS, **options)))


# --- Reading pushpin.conf as Pushpin does -----------------------------------------------------


def value_of(line: str, key: str = "proxy/sig_key") -> str:
    return parse_config(f"[{key.partition('/')[0]}]\n{line}\n").text(key)


@pytest.mark.parametrize(
    ("line", "value"),
    [
        # Each observed on Pushpin 1.36: the key it then signs Grip-Sig with.
        ("sig_key=abc ; a comment", "abc"),
        ("sig_key=abc # not a comment", "abc # not a comment"),
        ("sig_key=abc,def", ""),
        ("sig_key=abc,", ""),
        ("sig_key=", ""),
        # Qt's quoting and escapes.
        ('sig_key="a,b; c"', "a,b; c"),
        ('sig_key="  padded  "', "  padded  "),
        ("sig_key=  trimmed  ", "trimmed"),
        (r'sig_key="say \"hi\" \\ \x41\101"', 'say "hi" \\ AA'),
        # Observed: Pushpin signs with "clé-key" in UTF-8 (a quote ends the greedy \x escape).
        (r'sig_key="cl\x00e9""-key"', "clé-key"),
        ("sig_key=@@at", "@at"),
        ("sig_key=@ByteArray(raw)", "raw"),
        ("sig_key=a=b", "a=b"),
    ],
)
def test_values_read_as_qt_reads_them(line: str, value: str) -> None:
    assert value_of(line) == value


@pytest.mark.parametrize(
    "key",
    [
        "changeme",
        '@harness key "quoted" \\ ,;#%41$x and 32+ bytes',
        "@leading at, and a trailing backslash \\",
        "  spaces around  ",
        "tab\there",
    ],
)
def test_what_the_runner_writes_reads_back_as_the_same_key(key: str) -> None:
    assert value_of(f"sig_key={_ini_string(key)}") == key


def test_a_quoted_value_may_span_lines_and_line_numbers_stay_right() -> None:
    config = parse_config('[proxy]\nsig_key="two\nlines"\n\n; c\nsig_iss=me\n')
    assert config.text("proxy/sig_key") == "two\nlines"
    lines = {
        key: setting.line
        for key in ("proxy/sig_key", "proxy/sig_iss")
        if (setting := config.get(key))
    }
    assert lines == {"proxy/sig_key": 2, "proxy/sig_iss": 6}


def test_conversions_follow_qt() -> None:
    config = parse_config(
        "[handler]\nmessage_rate=fast\nmessage_hwm=2,500\nid_cache_ttl= 60 \n"
        "push_in_sub_connect=no\nshare_all=FALSE\nlist=a, b ,,c\n"
    )
    assert config.number("handler/message_rate", -1) == 0  # not a number
    assert config.number("handler/message_hwm", -1) == 0  # a list
    assert config.number("handler/id_cache_ttl", 0) == 60
    assert config.number("handler/missing", 7) == 7
    assert config.flag("handler/push_in_sub_connect") is True  # "no" is true to Qt
    assert config.flag("handler/share_all") is False
    assert config.flag("handler/missing") is False
    assert config.texts("handler/list") == ["a", "b", "c"]


def test_text_is_read_as_latin_1_then_made_utf_8_again() -> None:
    # Observed on Pushpin 1.36: sig_key=clé in a UTF-8 file signs with "clÃ©".
    assert value_of("sig_key=clé") == "clÃ©"


def test_a_repeated_key_takes_the_last_value_and_general_is_top_level() -> None:
    config = parse_config("top=1\n[General]\nalso=2\n[proxy]\nsig_iss=a\nsig_iss=b\n")
    assert config.text("top") == "1" and config.text("also") == "2"
    assert config.text("proxy/sig_iss") == "b"
    assert config.sections() == {"", "proxy"}


def test_the_include_is_under_the_config_and_vars_are_resolved(tmp_path: Path) -> None:
    main = parse_config(
        "[global]\ninclude={libdir}/internal.conf\nrundir=/run/pp\nipc_prefix=x-\n"
        "[handler]\nstats_spec=ipc://{rundir}/{ipc_prefix}stats\n",
        file=str(tmp_path / "pushpin.conf"),
        libdir="/opt/pushpin/lib",
    )
    assert main.include_path() == "/opt/pushpin/lib/internal.conf"
    assert main.text("handler/stats_spec") == "ipc:///run/pp/x-stats"
    merged = main.with_include(
        parse_config("[handler]\nstats_spec=tcp://0.0.0.0:1\ncommand_spec=tcp://a:2\n")
    )
    assert merged.text("handler/stats_spec") == "ipc:///run/pp/x-stats"  # the main file wins
    assert merged.text("handler/command_spec") == "tcp://a:2"


@pytest.mark.parametrize(
    ("include", "libdir_line", "expected"),
    [
        ("internal.conf", "", "/lib/pp/internal.conf"),  # Pushpin's special case
        ("other.conf", "", "{dir}/other.conf"),  # relative to the config file
        ("/abs/x.conf", "", "/abs/x.conf"),
        ("{libdir}/internal.conf", "libdir=/own/lib\n", "/own/lib/internal.conf"),
    ],
)
def test_include_paths(include: str, libdir_line: str, expected: str, tmp_path: Path) -> None:
    config = parse_config(
        f"[global]\ninclude={include}\n{libdir_line}",
        file=str(tmp_path / "pushpin.conf"),
        libdir="/lib/pp",
    )
    assert config.include_path() == expected.format(dir=tmp_path)


# --- Reading routes as Pushpin does -----------------------------------------------------------


def test_routes_sections_options_and_comments() -> None:
    routes = parse_routes(
        "# comment\n\n"
        '*,path_beg="/a b",proto=ws 127.0.0.1:8000,over_http,sub=x,sub=y  backup:9,ssl # end\n'
        "path_beg=/only test\n"
    )
    assert routes.skipped == ()
    first, second = routes.routes
    assert first.line == 3
    assert first.condition.value == "*"
    assert first.condition.option("path_beg") == "/a b"
    assert [t.value for t in first.targets] == ["127.0.0.1:8000", "backup:9"]
    assert first.targets[0].options == {"over_http": ("",), "sub": ("x", "y")}
    assert second.condition.value == "" and second.condition.option("path_beg") == "/only"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("*\t127.0.0.1:8000", "no target after the condition (only spaces separate them"),
        ("* 127.0.0.1", "is not host:port"),
        ("* 127.0.0.1:99999", "has no valid port"),
        ("*,proto=websocket app:80", "proto must be http or ws"),
        ("*,ssl=true app:80", "ssl must be yes or no"),
        ("*,path_beg= app:80", "path_beg is empty"),
        ('*,path_beg="/x app:80', "an unterminated quote"),
        ("*,,x app:80", "an empty option"),
        ("*,=x app:80", "an option without a name"),
    ],
)
def test_lines_pushpin_skips_are_kept_apart(line: str, reason: str) -> None:
    routes = parse_routes(f"* test\n{line}\n")
    assert len(routes.routes) == 1
    [(number, text, why)] = routes.skipped
    assert (number, text) == (2, line.strip())
    assert reason in why


# --- Each rule --------------------------------------------------------------------------------


def test_the_hardened_config_has_no_finding() -> None:
    assert run_check(render()) == []


@pytest.mark.parametrize(
    ("value", "described"),
    [
        (None, "unset"),
        ("", "empty"),
        ("a,b", "read as empty: an unquoted comma made it a list"),
        ("base64:!!==", "a base64: key of no bytes"),
    ],
)
def test_an_empty_upstream_key_is_an_error(value: str | None, described: str) -> None:
    [finding] = [
        f for f in run_check(render({"proxy/upstream_key": value})) if f.id != "GRIP-PP015"
    ]
    assert (finding.id, finding.severity, finding.value) == (
        "GRIP-PP001",
        Severity.ERROR,
        described,
    )


def test_an_empty_sig_key_or_sig_iss_is_an_error() -> None:
    assert found({"proxy/sig_key": ""}) == [("GRIP-PP002", "error")]
    [finding] = run_check(render({"proxy/sig_iss": ""}))
    assert (finding.id, finding.setting) == ("GRIP-PP002", "[proxy] sig_iss")
    assert "no Grip-Sig" in finding.consequence
    # Unset, sig_iss is "pushpin": Pushpin signs, and the app expects that issuer.
    assert found({"proxy/sig_iss": None}) == []


@pytest.mark.parametrize(
    ("key", "value", "weakness"),
    [
        ("proxy/sig_key", "changeme", "Pushpin's public default 'changeme'"),
        ("proxy/upstream_key", "short-secret", "only 12 bytes"),
        ("proxy/upstream_key", "base64:" + base64.b64encode(b"x" * 15).decode(), "only 15 bytes"),
    ],
)
def test_a_guessable_key_is_a_warning(key: str, value: str, weakness: str) -> None:
    findings = run_check(render({key: value}), options=CheckOptions(audience=1))
    [finding] = [f for f in findings if f.id == "GRIP-PP003"]
    assert finding.severity is Severity.WARNING
    assert finding.value == weakness and finding.setting == f"[proxy] {key.split('/')[1]}"
    assert value not in finding.line_text() or value == "changeme"  # no secret is printed


def test_keys_pushpin_reads_from_base64_or_a_file_are_not_guessable() -> None:
    strong = "base64:" + base64.b64encode(bytes(range(32))).decode()
    assert found({"proxy/upstream_key": strong}) == []
    assert found({"proxy/upstream_key": "file:upstream.pem"}) == []


def test_the_app_must_accept_the_grip_sig_pushpin_makes() -> None:
    def app(url: str) -> list[tuple[str, str, str]]:
        options = replace(HARDENED_OPTIONS, grip=GripSettings.build(url))
        return [(f.id, str(f.severity), f.setting) for f in run_check(render(), options=options)]

    assert app(APP_GRIP_URL) == []
    encoded = base64.b64encode(SIG_KEY.encode()).decode()
    assert app(f"http://a/?verify-iss=pushpin&verify-key=base64:{encoded}") == []
    assert app(f"http://a/?verify-key={SIG_KEY}") == []  # no verify-iss: any issuer
    assert app("http://a/?verify-iss=pushpin&verify-key=another-key-of-32-bytes-or-so") == [
        ("GRIP-PP004", "error", "[proxy] sig_key")
    ]
    assert app(f"http://a/?verify-iss=fanout&verify-key={SIG_KEY}") == [
        ("GRIP-PP004", "error", "[proxy] sig_iss")
    ]
    assert app("http://a/") == [("GRIP-PP005", "error", "GRIP_URL")]
    # Several proxies: one that verifies is enough, as in the app.
    keyless = "http://b/?verify-iss=pushpin&verify-key=another-key-of-32-bytes-or-so"
    options = replace(HARDENED_OPTIONS, grip=GripSettings.build([keyless, APP_GRIP_URL]))
    assert run_check(render(), options=options) == []


def test_a_non_ascii_key_is_compared_as_pushpin_mangles_it() -> None:
    config = render({"proxy/sig_key": "clé-clé-clé-clé-clé-clé"})
    options = replace(
        HARDENED_OPTIONS, grip=GripSettings.build(f"http://a/?verify-key={'clé-' * 5}clé")
    )
    assert ids(run_check(config, options=options)) == [("GRIP-PP004", "error")]


def test_a_key_in_the_app_that_does_not_load_is_raised() -> None:
    options = replace(
        HARDENED_OPTIONS,
        grip=GripSettings.build("http://a/?verify-key=-----BEGIN PUBLIC KEY-----x"),
    )
    with pytest.raises(GripConfigError):
        run_check(render(), options=options)


def test_routes_that_sign_with_their_own_key_are_checked() -> None:
    routes = (
        "api.example.com,sig_key=changeme 127.0.0.1:8000,over_http\n"
        f"ws.example.com,sig_iss=other,sig_key={SIG_KEY} 127.0.0.1:8000,over_http\n"
        "pem.example.com,sig_key=file:key.pem 127.0.0.1:8000,over_http\n" + HARDENED_ROUTES
    )
    findings = run_check(render(), routes)
    assert [(f.id, str(f.severity), f.line, f.value) for f in findings] == [
        ("GRIP-PP004", "error", 1, "sig_key: not the app's verify-key"),
        ("GRIP-PP004", "error", 2, "sig_iss: 'other', not the app's verify-iss"),
        ("GRIP-PP003", "warning", 1, "sig_key: Pushpin's public default 'changeme'"),
        ("GRIP-PP000", "info", 3, "sig_key: a key file"),
    ]
    assert all(f.file == "routes" for f in findings)


@pytest.mark.parametrize(
    ("rate", "audience", "expected"),
    [
        ("2500", None, [("GRIP-PP006", "info")]),
        ("2500", 2500, []),  # 1 s: not past the limit
        ("2500", 2501, [("GRIP-PP006", "warning")]),
        ("-1", 10**9, []),  # no limit
        (None, 10**9, []),  # unset: no limit
    ],
)
def test_message_rate_against_the_audience(
    rate: str | None, audience: int | None, expected: list[tuple[str, str]]
) -> None:
    findings = found({"handler/message_rate": rate, "handler/message_hwm": None}, audience=audience)
    assert [f for f in findings if f[0] == "GRIP-PP006"] == expected


def test_message_rate_says_how_long_a_publish_takes() -> None:
    options = replace(HARDENED_OPTIONS, audience=20_000)
    [finding] = run_check(render({"handler/message_rate": "2500"}), options=options)
    assert finding.value == "2,500 a second"
    assert "20,000 subscribers takes 8 s" in finding.consequence
    assert "20,000 or more" in finding.fix


@pytest.mark.parametrize(
    ("hwm", "audience", "expected"),
    [
        ("25000", None, [("GRIP-PP007", "info")]),
        ("25000", 25000, []),
        ("25000", 25001, [("GRIP-PP007", "error")]),
        (None, 10**6, []),  # unset: no limit
        ("0", 10**6, []),
    ],
)
def test_message_hwm_against_the_audience(
    hwm: str | None, audience: int | None, expected: list[tuple[str, str]]
) -> None:
    findings = found({"handler/message_hwm": hwm, "handler/message_rate": None}, audience=audience)
    assert [f for f in findings if f[0] == "GRIP-PP007"] == expected


def test_the_hwm_error_counts_the_drops() -> None:
    options = replace(HARDENED_OPTIONS, audience=80)
    [finding] = run_check(render({"handler/message_hwm": "50"}), options=options)
    assert "drops 30 deliveries" in finding.consequence  # as observed: 80 subscribers, 50 got it


@pytest.mark.parametrize("ttl", [None, "0", "-1", "soon"])
def test_no_id_cache_means_a_retried_publish_is_delivered_twice(ttl: str | None) -> None:
    assert found({"handler/id_cache_ttl": ttl}) == [("GRIP-PP008", "warning")]


@pytest.mark.parametrize(
    ("limit", "channels", "expected"),
    [
        (None, None, [("GRIP-PP009", "info")]),
        (None, 20, []),  # the default is 20
        (None, 21, [("GRIP-PP009", "warning")]),
        ("50", 50, []),
    ],
)
def test_subscriptions_per_connection(
    limit: str | None, channels: int | None, expected: list[tuple[str, str]]
) -> None:
    changes = {"handler/connection_subscription_max": limit}
    assert found(changes, channels_per_connection=channels) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"handler/push_in_http_addr": "0.0.0.0"}, [("GRIP-PP010", "error")]),
        ({"handler/push_in_http_addr": "8.8.8.8"}, [("GRIP-PP010", "error")]),
        ({"handler/push_in_http_addr": "10.1.2.3"}, [("GRIP-PP010", "warning")]),
        ({"handler/push_in_http_addr": "::1"}, []),
        # Observed on 1.36: a host name, or no address, listens on every interface.
        ({"handler/push_in_http_addr": "localhost"}, [("GRIP-PP010", "error")]),
        ({"handler/push_in_http_addr": None}, [("GRIP-PP010", "error")]),
        ({"handler/push_in_http_addr": None, "handler/push_in_http_port": None}, []),
        ({"handler/push_in_spec": "tcp://*:5560"}, [("GRIP-PP010", "error")]),
        ({"handler/push_in_spec": "tcp://[::1]:5560"}, []),
        ({"handler/push_in_spec": "ipc:///run/pushpin/push-in"}, []),
        ({"handler/command_spec": "tcp://192.168.1.4:5563"}, [("GRIP-PP010", "warning")]),
        ({"handler/command_spec": "tcp://eth0:5563"}, [("GRIP-PP010", "warning")]),
        ({"handler/push_in_sub_specs": "tcp://0.0.0.0:5562"}, [("GRIP-PP010", "error")]),
        # Connecting to a publisher elsewhere is the scale-out layout, not an open port.
        (
            {
                "handler/push_in_sub_specs": "tcp://0.0.0.0:5562",
                "handler/push_in_sub_connect": "true",
            },
            [],
        ),
        ({"handler/stats_spec": "tcp://0.0.0.0:5564"}, [("GRIP-PP011", "warning")]),
        ({"proxy/stats_spec": "tcp://10.0.0.1:5565"}, [("GRIP-PP011", "warning")]),
    ],
)
def test_ports_reachable_beyond_this_machine(
    changes: dict[str, str | None], expected: list[tuple[str, str]]
) -> None:
    assert found(changes) == expected


def test_an_open_publish_port_says_where_and_why() -> None:
    [finding] = run_check(
        render({"handler/push_in_http_addr": "0.0.0.0", "global/port_offset": "2"})
    )
    assert (finding.setting, finding.value) == (
        "[handler] push_in_http_addr",
        "0.0.0.0:5563: every interface",
    )
    assert "authenticates nothing" in finding.consequence
    assert finding.line == line_of(render(), "push_in_http_addr=")


@pytest.mark.parametrize(
    ("routes", "paths", "expected"),
    [
        ("* 127.0.0.1:8000\n", (), [("GRIP-PP012", "info")]),
        ("* 127.0.0.1:8000\n", ("/chat",), [("GRIP-PP012", "warning")]),
        (
            "*,path_beg=/api 127.0.0.1:8000\n" + HARDENED_ROUTES,
            ("/chat",),
            [("GRIP-PP012", "info")],
        ),
        ("*,path_beg=/ws 127.0.0.1:8000\n", ("/ws/chat",), [("GRIP-PP012", "warning")]),
        ("*,proto=http 127.0.0.1:8000\n" + HARDENED_ROUTES, ("/chat",), []),
        ("* test\n", ("/chat",), []),
        ("* 127.0.0.1:8000,over_http 127.0.0.1:8001\n", ("/chat",), [("GRIP-PP012", "warning")]),
    ],
)
def test_routes_without_over_http(
    routes: str, paths: tuple[str, ...], expected: list[tuple[str, str]]
) -> None:
    options = replace(HARDENED_OPTIONS, websocket_paths=paths)
    assert ids(run_check(render(), routes, options)) == expected


def test_a_route_finding_names_the_target_and_the_fix() -> None:
    [finding] = run_check(render(), "* 10.0.0.2:80,over_http 10.0.0.3:80\n")
    assert (finding.setting, finding.value) == (
        "route '* 10.0.0.2:80,over_http 10.0.0.3:80'",
        "10.0.0.3:80 without over_http",
    )
    assert "10.0.0.3:80,over_http" in finding.fix
    assert (finding.file, finding.line) == ("routes", 1)


def test_proxy_flags_that_open_things_up() -> None:
    assert found({"proxy/accept_pushpin_route": "true"}) == [("GRIP-PP013", "warning")]
    assert found({"proxy/debug": "true"}) == [("GRIP-PP014", "info")]
    routes = "*,debug 127.0.0.1:8000,over_http\n"
    assert ids(run_check(render(), routes)) == [("GRIP-PP014", "info")]


def test_values_pushpin_reads_otherwise_than_they_look() -> None:
    # "no" is true to Qt: debug is on (observed on 1.36).
    assert found({"proxy/debug": "no"}) == [("GRIP-PP015", "warning"), ("GRIP-PP014", "info")]
    # An unquoted comma: message_hwm reads as 0, so no limit (and no hwm finding).
    findings = run_check(render({"handler/message_hwm": "25,000"}))
    [finding] = findings
    assert (finding.id, finding.value) == (
        "GRIP-PP015",
        "read as 0: an unquoted comma made it a list",
    )
    # The same for a key: Pushpin then signs with an empty key.
    assert found({"proxy/sig_key": "long,secret-with-a-comma-inside"}) == [
        ("GRIP-PP002", "error"),
        ("GRIP-PP015", "warning"),
    ]


def test_routes_lines_pushpin_skips_are_warnings() -> None:
    findings = run_check(render(), HARDENED_ROUTES + "ws.example.com\t127.0.0.1:8000\n")
    [finding] = findings
    assert (finding.id, finding.severity, finding.line) == ("GRIP-PP016", Severity.WARNING, 2)
    assert "tabs" in finding.value


def test_findings_are_sorted_errors_first_and_can_be_ignored() -> None:
    changes = {"proxy/debug": "true", "proxy/upstream_key": "", "handler/id_cache_ttl": "0"}
    assert found(changes) == [
        ("GRIP-PP001", "error"),
        ("GRIP-PP008", "warning"),
        ("GRIP-PP014", "info"),
    ]
    assert found(changes, ignore=frozenset({"GRIP-PP001", "GRIP-PP014"})) == [
        ("GRIP-PP008", "warning")
    ]


def test_every_rule_has_an_entry_in_the_list() -> None:
    assert list(FINDINGS) == [f"GRIP-PP{n:03}" for n in range(17)]


# --- The three configs of issue 14 ------------------------------------------------------------


def stock_config() -> Path:
    if not STOCK_CONFIG.is_file():
        pytest.fail(
            f"{STOCK_CONFIG} is missing: Debian's pushpin package provides it; run "
            "scripts/install-pushpin",
            pytrace=False,
        )
    return STOCK_CONFIG


def test_debian_stock_config() -> None:
    config, routes, notes = load_pushpin(str(stock_config()))
    assert notes == []  # internal.conf and the routes file were found and read
    assert routes is not None and [r.text for r in routes.routes] == ["* test"]
    findings = check_pushpin(config, routes)
    assert [(f.id, str(f.severity), f.setting) for f in findings] == [
        ("GRIP-PP001", "error", "[proxy] upstream_key"),
        ("GRIP-PP003", "warning", "[proxy] sig_key"),
        ("GRIP-PP006", "info", "[handler] message_rate"),
        ("GRIP-PP007", "info", "[handler] message_hwm"),
        ("GRIP-PP009", "info", "[handler] connection_subscription_max"),
    ]
    # The docs' GRIP_URL matches its keys; with an audience, rate and queue are judged.
    options = CheckOptions(
        grip=GripSettings.build("http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme"),
        audience=30_000,
        channels_per_connection=5,
    )
    assert ids(check_pushpin(config, routes, options)) == [
        ("GRIP-PP001", "error"),
        ("GRIP-PP007", "error"),
        ("GRIP-PP003", "warning"),
        ("GRIP-PP006", "warning"),
    ]


def write_runner_config(pushpin: Pushpin, run_dir: Path) -> Path:
    (run_dir / "pushpin.conf").write_text(pushpin._render_config(str(run_dir)))
    (run_dir / "routes").write_text(pushpin._render_routes())
    return run_dir / "pushpin.conf"


def test_our_runner_config(tmp_path: Path) -> None:
    pushpin = Pushpin("127.0.0.1:8000")
    config, routes, notes = load_pushpin(str(write_runner_config(pushpin, tmp_path)))
    assert notes == []
    assert routes is not None and len(routes.routes) == 2  # the readiness route and the app's
    options = CheckOptions(grip=GripSettings.build(pushpin.grip_url), websocket_paths=("/ws",))
    assert ids(check_pushpin(config, routes, options)) == [
        ("GRIP-PP003", "warning"),  # sig_key "changeme", its default for local development
        ("GRIP-PP006", "info"),
        ("GRIP-PP007", "info"),
        ("GRIP-PP009", "info"),
        ("GRIP-PP014", "info"),  # debug=true: errors name the backend
    ]


def test_our_runner_config_with_a_strong_key_and_an_audience(tmp_path: Path) -> None:
    pushpin = Pushpin("127.0.0.1:8000", sig_key=SIG_KEY, message_rate=None, message_hwm=100_000)
    config, routes, _ = load_pushpin(str(write_runner_config(pushpin, tmp_path)))
    options = CheckOptions(
        grip=GripSettings.build(pushpin.grip_url), audience=50_000, channels_per_connection=20
    )
    assert ids(check_pushpin(config, routes, options)) == [("GRIP-PP014", "info")]


def test_a_hardened_config(tmp_path: Path) -> None:
    (tmp_path / "pushpin.conf").write_text(render())
    (tmp_path / "routes").write_text(HARDENED_ROUTES)
    config, routes, notes = load_pushpin(str(tmp_path / "pushpin.conf"), libdir=str(tmp_path))
    # Its include is {libdir}/internal.conf, which this libdir does not have.
    assert [(n.id, n.setting) for n in notes] == [("GRIP-PP000", "[global] include")]
    assert check_pushpin(config, routes, HARDENED_OPTIONS) == []


# --- grip-asgi check --------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the hardened pushpin.conf and routes, and no GRIP_* environment."""
    for name in ("GRIP_URL", "GRIP_PROXIES", "GRIP_VERIFY_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "pushpin.conf").write_text(render({"global/include": None}))
    (tmp_path / "routes").write_text(HARDENED_ROUTES)
    return tmp_path


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = _cli.main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


HARDENED_ARGS = [
    "--grip-url",
    APP_GRIP_URL,
    "--audience",
    "20000",
    "--channels-per-connection",
    "10",
    "--websocket-path",
    "/chat",
]


def test_cli_passes_a_hardened_config(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli([str(files / "pushpin.conf"), *HARDENED_ARGS, "--strict"], capsys)
    assert (code, out, err) == (0, "no findings\n", "")


def test_cli_prints_one_line_per_finding(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = files / "pushpin.conf"
    text = render({"global/include": None, "proxy/upstream_key": "", "proxy/debug": "1"})
    conf.write_text(text)
    code, out, _ = cli([str(conf)], capsys)
    lines = out.splitlines()
    assert code == 1
    number = line_of(text, "upstream_key=")
    assert lines[0].startswith(f"{conf}:{number}: error GRIP-PP001 [proxy] upstream_key (empty): ")
    assert "Fix: Set upstream_key to a long random secret" in lines[0]
    assert [line.split()[1:3] for line in lines[:-1]] == [
        ["error", "GRIP-PP001"],
        ["info", "GRIP-PP006"],
        ["info", "GRIP-PP007"],
        ["info", "GRIP-PP009"],
        ["info", "GRIP-PP014"],
    ]
    assert lines[-1] == "1 error, 4 info"


def test_cli_exit_codes(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = str(files / "pushpin.conf")
    assert cli([conf, *HARDENED_ARGS], capsys)[0] == 0
    # Warnings pass, unless --strict.
    (files / "pushpin.conf").write_text(
        render({"global/include": None, "proxy/sig_key": "changeme"})
    )
    grip_url = "http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme"
    args = [conf, *HARDENED_ARGS, "--grip-url", grip_url]
    assert cli(args, capsys)[0] == 0
    assert cli([*args, "--strict"], capsys)[0] == 1
    assert cli([*args, "--strict", "--ignore", "GRIP-PP003"], capsys)[0] == 0
    # An error fails.
    assert cli([conf, *HARDENED_ARGS, "--audience", "300000"], capsys)[0] == 1  # message_hwm


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.conf"], "cannot read missing.conf: No such file or directory"),
        (["{dir}/pushpin.conf", "{dir}/no-routes"], "cannot read {dir}/no-routes"),
        (["{dir}/routes"], "{dir}/routes has no [runner], [proxy] or [handler] section"),
        (["{dir}/pushpin.conf", "--audience", "0"], "--audience: must be 1 or more"),
        (["{dir}/pushpin.conf", "--ignore", "PP001"], "--ignore PP001: no such finding"),
        (["{dir}/pushpin.conf", "--websocket-path", "chat"], "must start with /"),
        (["{dir}/pushpin.conf", "--grip-url", "ftp://x"], "GRIP URL must start with http"),
        (
            ["{dir}/pushpin.conf", "--grip-url", "http://a/?verify-key=-----BEGIN PUBLIC KEY-----"],
            "not a usable PEM key",
        ),
        ([], "the following arguments are required: PUSHPIN_CONF"),
    ],
)
def test_cli_usage_errors_exit_2(
    args: list[str], message: str, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli([arg.format(dir=files) for arg in args], capsys)
    assert (code, out) == (2, "")
    assert message.format(dir=files) in err and err.startswith("usage: grip-asgi check")


def test_cli_unreadable_config(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli([str(files)], capsys)  # a directory: open() fails, even for root
    assert (code, out) == (2, "")
    assert f"cannot read {files}: Is a directory" in err


def test_cli_json(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = files / "pushpin.conf"
    conf.write_text(render({"global/include": None, "handler/id_cache_ttl": None}))
    code, out, _ = cli([str(conf), *HARDENED_ARGS, "--json"], capsys)
    document = json.loads(out)
    assert code == 0
    assert document["config"] == str(conf) and document["routes"] == str(files / "routes")
    assert document["counts"] == {"error": 0, "warning": 1, "info": 0}
    [finding] = document["findings"]
    assert finding == {
        "id": "GRIP-PP008",
        "severity": "warning",
        "setting": "[handler] id_cache_ttl",
        "value": "unset (0)",
        "consequence": finding["consequence"],
        "fix": "Set id_cache_ttl=60 (seconds), as Pushpin's stock config does.",
        "file": str(conf),
        "line": None,
    }
    assert "delivered twice" in finding["consequence"]


def test_cli_reads_grip_url_from_the_environment(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [str(files / "pushpin.conf"), "--audience", "1", "--channels-per-connection", "1"]
    monkeypatch.setenv("GRIP_URL", "http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=wrong")
    code, out, _ = cli(args, capsys)
    assert code == 1 and "GRIP-PP004" in out
    monkeypatch.setenv("GRIP_URL", APP_GRIP_URL)
    assert cli(args, capsys)[0] == 0


def test_cli_notes_a_routes_file_it_cannot_find(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (files / "routes").unlink()
    code, out, _ = cli([str(files / "pushpin.conf"), *HARDENED_ARGS], capsys)
    assert code == 0
    assert out.splitlines() == [
        f"{files}/pushpin.conf:{line_of(render({'global/include': None}), 'routesfile=')}:"
        f" info GRIP-PP000 [proxy] routesfile ({files}/routes: No such"
        " file or directory): The settings in that file were not checked. Fix: Run the check"
        " where Pushpin's files are, or name them: --libdir for {libdir}/internal.conf, the"
        " second argument for the routes file.",
        "1 info",
    ]


def test_python_m_grip_asgi_check_runs(files: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "grip_asgi", "check", str(files / "pushpin.conf"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GRIP_")},
    )
    assert done.returncode == 0, done.stderr
    # message_rate, message_hwm and connection_subscription_max, with no options to judge them
    assert json.loads(done.stdout)["counts"] == {"error": 0, "warning": 0, "info": 3}


# --- What the app sees at start-up ------------------------------------------------------------


def ec_public_pem() -> str:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_weak_verify_keys() -> None:
    def weak(*urls: str, verify_key: str | None = None) -> list[str]:
        return weak_verify_keys(GripSettings.build(list(urls), verify_key=verify_key))

    assert weak("http://p:5561/?verify-key=changeme") == [
        "the Grip-Sig verify key of http://p:5561 is Pushpin's public default 'changeme'"
    ]
    assert weak("http://p:5561/?key=short") == [
        "the Grip-Sig verify key of http://p:5561 is only 5 bytes"
    ]
    assert weak("http://a/?verify-key=" + "k" * 16, "http://b/?verify-key=changeme") == [
        "the Grip-Sig verify key of http://b is Pushpin's public default 'changeme'"
    ]
    assert weak(verify_key="changeme") == [
        "the Grip-Sig verify key is Pushpin's public default 'changeme'"
    ]
    assert weak("http://p/", verify_key="tiny") == [
        "the Grip-Sig verify key of http://p is only 4 bytes"
    ]
    assert weak("http://p/?verify-key=base64:" + base64.b64encode(b"changeme").decode()) != []
    assert weak("http://p/?verify-key=" + "k" * 16) == []
    assert weak("http://p/") == []  # no key at all: a warning of its own
    assert weak_verify_keys(GripSettings.build(None, verify_key=ec_public_pem())) == []
    assert weak("https://api.fastly.com/service/x?key=token") == []  # Fastly's public key


@pytest.fixture
def context_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING, logger="grip_asgi")
    yield caplog


async def noop_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    pass


def test_the_middleware_warns_at_start_about_a_guessable_key(
    context_logs: pytest.LogCaptureFixture,
) -> None:
    GripMiddleware(noop_app, grip="http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme")
    [record] = context_logs.records
    assert record.levelno == logging.WARNING and record.name == "grip_asgi.context"
    assert record.getMessage().startswith(
        "grip: the Grip-Sig verify key of http://127.0.0.1:5561 is Pushpin's public default"
        " 'changeme', so anyone who knows or guesses it can sign Grip-Sig as the proxy"
    )
    context_logs.clear()
    GripMiddleware(noop_app, grip=APP_GRIP_URL)
    assert context_logs.records == []


def test_the_django_check_w006(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test import override_settings

    from grip_django.checks import check_grip_settings
    from tests.djangoapp import isolate_grip, setup_django

    setup_django()
    isolate_grip(monkeypatch)
    with override_settings(GRIP_URL="http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=abc"):
        [message] = check_grip_settings()
    assert message.id == "grip_django.W006"
    assert message.msg == (
        "the Grip-Sig verify key of http://127.0.0.1:5561 is only 3 bytes, so anyone who knows"
        " or guesses it can sign Grip-Sig as the proxy."
    )
    assert message.hint is not None and "16 bytes or more" in message.hint
    with override_settings(GRIP_URL=APP_GRIP_URL):
        assert check_grip_settings() == []
    isolate_grip(monkeypatch)
