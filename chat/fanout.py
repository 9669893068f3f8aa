"""One channel-layer subscription per process and conversation, fanned out to the local sockets.

Publishers send each conversation frame to the conversation's group once, already encoded as
JSON. Every ASGI process has one hub channel in that group while it holds a socket on the
conversation, one task reading it, and hands each frame to its local sockets as a method call:
no queue, task or JSON encoding per socket, and no layer subscription per idle socket
(DESIGN.md: fan-out cost is Python dispatch, not Redis).

The layer is at-most-once. When a run's deltas skip a seq, the hub reads the missing ones from the
replay log once and hands them to every local socket before the live one: a dropped layer message
in a 500-member room costs one replay read, not 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any, Protocol

from channels.layers import get_channel_layer

from chat.runs.replay import SEQ_FRAMES, entry_frame, replay_log

log = logging.getLogger("nous.chat")

LAYER_EVENT = "conversation.frame"
# Frames that are only a hint of state: sent by a task of their own, so that in a room where 100
# people type, messages and answers do not queue behind 50,000 typing frames (bench: rooms).
LOW_PRIORITY = frozenset({"typing"})
STALE_TYPING_SECS = 1.0
DEFER_SECS = 0.05
YIELD_EVERY_SOCKETS = 50


class FrameSink(Protocol):
    async def deliver(self, event: dict[str, Any]) -> None: ...


def group_for(conversation_id: Any) -> str:
    """The channel-layer group of one conversation's hubs."""
    return f"chat.{conversation_id}"


def layer_event(conversation_id: Any, frame: dict[str, Any], exclude: str | None = None) -> dict[str, Any]:
    """The layer message for one frame: routing fields and the frame encoded once."""
    return {
        "type": LAYER_EVENT,
        "conversation_id": str(conversation_id),
        "frame_type": frame["type"],
        "run_id": frame.get("run_id"),
        "seq": frame.get("seq"),
        "version": frame.get("version"),
        "exclude": exclude,
        "json": json.dumps(frame),
    }


class ConversationHub:
    """The local sockets of each conversation, and the one task that feeds them."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.members: dict[str, set[FrameSink]] = {}
        self.channel: str | None = None
        self.started: asyncio.Future[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        # Typing frames waiting to go out, by (conversation, typer), and the task sending them.
        self.deferred: dict[tuple[str, Any], tuple[float, dict[str, Any]]] = {}
        self.deferring: asyncio.Task[None] | None = None
        self.delivering = False
        # conversation -> run -> the last delta seq handed to its local sockets.
        self.last_seq: dict[str, dict[str, int]] = {}

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel(prefix="nous-hub.")

    async def join(self, conversation_id: str, sink: FrameSink) -> None:
        """Add a socket; returns once frames published from now on reach it."""
        # Sockets joining at once must share one channel and one reader, or frames get lost.
        if self.started is None or (self.started.done() and self.started.exception() is not None):
            self.started = asyncio.ensure_future(self._start())
        await asyncio.shield(self.started)
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self._read(), name="nous-conversation-hub")
        self.members.setdefault(conversation_id, set()).add(sink)
        # Every join, not only the first: it waits for a subscription in flight, and the in-memory
        # layer forgets a membership that was not renewed for a day.
        await self.layer.group_add(group_for(conversation_id), self.channel)

    async def leave(self, conversation_id: str, sink: FrameSink) -> None:
        sinks = self.members.get(conversation_id)
        if sinks is None:
            return
        sinks.discard(sink)
        if not sinks:
            del self.members[conversation_id]
            self.last_seq.pop(conversation_id, None)
            await self.layer.group_discard(group_for(conversation_id), self.channel)

    async def _read(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except Exception:  # the layer's trouble must not end fan-out for good
                log.exception("conversation hub: receiving from the layer failed")
                await asyncio.sleep(0.1)
                continue
            sinks = self.members.get(event.get("conversation_id"))
            if not sinks:
                continue
            if event.get("frame_type") in LOW_PRIORITY:
                self._defer(event)
                continue
            try:
                events = await self._with_gap_filled(event)
            except Exception:  # the sockets repair it themselves
                log.exception("conversation hub: reading the replay log failed")
                events = [event]
            self.delivering = True  # the typing task waits meanwhile
            try:
                for sink in list(sinks):
                    for one in events:
                        try:
                            await sink.deliver(one)
                        except Exception:  # one broken socket must not starve the others
                            log.exception("delivering a frame to a socket failed")
                            break
            finally:
                self.delivering = False

    def _defer(self, event: dict[str, Any]) -> None:
        """Typing goes out beside the other frames, never ahead of them: a newer state of the same
        typer replaces one not sent yet, and a `true` older than a second is dropped."""
        self.deferred[(event["conversation_id"], event.get("exclude"))] = (time.monotonic(), event)
        if self.deferring is None or self.deferring.done():
            self.deferring = asyncio.create_task(self._send_deferred(), name="nous-hub-typing")

    async def _send_deferred(self) -> None:
        await asyncio.sleep(DEFER_SECS)  # a burst of keystrokes and states becomes one frame each
        while self.deferred:
            key = next(iter(self.deferred))
            at, event = self.deferred.pop(key)
            if time.monotonic() - at > STALE_TYPING_SECS and '"typing": true' in event["json"]:
                continue
            for i, sink in enumerate(list(self.members.get(event["conversation_id"], ()))):
                if i % YIELD_EVERY_SOCKETS == YIELD_EVERY_SOCKETS - 1:
                    await asyncio.sleep(0)  # let the reader fan out a message meanwhile
                    while self.delivering:
                        await asyncio.sleep(0.002)
                try:
                    await sink.deliver(event)
                except Exception:
                    log.exception("delivering a frame to a socket failed")

    async def _with_gap_filled(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """`event`, after the deltas of its run that the layer dropped before it (read once)."""
        run_id, seq, kind = event.get("run_id"), event.get("seq"), event.get("frame_type")
        ended = kind in ("run.completed", "run.stopped", "run.failed")
        if not run_id or not seq or not (ended or kind in SEQ_FRAMES):
            return [event]
        runs = self.last_seq.setdefault(event["conversation_id"], {})
        last = runs.get(run_id)
        if not ended:
            runs[run_id] = max(seq, last or 0)
        else:
            runs.pop(run_id, None)
        # A run first seen mid-stream has no gap to fill here: its sockets know their own seq.
        if last is None or seq <= last + 1 - ended:
            return [event]
        replay = await replay_log().read(run_id, last)
        upto = seq + 1 if ended else seq
        missing = [layer_event(event["conversation_id"], entry_frame(run_id, s, entry))
                   for s, entry in (replay.deltas if replay else []) if s < upto]
        return [*missing, event]


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConversationHub] = weakref.WeakKeyDictionary()


def conversation_hub() -> ConversationHub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = ConversationHub()
    return hub
