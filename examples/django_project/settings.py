"""Settings of the grip-asgi Django example: no database, no sessions, only GRIP.

``GRIP_URL`` (and ``GRIP_PREFIX``, ``GRIP_PROXY_REQUIRED``, ...) come from the environment:
grip_django reads each GRIP setting that is not set here from the variable of that name.
``DJANGO_DEBUG=1`` turns on debug; ``DJANGO_ALLOWED_HOSTS`` adds hosts (comma-separated).
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-grip-asgi-example-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "").lower() in ("1", "true", "yes", "on")
_EXTRA_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", *filter(None, map(str.strip, _EXTRA_HOSTS.split(",")))]

INSTALLED_APPS = ["grip_django"]
MIDDLEWARE = [
    "grip_django.middleware.GripMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"
ASGI_APPLICATION = "examples.django_project.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
