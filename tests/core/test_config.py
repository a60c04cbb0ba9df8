from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from grip_asgi._config import FASTLY_FANOUT_PUBLIC_KEY, GripConfig, GripSettings, parse_grip_uri
from grip_asgi._errors import GripConfigError

FANOUT_KEY = base64.b64decode("geag121321==")

# Spec §7.4 (pygripcontrol and js-grip tests) plus the cases our own docs promise.
PARSE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "fanout realm": (
        "http://api.fanout.io/realm/realm?iss=realm&key=base64:geag121321==",
        {
            "control_uri": "http://api.fanout.io/realm/realm",
            "control_iss": "realm",
            "key": FANOUT_KEY,
        },
    ),
    "unknown params kept": (
        "http://api.fanout.io/realm/realm?iss=realm&key=base64:geag121321==&param1=value1&param2=value2",
        {
            "control_uri": "http://api.fanout.io/realm/realm?param1=value1&param2=value2",
            "control_iss": "realm",
            "key": FANOUT_KEY,
        },
    ),
    "trailing slash removed, port kept": (
        "http://api.fanout.io:8080/realm/realm/?iss=realm&key=base64:geag121321==",
        {"control_uri": "http://api.fanout.io:8080/realm/realm", "key": FANOUT_KEY},
    ),
    "literal key": (
        "http://api.fanout.io/realm/realm?iss=realm&key=geag121321==",
        {"key": "geag121321=="},
    ),
    "literal plus in a base64 key": (
        "http://h/?key=base64:YWJj+/8=",
        {"key": b"abc\xfb\xff"},
    ),
    "fastly verify-iss and verify-key": (
        "https://api.fastly.com/service/SID?key=TOKEN&verify-iss=fastly:SID&verify-key=base64:"
        + base64.b64encode(FASTLY_FANOUT_PUBLIC_KEY.encode()).decode(),
        {
            "control_uri": "https://api.fastly.com/service/SID",
            "control_iss": None,
            "key": "TOKEN",
            "verify_iss": "fastly:SID",
            "verify_key": FASTLY_FANOUT_PUBLIC_KEY.encode(),
        },
    ),
    "pushpin": (
        "http://localhost:5561/?verify-iss=pushpin&verify-key=changeme",
        {
            "control_uri": "http://localhost:5561",
            "verify_iss": "pushpin",
            "verify_key": "changeme",
            "key": None,
        },
    ),
    "basic credentials": (
        "https://us%40er:p%3Ass@example.com/grip",
        {"control_uri": "https://example.com/grip", "user": "us@er", "password": "p:ss"},
    ),
    "user without password": (
        "https://user@example.com",
        {"control_uri": "https://example.com", "user": "user", "password": None},
    ),
    "IPv6 host": (
        "http://[::1]:5561/?verify-key=k",
        {"control_uri": "http://[::1]:5561", "verify_key": "k"},
    ),
    "empty values mean unset": (
        "http://h/?iss=&key=&verify-iss=&verify-key=&verify-key-2=",
        {
            "control_uri": "http://h?verify-key-2=",
            "control_iss": None,
            "key": None,
            "verify_iss": None,
            "verify_key": None,
        },
    ),
    "empty base64 key means unset": ("http://h/?verify-key=base64:", {"verify_key": None}),
    "surrounding whitespace": ("  http://h/ \n", {"control_uri": "http://h"}),
    "fragment dropped": ("http://h/x/#frag", {"control_uri": "http://h/x"}),
}


@pytest.mark.parametrize("name", PARSE_CASES)
def test_parse_grip_uri(name: str) -> None:
    uri, expected = PARSE_CASES[name]
    config = parse_grip_uri(uri)
    assert {field: getattr(config, field) for field in expected} == expected
    assert GripConfig.from_uri(uri) == config


