"""Django system checks for the GRIP settings (``manage.py check``, ``runserver``).

====================  ==========================================================
``grip_django.E001``  ``GRIP_URL`` is not a valid GRIP URL.
``grip_django.E002``  ``GRIP_PROXIES`` is not a list of valid proxies.
``grip_django.E003``  ``GRIP_VERIFY_KEY`` is not a str or bytes.
``grip_django.E004``  ``GRIP_PREFIX`` is not a str.
``grip_django.E005``  ``GRIP_PROXY_REQUIRED`` is not True or False.
``grip_django.E006``  ``GRIP_MAX_BODY_SIZE`` is not a positive int.
``grip_django.E007``  the ``GRIP_*`` environment variables are malformed.
``grip_django.E008``  a key to verify ``Grip-Sig`` with cannot be loaded.
``grip_django.E009``  ``GRIP_PROXY_ONLY`` is not True or False.
``grip_django.W001``  no GRIP proxy is configured, so publishing fails.
``grip_django.W002``  no key to verify ``Grip-Sig`` with: any client can pose as the proxy.
``grip_django.W003``  ``GripMiddleware`` is not in ``MIDDLEWARE``.
``grip_django.W004``  ``GRIP_MAX_BODY_SIZE`` is above Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
``grip_django.W005``  a proxy has no key while others do: no request through it is trusted.
``grip_django.W006``  a verify key is Pushpin's public default ``changeme``, or under 16 bytes.
====================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from grip_asgi._errors import GripConfigError
from grip_asgi._signature import ProxyVerifier
from grip_asgi.pushpin_check import weak_verify_keys

from .conf import (
    GripSettingError,
    read_limits,
    read_prefix,
    read_proxies,
    read_proxy_only,
    read_proxy_required,
    read_settings,
    read_verify_key,
)

__all__ = ("check_grip_settings",)

_MIDDLEWARE = "grip_django.middleware.GripMiddleware"
_MIDDLEWARE_NAMES = {_MIDDLEWARE, "grip_django.GripMiddleware"}
_KEY_HINT = "Give the shared secret (str, or 'base64:...' for binary), a PEM public key or a JWK."
_URL_HINT = "A GRIP URL looks like http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=changeme"
# Error id and hint by the setting a GripSettingError names.
_ERRORS: dict[str, tuple[str, str]] = {
    "GRIP_URL": ("grip_django.E001", _URL_HINT + "."),
    "GRIP_PROXIES": (
        "grip_django.E002",
        "Give a list of GRIP URLs, GripConfig objects, or dicts with the keys control_uri,"
        " control_iss, key, verify_iss and verify_key.",
    ),
    "GRIP_VERIFY_KEY": ("grip_django.E003", _KEY_HINT),
    "GRIP_PREFIX": ("grip_django.E004", "Give a str, or '' for no prefix."),
    "GRIP_PROXY_REQUIRED": ("grip_django.E005", "Give True or False."),
    "GRIP_PROXY_ONLY": ("grip_django.E009", "Give True or False."),
    "GRIP_MAX_BODY_SIZE": ("grip_django.E006", "Give a size in bytes, e.g. 1048576."),
    "environment": (
        "grip_django.E007",
        "Fix the GRIP_* environment variables, or set the GRIP_* Django settings instead.",
    ),
}

_READERS: Sequence[Callable[[], object]] = (
    read_proxies,
    read_verify_key,
    read_prefix,
    read_proxy_required,
    read_proxy_only,
    read_limits,
)


def check_grip_settings(**kwargs: Any) -> list[CheckMessage]:
    """Report every malformed GRIP setting, then what makes a valid config unsafe or inert."""
    messages: list[CheckMessage] = []
    for read in _READERS:
        try:
            read()
        except GripSettingError as exc:
            # GRIP_PROXIES[2] is reported under GRIP_PROXIES.
            error_id, hint = _ERRORS[exc.setting.partition("[")[0]]
            messages.append(Error(str(exc), hint=hint, id=error_id))
    if not messages:
        messages += _check_proxies()
        messages += _check_body_size()
    if _MIDDLEWARE_NAMES.isdisjoint(settings.MIDDLEWARE):
        messages.append(
            Warning(
                f"{_MIDDLEWARE} is not in MIDDLEWARE, so no request gets request.grip.",
                hint=f"Add {_MIDDLEWARE!r} near the top of MIDDLEWARE.",
                id="grip_django.W003",
            )
        )
    return messages


def _check_body_size() -> list[CheckMessage]:
    size = read_limits().max_body_size
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if django_limit is None or size <= django_limit:
        return []
    return [
        Warning(
            f"GRIP_MAX_BODY_SIZE ({size}) is above DATA_UPLOAD_MAX_MEMORY_SIZE"
            f" ({django_limit}): WebSocket-over-HTTP bodies above {django_limit} bytes get 413.",
            hint="Raise DATA_UPLOAD_MAX_MEMORY_SIZE to GRIP_MAX_BODY_SIZE or more.",
            id="grip_django.W004",
        )
    ]


def _check_proxies() -> list[CheckMessage]:
    grip = read_settings()
    messages: list[CheckMessage] = []
    if not grip.proxies:
        verified = " (requests are still verified with GRIP_VERIFY_KEY)" if grip.verify_key else ""
        messages.append(
            Warning(
                f"No GRIP proxy is configured, so publishing fails{verified}.",
                hint="Set GRIP_URL (or GRIP_PROXIES) in the settings or the environment. "
                + _URL_HINT
                + ".",
                id="grip_django.W001",
            )
        )
    try:
        verifier = ProxyVerifier(grip.proxies, verify_key=grip.verify_key)
    except GripConfigError as exc:
        return [Error(str(exc), hint=_KEY_HINT, id="grip_django.E008")]
    if not verifier.any_has_key:
        messages.append(
            Warning(
                "No key verifies Grip-Sig, so any client can pose as the proxy by sending a"
                " Grip-Sig header.",
                hint="Add verify-iss and verify-key to GRIP_URL (Pushpin's sig_iss and sig_key), "
                "or set GRIP_VERIFY_KEY.",
                id="grip_django.W002",
            )
        )
    elif verifier.unverifiable:
        messages.append(
            Warning(
                f"No Grip-Sig verify key for {', '.join(verifier.unverifiable)} while other"
                " keys are configured: no request through it counts as proxied.",
                hint="Give that proxy a verify_key, or set GRIP_VERIFY_KEY.",
                id="grip_django.W005",
            )
        )
    for weakness in weak_verify_keys(grip):
        messages.append(
            Warning(
                f"{weakness}, so anyone who knows or guesses it can sign Grip-Sig as the proxy.",
                hint="Set Pushpin's sig_key to a random secret of 16 bytes or more, and the"
                " verify-key in GRIP_URL (or GRIP_VERIFY_KEY) to the same.",
                id="grip_django.W006",
            )
        )
    return messages
