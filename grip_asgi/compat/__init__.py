"""The names of the Python GRIP libraries grip-asgi replaces, on grip-asgi's own code.

Port an app by changing its imports, and nothing else:

- ``from gripcontrol import ...`` becomes ``from grip_asgi.compat.gripcontrol import ...``;
- ``from pubcontrol import Item`` becomes ``from grip_asgi.compat.pubcontrol import Item``;
- ``from django_grip import ...`` becomes ``from grip_asgi.compat.django_grip import ...``
  (and ``MIDDLEWARE`` names ``grip_asgi.compat.django_grip.GripMiddleware``);
- ``from faas_grip import ...`` becomes ``from grip_asgi.compat.faas_grip import ...``.

Each name takes the arguments its original takes and behaves as it does, checked against
the originals' published code by ``tests/compat``. Where grip-asgi differs on purpose it
refuses what Pushpin or RFC 6455 would reject, checks ``Grip-Sig`` and never loses a publish
error silently; ``docs/migrating.md`` lists every such difference with its reason. New code
is better written against :mod:`grip_asgi` and :mod:`grip_django` directly.
"""

from __future__ import annotations
