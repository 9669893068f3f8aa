"""What every socket on a conversation shares, chat or room: the handshake's refusals, the socket
cap, frame parsing and errors, the hub membership, gapless run delivery, resume, history, ping."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import session
from chat.db import db_call
from chat.fanout import conversation_hub
from chat.limits import FrameBucket, close_socket, open_socket, user_counters
from chat.models import Conversation, Message
from chat.protocol import MAX_INT, FrameError, client_id_of, parse_client_frame
from chat.runs import approvals
from chat.runs.actions import do_decide, find_run
from chat.runs.delivery import RunDelivery
from chat.runs.watchdog import ensure_watchdog
from nous_site.metrics import SOCKETS

log = logging.getLogger("nous.chat")


class Refused(Exception):
    """The handshake is refused: the socket is closed with this code (PROTOCOL.md)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class ConversationSocket(AsyncWebsocketConsumer):
    """One socket on one conversation; subclasses find it (`open_conversation`) and add handlers.

    Client frames go to `on_<type>` (`run.stop` -> `on_run_stop`); conversation frames come from
    the process's hub (`deliver`).
    """

    # No channel-layer channel per socket: the process's ConversationHub holds the subscription.
    channel_layer_alias = None
    conversation: Conversation
    counted = False
    joined = False
    delivery: RunDelivery
    page_size: int | None = None  # messages per history page; None: NOUS_HISTORY_PAGE_SIZE

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A consumer can end without `disconnect` (the server raises when the client vanished
        # mid-send): release the socket's slot and group membership whatever happened.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()

    async def open_conversation(self) -> Conversation:
        """The conversation this socket is for; raise `Refused` to close it with a code."""
        raise NotImplementedError

    async def session_ready(self) -> dict[str, Any]:
        """`session.ready` without `active_run`, `pending_approvals` and `user` (added here)."""
        raise NotImplementedError

    async def connect(self) -> None:
        # Accept first, then close with a code: a close before accept reaches a browser as a bare 403.
        await self.accept()
        ensure_watchdog()
        user = self.scope["user"]
        try:
            if not user.is_authenticated:
                raise Refused(4401, "not logged in")
            conversation = await self.open_conversation()
            self.socket_id = uuid.uuid4().hex
            if not await open_socket(user.id, self.socket_id):
                raise Refused(4429, f"user {user.id} has too many sockets")
        except Refused as refused:
            log.info("socket refused (%s): %s", refused.code, refused)
            return await self.close(refused.code)
        self.counted = True
        SOCKETS.inc()
        self.conversation = conversation
        self.frames = FrameBucket(settings.NOUS_FRAMES_PER_SECOND)
        self.delivery = RunDelivery(self._send_text, {self.socket_id, f"user:{user.id}"})
        # Join before reading state, so nothing published meanwhile is missed.
        self.joined = True
        await conversation_hub().join(str(conversation.id), self)
        await self._send_session_ready()
        await self.delivery.ready()
        await self.after_ready()

    async def after_ready(self) -> None:
        """After `session.ready`: rooms announce presence here."""

    async def after_leave(self) -> None:
        """The socket is gone (close or vanished): rooms update presence and typing here."""

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def _release(self) -> None:
        if not self.counted:
            return
        self.counted = False
        SOCKETS.dec()
        try:
            if self.joined:
                self.joined = False
                await conversation_hub().leave(str(self.conversation.id), self)
                await self.after_leave()
        finally:
            await close_socket(self.scope["user"].id, self.socket_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to a thread per message to close stale database connections; every
        # database call here goes through chat.db, which does that itself on its own threads. The
        # hop per client frame was a fifth of a process's time in a typing storm (bench: rooms).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- client frames -------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Each frame is parsed at most once: a refused one is never decoded again to find its ref.
        ref = None
        allowed = self.frames.allow()  # every frame counts, the refused ones too
        try:
            if text_data is None:
                raise FrameError("bad_request", "Binary frames are not accepted; send JSON text")
            if len(text_data) > settings.NOUS_MAX_FRAME_BYTES:
                raise FrameError("too_long", f"Frames are limited to {settings.NOUS_MAX_FRAME_BYTES} bytes")
            frame = parse_client_frame(text_data)
            ref = client_id_of(frame)
            if not allowed:
                raise FrameError("rate_limited", "Too many frames; slow down")
            handler = getattr(self, "on_" + frame["type"].replace(".", "_"))
            await handler(frame)
        except FrameError as error:
            await self._send_error(error.code, error.message, error.ref or ref)
        except StopConsumer:
            raise
        except Exception:
            log.exception("frame %s failed", type(self).__name__)
            await self._send_error("internal", "Something went wrong on our side", ref)

    async def check_send_allowed(self) -> None:
        if not await user_counters().allow_send(self.scope["user"].id):
            raise FrameError("rate_limited", "You are sending messages too fast; wait a minute")

    async def on_run_resume(self, frame: dict[str, Any]) -> None:
        run = await find_run(self.conversation.id, frame["run_id"])
        if run is None:
            raise FrameError("not_found", "No such run here")
        await self.delivery.resume(run, frame["after_seq"])

    async def on_history_load(self, frame: dict[str, Any]) -> None:
        try:
            before = int(frame["before"])
            if not 0 < before <= MAX_INT:
                raise ValueError(before)
        except ValueError:
            raise FrameError("bad_request", "history.load: 'before' must be a message id") from None
        messages, has_more = await self._history(before)
        await self.send_frame({"type": "history", "messages": messages, "has_more": has_more})

    async def on_tool_decide(self, frame: dict[str, Any]) -> None:
        await do_decide(self.conversation, self.scope["user"], frame)

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong"})

    # --- conversation frames published by chat.runs, from the process's hub ---------------

    async def deliver(self, event: dict[str, Any]) -> None:
        """One published frame (`chat.fanout.layer_event`): sent on, in seq order for run deltas."""
        try:
            await self.delivery.deliver(event)
        except StopConsumer:
            pass  # the client is gone; its disconnect ends this consumer

    # --- helpers ---------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self._send_text(json.dumps(frame))

    async def _send_text(self, text: str) -> None:
        try:
            await self.send(text_data=text)
        except OSError:  # the client is gone (uvicorn's ClientDisconnected): end this consumer
            raise StopConsumer() from None

    async def _send_error(self, code: str, message: str, ref: str | None = None) -> None:
        await self.send_frame({"type": "error", "code": code, "message": message, "ref": ref})

    async def _send_session_ready(self) -> None:
        state = await self.session_ready()
        run = state.pop("run")
        active = await self.delivery.active_run(run)
        # Only an active run can have calls waiting: an idle conversation costs no query here.
        pending = await db_call(approvals.pending_for)(self.conversation.id) if run is not None else []
        user = self.scope["user"]
        await self.send_frame({"type": "session.ready", **state, "active_run": active, "pending_approvals": pending,
                               "user": {"id": str(user.id), "username": user.get_username()}})

    @db_call
    def _history(self, before: int) -> tuple[list[dict[str, Any]], bool]:
        if not Message.objects.filter(conversation=self.conversation, id=before).exists():
            raise FrameError("not_found", "No such message here")
        return session.history_page(self.conversation.id, before, self.page_size,
                                    branches=self.conversation.kind == Conversation.Kind.CHAT)
