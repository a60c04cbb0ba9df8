"""django-grip's README views (streaming, long-polling, the WebSocket echo and its broadcast
endpoint) in a project ported to grip-asgi: the imports changed, and the middleware's name."""
