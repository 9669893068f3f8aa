import logging

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from chat.consumers import ChatConsumer
from rooms.consumers import RoomConsumer

log = logging.getLogger("nous.chat")


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any socket path we do not serve (`/ws/chat/not-a-uuid/` included): accepted, then closed
    with 4404, as PROTOCOL.md refuses a conversation that does not exist, instead of the server's
    500 for a path no route matches."""

    async def connect(self) -> None:
        await self.accept()
        log.info("socket refused (4404): no such path %r", self.scope.get("path", "")[:200])
        await self.close(4404)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Closed already; nothing a client sends here is read."""


websocket_urlpatterns = [
    path("ws/chat/<uuid:conversation_id>/", ChatConsumer.as_asgi()),
    path("ws/rooms/<slug:slug>/", RoomConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),  # last: whatever the routes above did not match
]
