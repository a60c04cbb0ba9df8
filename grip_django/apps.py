"""The Django app config: system checks, and reloading the GRIP settings when they change."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed

from .checks import check_grip_settings
from .conf import GRIP_SETTINGS, grip_conf
from .publish import reset_publishers

__all__ = ("GripAppConfig",)


class GripAppConfig(AppConfig):
    """grip_django's app: add ``"grip_django"`` to ``INSTALLED_APPS``."""

    name = "grip_django"
    verbose_name = "GRIP"

    def ready(self) -> None:
        checks.register(check_grip_settings, "grip_django")
        setting_changed.connect(_reload_grip_settings, dispatch_uid="grip_django.reload")


def _reload_grip_settings(*, setting: str, **kwargs: Any) -> None:
    # override_settings (and anything else that changes settings): rebuild on next use.
    if setting in GRIP_SETTINGS:
        grip_conf.reload()
        reset_publishers()