BAD_URIS: dict[str, tuple[Any, str]] = {
    "empty": ("", "empty"),
    "blank": ("   ", "empty"),
    "not a string": (None, "empty"),
    "ftp": ("ftp://h/?key=s3cret", "must start with http:// or https://"),
    "no scheme": ("localhost:5561", "must start with http"),
    "no host": ("http:///path?key=s3cret", "no host"),
    "only a port": ("http://:80", "no host"),
    "bad port": ("http://h:abc/?key=s3cret", "invalid port"),
    "port out of range": ("http://user:s3cret@h:99999", "invalid port"),
    "bad IPv6": ("http://[::1/?key=s3cret", "invalid URL"),
    "bad base64": ("http://h/?key=base64:%%%", "not valid base64"),
    "non-ASCII base64": ("http://h/?verify-key=base64:%C3%A9", "not valid base64"),
    "repeated key": ("http://h/?key=a&key=b", "repeats the 'key' parameter"),
    "repeated verify-iss": ("http://h/?verify-iss=a&verify-iss=b", "'verify-iss'"),
}


@pytest.mark.parametrize("name", BAD_URIS)
def test_malformed_grip_uri(name: str) -> None:
    uri, message = BAD_URIS[name]
    with pytest.raises(GripConfigError, match=message) as caught:
        parse_grip_uri(uri)
    # Keys and passwords stay out of error messages, which end up in logs.
    assert "s3cret" not in str(caught.value)


def test_grip_config_validates_control_uri() -> None:
    with pytest.raises(
        GripConfigError, match=r"http:// or https:// URL with a host, got 'ftp://h/'"
    ):
        GripConfig("ftp://h/?key=s3cret")
    with pytest.raises(GripConfigError, match="got 'https://\\*\\*\\*@/x'"):
        GripConfig("https://user:s3cret@/x")
    with pytest.raises(GripConfigError, match="invalid URL"):
        GripConfig("http://[::1")
    with pytest.raises(GripConfigError, match="control_uri must be a string, got int"):
        GripConfig(5)  # type: ignore[arg-type]


def test_fastly() -> None:
    config = GripConfig.fastly("SID", "TOKEN")
    assert config == GripConfig(
        control_uri="https://api.fastly.com/service/SID",
        key="TOKEN",
        verify_iss="fastly:SID",
        verify_key=FASTLY_FANOUT_PUBLIC_KEY,
    )
    assert config.publish_url == "https://api.fastly.com/service/SID/publish/"
    assert config.signature_key == FASTLY_FANOUT_PUBLIC_KEY
    assert GripConfig.fastly("SID", "TOKEN", verify_key="other").verify_key == "other"


@pytest.mark.parametrize(
    ("service_id", "token", "message"),
    [
        ("", "TOKEN", "invalid Fastly service id ''"),
        ("a/b", "TOKEN", "service id 'a/b'"),
        ("a?b", "TOKEN", "service id 'a\\?b'"),
        ("SID", "", "API token is required"),
    ],
)
def test_fastly_rejects(service_id: str, token: str, message: str) -> None:
    with pytest.raises(GripConfigError, match=message):
        GripConfig.fastly(service_id, token)


@pytest.mark.parametrize(
    ("control_uri", "publish_url"),
    [
        ("http://localhost:5561", "http://localhost:5561/publish/"),
        ("http://localhost:5561/", "http://localhost:5561/publish/"),
        ("https://api.fanout.io/realm/r", "https://api.fanout.io/realm/r/publish/"),
        ("http://h/base?a=1&b=2", "http://h/base/publish/?a=1&b=2"),
        ("http://h?a=1", "http://h/publish/?a=1"),
    ],
)
def test_publish_url(control_uri: str, publish_url: str) -> None:
    assert GripConfig(control_uri).publish_url == publish_url


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        # The publish secret verifies where no verify_key is given (django-grip, js-grip):
        # a wrong guess fails closed, never open.
        ({"key": "publish-secret"}, "publish-secret"),
        ({"control_iss": "realm", "key": b"realm-key"}, b"realm-key"),
        ({"control_iss": "realm", "key": "k", "verify_key": "v"}, "v"),
        ({"verify_key": "v"}, "v"),
        ({"verify_key": ""}, None),
        ({"verify_key": b"", "control_iss": "realm", "key": "k"}, "k"),
        ({"control_iss": "realm", "key": ""}, None),
    ],
)
def test_signature_key(fields: dict[str, Any], expected: str | bytes | None) -> None:
    assert GripConfig("http://h", **fields).signature_key == expected


