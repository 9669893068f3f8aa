"""Publishing run frames: appended to the replay log (the ledger) and sent to the group (the doorbell)."""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

from chat.runs.lifecycle import group_for
from chat.runs.replay import replay_log


async def publish(conversation_id: str, frame: dict[str, Any]) -> None:
    """Send one frame to every socket of a conversation. Frames are layer events named like the frame."""
    await get_channel_layer().group_send(group_for(conversation_id), frame)


async def publish_delta(conversation_id: str, run_id: str, seq: int, text: str, **extra: float) -> None:
    await replay_log().append(run_id, seq, text)
    await publish(conversation_id, {"type": "run.delta", "run_id": run_id, "seq": seq, "text": text, **extra})


async def publish_end(conversation_id: str, frame: dict[str, Any]) -> None:
    """Record the terminal frame (so a late resume still gets it), then send it."""
    await replay_log().finish(frame["run_id"], frame)
    await publish(conversation_id, frame)
