"""The system checks: what ``manage.py check`` says about the GRIP settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from grip_django.checks import check_grip_settings

from .settings import MIDDLEWARE

NO_PROXY = {"GRIP_URL": None, "GRIP_PROXIES": None}


def ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return [message.id or "" for message in check_grip_settings()]


def test_the_test_settings_pass() -> None:
    assert ids() == []


def test_the_check_is_registered_by_the_app() -> None:
    with override_settings(GRIP_PREFIX=1):
        messages = checks.run_checks(tags=["grip_django"])
    assert [m.id for m in messages] == ["grip_django.E004"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"GRIP_URL": "nonsense"}, ["grip_django.E001"]),
        ({"GRIP_PROXIES": "http://a"}, ["grip_django.E002"]),
        ({"GRIP_PROXIES": [{"control_uri": "http://a", "typo": 1}]}, ["grip_django.E002"]),
        ({"GRIP_VERIFY_KEY": 42}, ["grip_django.E003"]),
        ({"GRIP_PREFIX": None, "GRIP_PROXY_REQUIRED": 1}, ["grip_django.E005"]),
        ({"GRIP_MAX_BODY_SIZE": "1MB"}, ["grip_django.E006"]),
        (
            {"GRIP_URL": 1, "GRIP_PREFIX": 2, "GRIP_MAX_BODY_SIZE": -1},
            ["grip_django.E001", "grip_django.E004", "grip_django.E006"],
        ),
        ({"GRIP_URL": "http://a/?verify-key=base64:!!"}, ["grip_django.E001"]),
        (
            {"GRIP_URL": "http://a/?verify-key=-----BEGIN PUBLIC KEY-----x"},
            ["grip_django.E008"],
        ),
        ({"GRIP_PROXY_ONLY": "yes"}, ["grip_django.E009"]),
        (NO_PROXY, ["grip_django.W001", "grip_django.W002"]),
        ({**NO_PROXY, "GRIP_VERIFY_KEY": "k" * 32}, ["grip_django.W001"]),
        ({"GRIP_URL": "http://127.0.0.1:5561"}, ["grip_django.W002"]),
        ({"GRIP_PROXIES": [{"control_uri": "http://a", "key": "k" * 32}]}, []),
        ({"GRIP_PROXIES": [{"control_uri": "http://a"}]}, ["grip_django.W005"]),
        ({"MIDDLEWARE": MIDDLEWARE[1:]}, ["grip_django.W003"]),
        ({"MIDDLEWARE": ["grip_django.GripMiddleware"]}, []),
        (
            {"GRIP_MAX_BODY_SIZE": 2_000_000, "DATA_UPLOAD_MAX_MEMORY_SIZE": 1_000_000},
            ["grip_django.W004"],
        ),
        ({"GRIP_MAX_BODY_SIZE": 2_000_000, "DATA_UPLOAD_MAX_MEMORY_SIZE": None}, []),
    ],
)
def test_bad_settings_get_their_id(overrides: dict[str, Any], expected: list[str]) -> None:
    assert ids(**overrides) == expected


def test_environment_errors_and_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIP_PROXIES", "not json")
    with override_settings(**NO_PROXY):
        [message] = check_grip_settings()
    assert message.id == "grip_django.E007" and message.level == checks.ERROR
    assert message.msg.startswith("environment: GRIP_PROXIES is not valid JSON")
    assert message.hint is not None and "environment variables" in message.hint


def test_the_unverified_proxy_warning_says_what_it_means_and_the_fix() -> None:
    with override_settings(GRIP_URL="http://127.0.0.1:5561"):
        [message] = check_grip_settings()
    assert message.level == checks.WARNING
    assert "pose as the proxy" in message.msg
    assert message.hint is not None and "verify-key" in message.hint


def test_a_keyless_proxy_next_to_a_keyed_one_is_named() -> None:
    with override_settings(GRIP_PROXIES=[{"control_uri": "http://keyless:5561"}]):
        [message] = check_grip_settings()
    assert message.id == "grip_django.W005"
    assert "http://keyless:5561" in message.msg and "no request through it" in message.msg
