"""ASGI entry point: HTTP through Django, websockets through Channels with session auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nous_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from nous_site.routing import websocket_urlpatterns  # noqa: E402
from nous_site.runtime import tune_interpreter  # noqa: E402
from nous_site.socket_auth import SocketUserMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(SocketUserMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
tune_interpreter()
