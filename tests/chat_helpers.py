"""Helpers shared by the chat tests."""

import uuid

from chat.models import AgentRun, Message


def send_frame(content: str, client_id: str | None = None) -> dict:
    return {"type": "message.send", "content": content, "client_id": client_id or str(uuid.uuid4())}


def deltas_text(frames: list[dict], run_id: str | None = None) -> str:
    """The text of the `run.delta` frames among `frames`, checking seq is gapless from 1."""
    deltas = [f for f in frames if f["type"] == "run.delta" and (run_id is None or f["run_id"] == run_id)]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1)), [d["seq"] for d in deltas]
    return "".join(d["text"] for d in deltas)


async def run_of(run_id: str) -> AgentRun:
    return await AgentRun.objects.select_related("message").aget(id=run_id)


async def messages_of(conversation) -> list[Message]:
    return [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]
