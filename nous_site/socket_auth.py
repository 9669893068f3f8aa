"""Who a socket belongs to: `scope["user"]` from the session cookie, read once at the handshake."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import get_user
from django.conf import settings
from django.http.cookie import parse_cookie


class SocketUserMiddleware:
    """Channels' `AuthMiddlewareStack`, without its wrapper around every `send`.

    That wrapper saves a session a consumer modified; ours never do, and in a 500-member room its
    per-frame check was a fifth of the fan-out loop (bench: rooms, py-spy). The session is only
    read, once, when the socket opens.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        store = import_module(settings.SESSION_ENGINE).SessionStore
        scope = dict(scope, cookies=cookies, session=store(cookies.get(settings.SESSION_COOKIE_NAME)))
        scope["user"] = await get_user(scope)
        return await self.app(scope, receive, send)
