"""The project's settings: django-grip's, with the middleware's new name and grip_django
added to INSTALLED_APPS (for its checks). GRIP_URL keeps its name."""

from __future__ import annotations

import os

SECRET_KEY = "ported-django-grip-app"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["grip_django"]  # was: nothing (django-grip is not an app)
MIDDLEWARE = [
    "grip_asgi.compat.django_grip.GripMiddleware",  # was: "django_grip.GripMiddleware"
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "tests.e2e.ported.django_grip_project.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

GRIP_URL = os.environ["GRIP_URL"]

# A failing view shows in the server's log, which the tests print.
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
