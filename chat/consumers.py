"""The chat socket: `/ws/chat/<conversation_id>/`, one user's private conversation (PROTOCOL.md)."""

from __future__ import annotations

from typing import Any

from chat import session
from chat.db import db_call
from chat.models import Conversation
from chat.protocol import FrameError, check_attachment_ids
from chat.runs import actions, branch_actions
from chat.socket import ConversationSocket, Refused


class ChatConsumer(ConversationSocket):
    """A private conversation: every message starts a run; settings change the agent."""

    async def open_conversation(self) -> Conversation:
        conversation = await self._get_conversation(self.scope["url_route"]["kwargs"]["conversation_id"])
        if conversation is None:
            raise Refused(4404, "no such conversation")
        if conversation.owner_id != self.scope["user"].id:
            raise Refused(4403, f"user {self.scope['user'].id} does not own conversation {conversation.id}")
        return conversation

    @db_call
    def session_ready(self) -> dict[str, Any]:
        conversation = Conversation.objects.get(id=self.conversation.id)
        messages, has_more = session.history_page(conversation.id, branches=True)
        return {"conversation": session.conversation_dict(conversation), "messages": messages, "has_more": has_more,
                "run": session.active_run(conversation.id)}

    async def on_message_send(self, frame: dict[str, Any]) -> None:
        attachment_ids = check_attachment_ids(frame)
        content = actions.check_content(frame["content"], frame["client_id"], allow_empty=bool(attachment_ids))
        await actions.do_chat_send(self.conversation, self.scope["user"], content, frame["client_id"], self.socket_id,
                                   reply=self.send_frame, attachment_ids=attachment_ids, allowed=self.check_send_allowed)

    async def on_run_stop(self, frame: dict[str, Any]) -> None:
        await actions.do_stop(self.conversation.id, frame.get("run_id"), by=self.scope["user"].get_username())

    async def on_settings_update(self, frame: dict[str, Any]) -> None:
        await actions.do_update_settings(self.conversation, frame)

    async def on_typing(self, frame: dict[str, Any]) -> None:
        """A private chat has no one else to tell."""

    async def on_message_edit(self, frame: dict[str, Any]) -> None:
        """An edit is a new message beside the old one: a new branch (chat.branches)."""
        client_id = frame.get("client_id")
        if client_id is None:
            raise FrameError("bad_request", "message.edit: missing field 'client_id'")
        content = actions.check_content(frame["content"], client_id)
        await self.check_send_allowed()
        await branch_actions.do_edit(self.conversation, self.scope["user"], frame["id"], content, client_id,
                                     self.socket_id, reply=self.send_frame)

    async def on_message_regenerate(self, frame: dict[str, Any]) -> None:
        await branch_actions.do_regenerate(self.conversation, frame["message_id"], frame.get("client_id"),
                                           self.socket_id, reply=self.send_frame)

    async def on_branch_select(self, frame: dict[str, Any]) -> None:
        await branch_actions.do_select(self.conversation, frame["message_id"], self.socket_id, reply=self.send_frame)

    async def on_message_delete(self, frame: dict[str, Any]) -> None:
        raise FrameError("bad_request", "Messages can be deleted in rooms only")

    async def on_ai_toggle(self, frame: dict[str, Any]) -> None:
        raise FrameError("bad_request", "ai.toggle is for rooms only")

    @db_call
    def _get_conversation(self, conversation_id: Any) -> Conversation | None:
        # A room's conversation is reached through its room's socket only.
        return Conversation.objects.filter(id=conversation_id, kind=Conversation.Kind.CHAT).first()