def test_a_fastly_proxy_verifies_with_fastlys_key_not_its_api_token() -> None:
    fastly = GripConfig("https://api.fastly.com/service/SID", key="api-token")
    assert fastly.signature_key == FASTLY_FANOUT_PUBLIC_KEY
    assert GripConfig(fastly.control_uri, verify_key="mine").signature_key == "mine"


def test_a_verify_key_alone_is_kept_in_the_settings() -> None:
    settings = GripSettings.build(None, verify_key="base64:AWGA/g==")
    assert (settings.proxies, settings.verify_key) == ((), b"\x01a\x80\xfe")
    assert GripSettings.from_env({"GRIP_VERIFY_KEY": "k"}).verify_key == "k"
    assert "k" not in repr(GripSettings.from_env({"GRIP_VERIFY_KEY": "k"}))


@pytest.mark.parametrize(("value", "expected"), [("", False), ("yes", True), ("0", False)])
def test_proxy_only_from_the_environment(value: str, expected: bool) -> None:
    assert GripSettings.from_env({"GRIP_PROXY_ONLY": value}).proxy_only is expected


def test_a_malformed_proxy_only_names_the_variable() -> None:
    with pytest.raises(GripConfigError, match="GRIP_PROXY_ONLY must be true or false"):
        GripSettings.from_env({"GRIP_PROXY_ONLY": "maybe"})


def test_with_verify_key() -> None:
    bare = GripConfig("http://h")
    assert bare.with_verify_key(None) is bare
    assert bare.with_verify_key("v").verify_key == "v"
    keyed = GripConfig("http://h", verify_key="mine")
    assert keyed.with_verify_key("v") is keyed


