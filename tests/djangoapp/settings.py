"""The Django settings of grip_django's tests."""

from __future__ import annotations

GRIP_KEY = "grip-django-test-key-of-32-bytes"
GRIP_URL = f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={GRIP_KEY}"

SECRET_KEY = "grip-django-tests"
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["grip_django"]
MIDDLEWARE = [
    "grip_django.middleware.GripMiddleware",
    # Inside GripMiddleware, so a rewritten response must get its Content-Length fixed.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "tests.djangoapp.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
