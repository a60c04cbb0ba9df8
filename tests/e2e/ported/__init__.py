"""Apps written for the peers (gripcontrol, django-grip, faas-grip), ported to grip-asgi.

``tests/e2e/test_ported_apps.py`` runs each behind a real Pushpin; ``docs/migrating.md``
quotes them as its worked ports.
"""
