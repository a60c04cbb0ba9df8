"""Reading the GRIP settings: Django's settings first, then the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from grip_asgi._config import GripConfig
from grip_django.conf import GripSettingError, grip_conf, read_limits, read_settings

from .settings import GRIP_KEY, GRIP_URL

NONE_SET = {
    "GRIP_URL": None,
    "GRIP_PROXIES": None,
    "GRIP_VERIFY_KEY": None,
    "GRIP_PREFIX": None,
    "GRIP_PROXY_REQUIRED": None,
}


@override_settings(GRIP_PROXIES=None, GRIP_PREFIX="p-", GRIP_PROXY_REQUIRED=True)
def test_django_settings() -> None:
    settings = read_settings()
    assert [p.control_uri for p in settings.proxies] == ["http://127.0.0.1:5561"]
    assert settings.proxies[0].verify_key == GRIP_KEY
    assert (settings.prefix, settings.proxy_required) == ("p-", True)


def test_grip_proxies_take_dicts_configs_and_urls_next_to_grip_url() -> None:
    proxies = [
        {"control_uri": "http://a:1", "control_iss": "a", "key": "base64:a2V5"},
        GripConfig("http://b:2", verify_key="kb"),
        "http://c:3/?verify-key=kc",
    ]
    with override_settings(GRIP_PROXIES=proxies, GRIP_VERIFY_KEY="shared"):
        got = read_settings().proxies
    assert [p.control_uri for p in got] == [
        "http://127.0.0.1:5561",
        "http://a:1",
        "http://b:2",
        "http://c:3",
    ]
    assert got[1].key == b"key"
    assert [p.verify_key for p in got] == [GRIP_KEY, "shared", "kb", "kc"]


def test_every_setting_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIP_URL", "http://env:5561/?verify-key=env-key")
    monkeypatch.setenv("GRIP_PROXIES", json.dumps([{"control_uri": "http://env2:1"}]))
    monkeypatch.setenv("GRIP_VERIFY_KEY", "env-verify")
    monkeypatch.setenv("GRIP_PREFIX", "env-")
    monkeypatch.setenv("GRIP_PROXY_REQUIRED", "yes")
    with override_settings(**NONE_SET):
        settings = read_settings()
        assert [p.control_uri for p in settings.proxies] == ["http://env:5561", "http://env2:1"]
        assert [p.verify_key for p in settings.proxies] == ["env-key", "env-verify"]
        assert (settings.prefix, settings.proxy_required) == ("env-", True)
    # A Django setting wins over the variable; the others still come from the environment.
    with override_settings(GRIP_PREFIX="", GRIP_PROXY_REQUIRED=False):
        settings = read_settings()
        assert [p.control_uri for p in settings.proxies] == ["http://127.0.0.1:5561"]
        assert (settings.prefix, settings.proxy_required) == ("", False)


def test_nothing_configured_anywhere() -> None:
    with override_settings(**NONE_SET):
        settings = read_settings()
    assert (settings.proxies, settings.prefix, settings.proxy_required) == ((), "", False)


def test_an_empty_grip_url_means_no_proxy() -> None:
    with override_settings(GRIP_URL=" "):
        assert read_settings().proxies == ()


@pytest.mark.parametrize(
    ("overrides", "setting", "message"),
    [
        ({"GRIP_URL": 5561}, "GRIP_URL", "must be a str, got int"),
        ({"GRIP_URL": "ftp://x"}, "GRIP_URL", "must start with http:// or https://"),
        ({"GRIP_PROXIES": {"control_uri": "http://a"}}, "GRIP_PROXIES", "must be a list"),
        ({"GRIP_PROXIES": [{"uri": "http://a"}]}, "GRIP_PROXIES[0]", "unknown GRIP proxy setting"),
        ({"GRIP_PROXIES": ["http://a", 7]}, "GRIP_PROXIES[1]", "expected a dict, a GripConfig"),
        ({"GRIP_VERIFY_KEY": 1}, "GRIP_VERIFY_KEY", "must be a str or bytes"),
        ({"GRIP_PREFIX": b"p"}, "GRIP_PREFIX", "must be a str, got bytes"),
        ({"GRIP_PROXY_REQUIRED": "yes"}, "GRIP_PROXY_REQUIRED", "must be True or False"),
        ({"GRIP_MAX_BODY_SIZE": 0}, "GRIP_MAX_BODY_SIZE", "must be a positive int"),
    ],
)
def test_malformed_settings_name_themselves(
    overrides: dict[str, Any], setting: str, message: str
) -> None:
    with override_settings(**overrides), pytest.raises(GripSettingError, match=message) as info:
        read_settings()
        read_limits()
    assert info.value.setting == setting
    assert str(info.value).startswith(setting + ": ")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GRIP_PROXIES", "[1]", "GRIP_PROXIES must be a JSON list of objects"),
        ("GRIP_PROXY_REQUIRED", "maybe", "GRIP_PROXY_REQUIRED must be true or false"),
    ],
)
def test_malformed_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with override_settings(**NONE_SET), pytest.raises(GripSettingError, match=message) as info:
        read_settings()
    assert info.value.setting == "environment"


def test_limits() -> None:
    assert read_limits().max_body_size == 1_048_576
    with override_settings(GRIP_MAX_BODY_SIZE=10):
        assert grip_conf.processor.limits.max_body_size == 10


def test_the_configuration_is_built_once_and_rebuilt_when_a_setting_changes() -> None:
    processor = grip_conf.processor
    assert grip_conf.processor is processor
    with override_settings(GRIP_PREFIX="new-"):
        assert grip_conf.settings.prefix == "new-"
    with override_settings(UNRELATED_SETTING=1):
        unchanged = grip_conf.processor
        assert grip_conf.processor is unchanged
    assert grip_conf.settings.prefix == ""
    assert grip_conf.settings.proxies[0] == GripConfig.from_uri(GRIP_URL)


def test_importing_grip_django_reads_no_settings() -> None:
    """Nothing runs at import time: the modules import before Django is configured."""
    modules = "grip_django, grip_django.apps, grip_django.checks, grip_django.conf"
    code = f"import {modules}, grip_django.decorators, grip_django.middleware, grip_django.publish"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=30)
