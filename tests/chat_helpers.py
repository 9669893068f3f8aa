"""Helpers shared by the chat tests."""

import uuid

from chat.models import AgentRun, Message
from chat.runs.replay import SEQ_FRAMES


def send_frame(content: str, client_id: str | None = None) -> dict:
    return {"type": "message.send", "content": content, "client_id": client_id or str(uuid.uuid4())}




def deltas_text(frames: list[dict], run_id: str | None = None) -> str:
    """The text of the `run.delta` frames among `frames`, checking that the run's numbered frames
    (deltas and tool events) are gapless from 1."""
    numbered = [f for f in frames if f["type"] in SEQ_FRAMES and (run_id is None or f["run_id"] == run_id)]
    assert [f["seq"] for f in numbered] == list(range(1, len(numbered) + 1)), [f["seq"] for f in numbered]
    return "".join(f["text"] for f in numbered if f["type"] == "run.delta")


async def run_of(run_id: str) -> AgentRun:
    return await AgentRun.objects.select_related("message").aget(id=run_id)


async def messages_of(conversation) -> list[Message]:
    return [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]
