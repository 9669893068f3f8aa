"""The room socket: `/ws/rooms/<slug>/`, several people and an AI participant (PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from chat import session
from chat.db import db_call
from chat.models import AgentRun, Conversation, Message
from chat.protocol import MAX_INT, FrameError
from chat.runs import actions
from chat.runs.publish import publish
from chat.socket import ConversationSocket, Refused
from rooms import ai, presence
from rooms.models import Room

log = logging.getLogger("nous.rooms")

ROOM_PAGE_SIZE = 20
ACCESS_REVOKED = "access.revoked"  # between processes only: never sent to a client
TYPING_TIMEOUT_SECS = 3.0  # a `typing: true` not renewed for this long ends by itself
# While someone keeps typing, the room hears `typing: true` again only this often (pages forget a
# typer after 6 s of silence): a storm of 100 typers in a 500-member room was 50,000 frames a second
# with one `true` a second each, and messages queued behind them (bench: rooms, typing storm).
TYPING_RENEW_SECS = 4.0


async def revoke_access(room: Room, username: str) -> None:
    """Close `username`'s sockets in a private room (in every process) with 4403: removed by the owner."""
    if room.is_private:
        await publish(room.conversation_id, {"type": ACCESS_REVOKED, "user": username})


class RoomConsumer(ConversationSocket):
    """A room: messages from everyone, the AI when it is asked, presence and typing."""

    page_size = ROOM_PAGE_SIZE
    room: Room
    typing_since: float | None = None  # when this socket's last `typing: true` went out
    typing_stop: asyncio.TimerHandle | None = None

    async def open_conversation(self) -> Conversation:
        room = await self._get_room(self.scope["url_route"]["kwargs"]["slug"])
        if room is None:
            raise Refused(4404, "no such room")
        if not await db_call(room.may_enter)(self.scope["user"]):
            raise Refused(4403, f"user {self.scope['user'].id} may not enter room {room.slug}")
        self.room = room
        self.username = self.scope["user"].get_username()
        return room.conversation

    async def session_ready(self) -> dict[str, Any]:
        self.participants, version, self.presence_changed = await presence.enter(
            str(self.conversation.id), self.username, self.socket_id)
        self.delivery.versions["presence"] = version
        self.presence_version = version
        state = await self._room_state()
        return {**state, "participants": self.participants}

    async def after_ready(self) -> None:
        if self.presence_changed:
            await publish(self.conversation.id, presence.frame(self.participants, self.presence_version),
                          exclude=self.socket_id)

    async def after_leave(self) -> None:
        if self.typing_since is not None:
            await self._typing_stopped()
        changed = await presence.leave(str(self.conversation.id), self.username, self.socket_id)
        if changed is not None:
            await publish(self.conversation.id, changed)

    async def deliver(self, event: dict[str, Any]) -> None:
        if event["frame_type"] == ACCESS_REVOKED:
            if json.loads(event["json"])["user"] == self.username and self.room.owner_id != self.scope["user"].id:
                log.info("room socket closed (4403): %s was removed from %s", self.username, self.room.slug)
                await self.close(4403)
                await self._release()  # gone from presence now, not when the client's close comes back
            return
        await super().deliver(event)

    # --- client frames -------------------------------------------------------------------

    async def on_message_send(self, frame: dict[str, Any]) -> None:
        if frame.get("attachments"):
            raise FrameError("bad_request", "Attachments are for private chats only, not rooms (yet)", frame["client_id"])
        content = actions.check_content(frame["content"], frame["client_id"])
        await self.check_send_allowed()
        if self.typing_since is not None:
            await self._typing_stopped()
        sent = await actions.do_store_message(self.conversation, self.scope["user"], content, frame["client_id"],
                                              self.socket_id, reply=self.send_frame)
        if sent.duplicate or not await db_call(ai.ai_should_answer)(self.room.id, content):
            return
        participants = await presence.participants(self.conversation.id)
        run_id = await db_call(ai.queue_or_fold)(self.room.id, sent.message, participants)
        if run_id is not None:
            await actions.submit_run(self.conversation.id, run_id, self.scope["user"].id)

    async def on_run_stop(self, frame: dict[str, Any]) -> None:
        user_id = self.scope["user"].id

        def may_stop(run: AgentRun) -> bool:
            trigger = run.trigger_message
            return self.room.owner_id == user_id or (trigger is not None and trigger.author_id == user_id)

        await actions.do_stop(self.conversation.id, frame.get("run_id"), may_stop, by=self.username)

    async def on_message_edit(self, frame: dict[str, Any]) -> None:
        content = actions.check_content(frame["content"])
        message = await self._own_message(frame["id"])
        message.content = content
        await db_call(message.save)(update_fields=["content"])
        await publish(self.conversation.id, {"type": "message.updated", "message": message.to_dict()})

    async def on_message_delete(self, frame: dict[str, Any]) -> None:
        message = await self._own_message(frame["id"])
        await db_call(message.delete)()  # gone from the history, so from the AI's context too
        await publish(self.conversation.id, {"type": "message.deleted", "id": frame["id"]})

    async def on_ai_toggle(self, frame: dict[str, Any]) -> None:
        if self.room.owner_id != self.scope["user"].id:
            raise FrameError("forbidden", "Only the room's owner switches the AI on or off")
        room = await self._set_ai_active(frame["active"])
        await publish(self.conversation.id, {"type": "room.updated", "room": room})

    async def on_typing(self, frame: dict[str, Any]) -> None:
        if not frame["typing"]:
            if self.typing_since is not None:
                await self._typing_stopped()
            return
        loop = asyncio.get_running_loop()
        if self.typing_stop is not None:
            self.typing_stop.cancel()
        self.typing_stop = loop.call_later(TYPING_TIMEOUT_SECS, lambda: loop.create_task(self._typing_stopped()))
        now = time.monotonic()
        if self.typing_since is not None and now - self.typing_since < TYPING_RENEW_SECS:
            return  # the room knows already; the timer above keeps it true
        self.typing_since = now
        await self._publish_typing(True)

    async def on_settings_update(self, frame: dict[str, Any]) -> None:
        raise FrameError("bad_request", "settings.update is for chats; a room's AI is set up on its page")

    async def on_message_regenerate(self, frame: dict[str, Any]) -> None:
        raise FrameError("bad_request", "A room stays linear: message.regenerate and branch.select are for chats",
                         frame.get("client_id"))

    on_branch_select = on_message_regenerate

    # --- helpers ---------------------------------------------------------------------------

    async def _typing_stopped(self) -> None:
        if self.typing_stop is not None:
            self.typing_stop.cancel()
            self.typing_stop = None
        if self.typing_since is None:
            return
        self.typing_since = None
        await self._publish_typing(False)

    async def _publish_typing(self, typing: bool) -> None:
        # Never echoed to the typer: not to this tab, nor to the typer's other tabs.
        await publish(self.conversation.id, {"type": "typing", "user": self.username, "typing": typing},
                      exclude=f"user:{self.scope['user'].id}")

    @db_call
    def _get_room(self, slug: str) -> Room | None:
        return Room.objects.select_related("conversation").filter(slug=slug).first()

    @db_call
    def _room_state(self) -> dict[str, Any]:
        room = Room.objects.select_related("conversation", "owner").get(id=self.room.id)
        messages, has_more = session.history_page(room.conversation_id, size=ROOM_PAGE_SIZE)
        return {"room": room.to_dict(), "messages": messages, "has_more": has_more,
                "run": session.active_run(room.conversation_id)}

    @db_call
    def _own_message(self, message_id: str) -> Message:
        try:
            wanted = int(message_id)
        except ValueError:
            wanted = 0
        message = None
        if 0 < wanted <= MAX_INT:
            message = Message.objects.select_related("author").filter(conversation_id=self.conversation.id, id=wanted).first()
        if message is None:
            raise FrameError("not_found", "No such message in this room")
        if message.role != Message.Role.USER or message.author_id != self.scope["user"].id:
            raise FrameError("forbidden", "You can edit and delete only your own messages")
        return message

    @db_call
    def _set_ai_active(self, active: bool) -> dict[str, Any]:
        changes: dict[str, Any] = {"ai_active": active}
        if not active:
            changes["followup_pending"] = False  # switched off: no folded answer comes after all
        Room.objects.filter(id=self.room.id).update(**changes)
        return Room.objects.select_related("conversation", "owner").get(id=self.room.id).to_dict()
