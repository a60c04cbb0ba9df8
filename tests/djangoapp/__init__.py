"""grip_django's unit tests, and the Django project they run in (``tests.djangoapp.settings``).

Django is configured with :func:`setup_django`, from this package's conftest and from
``tests/test_conformance.py``, through ``settings.configure()``: never through
``DJANGO_SETTINGS_MODULE``, which the example servers of the e2e tests would inherit.
"""

from __future__ import annotations

import django
import pytest
from django.conf import settings as django_settings

GRIP_ENVIRONMENT = (
    "GRIP_URL",
    "GRIP_PROXIES",
    "GRIP_VERIFY_KEY",
    "GRIP_PREFIX",
    "GRIP_PROXY_REQUIRED",
    "GRIP_PROXY_ONLY",
)


def setup_django() -> None:
    """Configure Django with ``tests.djangoapp.settings``, once per process."""
    if django_settings.configured:
        return
    from . import settings as test_settings

    django_settings.configure(
        **{name: getattr(test_settings, name) for name in dir(test_settings) if name.isupper()}
    )
    django.setup()


def isolate_grip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the ``GRIP_*`` environment variables and forget what grip_django built."""
    from grip_django.conf import grip_conf
    from grip_django.publish import reset_publishers

    for name in GRIP_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    grip_conf.reload()
    reset_publishers()
