"""The chat socket: `/ws/chat/<conversation_id>/`, speaking PROTOCOL.md."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents.errors import AgentConfigError
from agents.models import parse_model_id, resolve_model
from chat import session
from chat.db import db_call
from chat.fanout import conversation_hub
from chat.limits import FrameBucket, user_counters
from chat.models import AgentRun, Conversation, Message
from chat.protocol import MAX_INT, FrameError, client_id_of, parse_client_frame
from chat.runs import lifecycle
from chat.runs.dispatch import fail_unsubmitted, run_executor, stop_run
from chat.runs.publish import publish
from chat.runs.replay import replay_log
from chat.runs.watchdog import ensure_watchdog

log = logging.getLogger("nous.chat")

MAX_INSTRUCTIONS_CHARS = 20_000
TERMINAL_FRAMES = frozenset({"run.completed", "run.stopped", "run.failed"})
MAX_TOKENS_LIMIT = 200_000


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket on one conversation. Conversation frames come from the process's hub (`deliver`)."""

    # No channel-layer channel per socket: the process's ConversationHub holds the subscription.
    channel_layer_alias = None
    conversation: Conversation
    counted = False
    joined = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A consumer can end without `disconnect` (the server raises when the client vanished
        # mid-send): release the socket's slot and group membership whatever happened.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()

    async def connect(self) -> None:
        # Accept first, then close with a code: a close before accept reaches a browser as a bare 403.
        await self.accept()
        ensure_watchdog()
        user = self.scope["user"]
        if not user.is_authenticated:
            return await self._refuse(4401, "not logged in")
        conversation = await self._get_conversation(self.scope["url_route"]["kwargs"]["conversation_id"])
        if conversation is None:
            return await self._refuse(4404, "no such conversation")
        if conversation.owner_id != user.id:
            return await self._refuse(4403, f"user {user.id} does not own conversation {conversation.id}")
        if not await user_counters().open_socket(user.id):
            return await self._refuse(4429, f"user {user.id} has too many sockets")
        self.counted = True
        self.conversation = conversation
        self.socket_id = uuid.uuid4().hex
        self.frames = FrameBucket(settings.NOUS_FRAMES_PER_SECOND)
        self.seen_seq: dict[str, int] = {}
        self.ended_runs: set[str] = set()
        # Frames that arrive before session.ready wait here, then follow it in order.
        self.backlog: list[dict[str, Any]] | None = []
        # Join before reading state, so nothing published meanwhile is missed.
        self.joined = True
        await conversation_hub().join(str(conversation.id), self)
        await self._send_session_ready()
        while self.backlog:
            await self._deliver_now(self.backlog.pop(0))
        self.backlog = None

    async def _refuse(self, code: int, why: str) -> None:
        log.info("chat socket refused (%s): %s", code, why)
        await self.close(code)

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def _release(self) -> None:
        if self.counted:
            self.counted = False
            try:
                if self.joined:
                    self.joined = False
                    await conversation_hub().leave(str(self.conversation.id), self)
            finally:
                await user_counters().close_socket(self.scope["user"].id)

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
            log.exception("chat frame failed")
            await self._send_error("internal", "Something went wrong on our side", ref)

    async def on_message_send(self, frame: dict[str, Any]) -> None:
        content, client_id = frame["content"].strip(), frame["client_id"]
        if not content:
            raise FrameError("bad_request", "The message is empty")
        if not client_id or len(client_id) > 64:
            raise FrameError("bad_request", "client_id must be 1 to 64 characters")
        if len(content) > settings.NOUS_MAX_MESSAGE_CHARS:
            raise FrameError("too_long", f"Messages are limited to {settings.NOUS_MAX_MESSAGE_CHARS} characters")
        if not await user_counters().allow_send(self.scope["user"].id):
            raise FrameError("rate_limited", "You are sending messages too fast; wait a minute")
        try:
            sent = await self._store_and_queue(content, client_id)
        except lifecycle.Busy:
            raise FrameError("busy", "An answer is still being written; stop it or wait") from None
        created = {"type": "message.created", "message": sent.message.to_dict()}
        await self._send_frame(created)
        if sent.duplicate:
            return
        # Other tabs on the conversation; this socket was answered directly above.
        await publish(self.conversation.id, created, exclude=self.socket_id)
        run_id = str(sent.run.id)
        try:
            position = await run_executor().submit(run_id)
        except Exception:
            # Not handed over: end it now, or the conversation would stay busy until the watchdog.
            log.exception("could not submit run %s", run_id)
            await fail_unsubmitted(run_id)
            return
        await publish(self.conversation.id, {"type": "run.queued", "run_id": run_id, "position": position})
        if sent.titled:
            await publish(self.conversation.id, {"type": "conversation.updated", "conversation": await self._conversation_dict()})

    async def on_run_stop(self, frame: dict[str, Any]) -> None:
        run = await self._find_run(frame.get("run_id"), active_only=True)
        if run is None or not await stop_run(str(run.id)):
            raise FrameError("not_found", "No answer is being written")

    async def on_run_resume(self, frame: dict[str, Any]) -> None:
        run = await self._find_run(frame["run_id"])
        if run is None:
            raise FrameError("not_found", "No such run in this conversation")
        run_id, after_seq = str(run.id), max(0, frame["after_seq"])
        self.seen_seq[run_id] = after_seq
        replay = await replay_log().read(run_id, after_seq)
        if replay is not None:
            await self._send_deltas(run_id, replay.deltas)
            if replay.end:
                await self._send_end_frame(replay.end)
        elif not run.is_active:
            await self._send_end_frame(await db_call(session.ended_frame)(run))

    async def on_history_load(self, frame: dict[str, Any]) -> None:
        try:
            before = int(frame["before"])
            if not 0 < before <= MAX_INT:
                raise ValueError(before)
        except ValueError:
            raise FrameError("bad_request", "history.load: 'before' must be a message id") from None
        messages, has_more = await self._history(before)
        await self._send_frame({"type": "history", "messages": messages, "has_more": has_more})

    async def on_settings_update(self, frame: dict[str, Any]) -> None:
        changes = self._validated_settings(frame)
        conversation = await self._update_settings(changes)
        await publish(self.conversation.id, {"type": "conversation.updated", "conversation": conversation})

    async def on_typing(self, frame: dict[str, Any]) -> None:
        """A private chat has no one else to tell."""

    async def on_tool_decide(self, frame: dict[str, Any]) -> None:
        raise FrameError("not_found", "No tool call is waiting for approval")

    async def on_message_edit(self, frame: dict[str, Any]) -> None:
        raise FrameError("bad_request", "Messages can be edited in rooms only")

    on_message_delete = on_message_edit

    async def on_ai_toggle(self, frame: dict[str, Any]) -> None:
        raise FrameError("bad_request", "ai.toggle is for rooms only")

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self._send_frame({"type": "pong"})

    # --- conversation frames published by chat.runs, from the process's hub ---------------

    async def deliver(self, event: dict[str, Any]) -> None:
        """One published frame (`chat.fanout.layer_event`): sent on, in seq order for run deltas."""
        if self.backlog is not None:
            self.backlog.append(event)
            return
        await self._deliver_now(event)

    async def _deliver_now(self, event: dict[str, Any]) -> None:
        kind, text = event["frame_type"], event["json"]
        try:
            if kind == "run.delta":
                await self._on_live_delta(event["run_id"], event["seq"], text)
            elif kind in TERMINAL_FRAMES:
                await self._send_end(event["run_id"], event["seq"] or 0, text)
            elif event["exclude"] != self.socket_id:
                await self._send_text(text)
        except StopConsumer:
            pass  # the client is gone; its disconnect ends this consumer

    async def _on_live_delta(self, run_id: str, seq: int, text: str) -> None:
        seen = self.seen_seq.get(run_id, 0)
        if seq <= seen:
            return
        if seq > seen + 1:
            # The layer dropped something: the replay log fills the gap.
            replay = await replay_log().read(run_id, seen)
            await self._send_deltas(run_id, [d for d in (replay.deltas if replay else []) if d[0] < seq])
        await self._send_deltas(run_id, [(seq, "")], live_json=text)

    # --- helpers ---------------------------------------------------------------------------

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        await self._send_text(json.dumps(frame))

    async def _send_text(self, text: str) -> None:
        try:
            await self.send(text_data=text)
        except OSError:  # the client is gone (uvicorn's ClientDisconnected): end this consumer
            raise StopConsumer() from None

    async def _send_error(self, code: str, message: str, ref: str | None = None) -> None:
        await self._send_frame({"type": "error", "code": code, "message": message, "ref": ref})

    async def _send_deltas(self, run_id: str, deltas: list[tuple[int, str]], live_json: str | None = None) -> None:
        for seq, text in deltas:
            if seq == self.seen_seq.get(run_id, 0) + 1:
                self.seen_seq[run_id] = seq
                # A live frame goes out as published (with the benchmark's timestamps, if any).
                if live_json is not None:
                    await self._send_text(live_json)
                else:
                    await self._send_frame({"type": "run.delta", "run_id": run_id, "seq": seq, "text": text})

    async def _send_end(self, run_id: str, seq: int, text: str) -> None:
        """Send a run's terminal frame (JSON `text`) once, after every delta before it."""
        if run_id in self.ended_runs:
            return
        seen = self.seen_seq.get(run_id, 0)
        if seq > seen:
            replay = await replay_log().read(run_id, seen)
            await self._send_deltas(run_id, replay.deltas if replay else [])
        if run_id in self.ended_runs:  # sent meanwhile, while the gap was read
            return
        self.ended_runs.add(run_id)
        await self._send_text(text)

    async def _send_end_frame(self, frame: dict[str, Any]) -> None:
        await self._send_end(frame["run_id"], frame.get("seq", 0), json.dumps(frame))

    async def _send_session_ready(self) -> None:
        state = await self._session_state()
        run = state.pop("run")
        active = None
        if run is not None:
            replay = await replay_log().read(str(run.id))
            content, seq = (replay.text, replay.last_seq) if replay else ("", 0)
            self.seen_seq[str(run.id)] = seq
            active = {"run_id": str(run.id), "seq": seq, "content": content, "status": run.status, "model": run.model}
        user = self.scope["user"]
        await self._send_frame({"type": "session.ready", **state, "active_run": active, "pending_approvals": [],
                                "user": {"id": str(user.id), "username": user.get_username()}})

    @db_call
    def _get_conversation(self, conversation_id: Any) -> Conversation | None:
        # A room's conversation is reached through its room's socket only.
        return Conversation.objects.filter(id=conversation_id, kind=Conversation.Kind.CHAT).first()

    @db_call
    def _session_state(self) -> dict[str, Any]:
        conversation = Conversation.objects.get(id=self.conversation.id)
        messages, has_more = session.history_page(conversation.id)
        return {"conversation": session.conversation_dict(conversation), "messages": messages, "has_more": has_more,
                "run": session.active_run(conversation.id)}

    @db_call
    def _store_and_queue(self, content: str, client_id: str) -> lifecycle.SendResult:
        return lifecycle.store_message_and_queue_run(self.conversation, self.scope["user"], content, client_id)

    @db_call
    def _find_run(self, run_id: str | None, active_only: bool = False) -> AgentRun | None:
        q = AgentRun.objects.filter(conversation=self.conversation)
        if active_only:
            q = q.filter(status__in=AgentRun.ACTIVE)
        if run_id is not None:
            try:
                q = q.filter(id=uuid.UUID(run_id))
            except ValueError:
                return None
        return q.order_by("-created_at").first()

    @db_call
    def _history(self, before: int) -> tuple[list[dict[str, Any]], bool]:
        if not Message.objects.filter(conversation=self.conversation, id=before).exists():
            raise FrameError("not_found", "No such message in this conversation")
        return session.history_page(self.conversation.id, before)

    def _validated_settings(self, frame: dict[str, Any]) -> dict[str, Any]:
        changes = {k: frame[k] for k in ("model", "instructions", "temperature", "max_tokens") if k in frame}
        if not changes:
            raise FrameError("bad_request", "settings.update: nothing to change")
        if "model" in changes:
            try:
                provider, _ = parse_model_id(changes["model"])
                if provider not in settings.NOUS_ALLOWED_PROVIDERS:
                    raise AgentConfigError(f"The {provider!r} provider is not enabled on this server")
                if provider == "test":
                    resolve_model(changes["model"])  # checks the test model's options and bounds
            except AgentConfigError as error:
                raise FrameError("bad_request", str(error)) from None
            changes["model"] = changes["model"].strip()
        if len(changes.get("instructions") or "") > MAX_INSTRUCTIONS_CHARS:
            raise FrameError("too_long", f"Instructions are limited to {MAX_INSTRUCTIONS_CHARS} characters")
        temperature = changes.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            raise FrameError("bad_request", "temperature must be between 0 and 2")
        max_tokens = changes.get("max_tokens")
        if max_tokens is not None and not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise FrameError("bad_request", f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}")
        return changes

    @db_call
    def _update_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        Conversation.objects.filter(id=self.conversation.id).update(**changes)
        return self._fresh_conversation_dict()

    def _fresh_conversation_dict(self) -> dict[str, Any]:
        self.conversation.refresh_from_db()
        return session.conversation_dict(self.conversation)

    _conversation_dict = db_call(_fresh_conversation_dict)