def test_from_dict() -> None:
    config = GripConfig.from_dict(
        {
            "control_uri": "http://localhost:5561",
            "control_iss": "realm",
            "key": "base64:geag121321==",
            "verify_iss": "pushpin",
            "verify_key": "changeme",
        }
    )
    assert config == GripConfig(
        "http://localhost:5561",
        control_iss="realm",
        key=FANOUT_KEY,
        verify_iss="pushpin",
        verify_key="changeme",
    )
    assert GripConfig.from_dict({"control_uri": "http://h", "key": ""}).key is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"control_uri": "http://h", "verify-key": "k", "uri": "x"},
            "setting\\(s\\): uri, verify-key",
        ),
        ({"key": "k"}, "needs 'control_uri'"),
        ({"control_uri": 5}, "must be a string"),
        ({"control_uri": "http://h", "verify_key": "base64:!!"}, "not valid base64"),
    ],
)
def test_from_dict_rejects(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(GripConfigError, match=message):
        GripConfig.from_dict(entry)


def test_secrets_stay_out_of_repr() -> None:
    config = parse_grip_uri(
        "https://user:pa55word@h/?iss=realm&key=k3y-secret&verify-iss=i&verify-key=v3rify-secret"
    )
    settings = GripSettings.build(config)
    for text in (repr(config), repr(settings), str(config)):
        for secret in ("pa55word", "k3y-secret", "v3rify-secret"):
            assert secret not in text
    assert "user='user'" in repr(config)  # the rest is still there to debug with
    assert "control_iss='realm'" in repr(config)


def test_grip_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GripConfig("http://h").key = "k"  # type: ignore[misc]


# --- GripSettings --------------------------------------------------------------------------


def test_build_normalises_every_form() -> None:
    config = GripConfig("http://b")
    assert GripSettings.build(None) == GripSettings()
    assert GripSettings.build([]) == GripSettings()
    assert GripSettings.build("http://a/").proxies == (GripConfig("http://a"),)
    assert GripSettings.build(config).proxies == (config,)
    assert GripSettings.build(("http://a", config)).proxies == (GripConfig("http://a"), config)
    assert GripSettings.build(iter(["http://a"])).proxies == (GripConfig("http://a"),)
    settings = GripSettings.build(None, prefix="app:", proxy_required=True)
    assert (settings.prefix, settings.proxy_required) == ("app:", True)


def test_build_rejects_other_items() -> None:
    with pytest.raises(GripConfigError, match="expected a GRIP URL or GripConfig, got dict"):
        GripSettings.build([{"control_uri": "http://h"}])  # type: ignore[list-item]


def test_build_verify_key_fills_the_gaps() -> None:
    settings = GripSettings.build(
        ["http://a", "http://b/?verify-key=own", GripConfig("http://c", verify_key="mine")],
        verify_key="base64:AWGA/g==",
    )
    assert [proxy.verify_key for proxy in settings.proxies] == [
        bytes([0x01, 0x61, 0x80, 0xFE]),
        "own",
        "mine",
    ]
    assert GripSettings.build("http://a", verify_key="").proxies[0].verify_key is None


def test_from_env_grip_url() -> None:
    settings = GripSettings.from_env(
        {
            "GRIP_URL": "http://localhost:5561/?verify-iss=pushpin&verify-key=changeme",
            "GRIP_PREFIX": "app:",
            "GRIP_PROXY_REQUIRED": "true",
        }
    )
    assert settings == GripSettings(
        (GripConfig("http://localhost:5561", verify_iss="pushpin", verify_key="changeme"),),
        prefix="app:",
        proxy_required=True,
    )


def test_from_env_grip_proxies_and_verify_key() -> None:
    proxies = [
        {"control_uri": "http://a", "key": "base64:geag121321==", "control_iss": "realm"},
        {"control_uri": "http://b", "verify_key": "own"},
    ]
    settings = GripSettings.from_env(
        {
            "GRIP_URL": "http://first",
            "GRIP_PROXIES": json.dumps(proxies),
            "GRIP_VERIFY_KEY": "shared",
        }
    )
    assert settings.proxies == (
        GripConfig("http://first", verify_key="shared"),
        GripConfig("http://a", control_iss="realm", key=FANOUT_KEY, verify_key="shared"),
        GripConfig("http://b", verify_key="own"),
    )
    assert (settings.prefix, settings.proxy_required) == ("", False)


def test_from_env_empty() -> None:
    assert GripSettings.from_env({}) == GripSettings()
    blank = {"GRIP_URL": "  ", "GRIP_PROXIES": "", "GRIP_VERIFY_KEY": ""}
    assert GripSettings.from_env(blank) == GripSettings()


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRIP_PROXIES", "GRIP_VERIFY_KEY", "GRIP_PREFIX", "GRIP_PROXY_REQUIRED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIP_URL", "http://from-env:5561")
    assert GripSettings.from_env().proxies == (GripConfig("http://from-env:5561"),)


@pytest.mark.parametrize(
    ("value", "required"),
    [
        ("1", True),
        ("true", True),
        (" TRUE ", True),
        ("yes", True),
        ("on", True),
        ("", False),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_from_env_proxy_required(value: str, required: bool) -> None:
    assert GripSettings.from_env({"GRIP_PROXY_REQUIRED": value}).proxy_required is required


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"GRIP_PROXY_REQUIRED": "maybe"},
            "GRIP_PROXY_REQUIRED must be true or false, got 'maybe'",
        ),
        ({"GRIP_PROXIES": "[{"}, "GRIP_PROXIES is not valid JSON"),
        ({"GRIP_PROXIES": '{"control_uri": "http://h"}'}, "must be a JSON list of objects"),
        ({"GRIP_PROXIES": '["http://h"]'}, "must be a JSON list of objects"),
        ({"GRIP_PROXIES": '[{"url": "http://h"}]'}, "unknown GRIP proxy setting"),
        ({"GRIP_PROXIES": '[{"control_uri": 5}]'}, "control_uri must be a string"),
        ({"GRIP_URL": "ftp://h"}, "http:// or https://"),
        ({"GRIP_VERIFY_KEY": "base64:***", "GRIP_URL": "http://h"}, "not valid base64"),
    ],
)
def test_from_env_rejects(environ: dict[str, str], message: str) -> None:
    with pytest.raises(GripConfigError, match=message):
        GripSettings.from_env(environ)


def test_a_zeromq_control_uri_takes_no_credentials() -> None:
    GripConfig("zmq+tcp://127.0.0.1:5560")  # a ZeroMQ URI is a control URI too
    with pytest.raises(GripConfigError, match="ZeroMQ control_uri takes no user or password"):
        GripConfig("zmq+tcp://127.0.0.1:5560", user="ann", password="secret")
