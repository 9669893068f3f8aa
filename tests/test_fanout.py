"""The per-process conversation hub (chat/fanout.py): every socket of a conversation gets its
frames, whatever the timing of joins and leaves, and no socket gets another conversation's."""

import asyncio

import pytest

from chat.fanout import conversation_hub
from chat.models import Conversation
from tests.chat_helpers import deltas_text, send_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def test_sockets_that_join_at_once_all_get_every_frame(alice, conversation, sockets):
    other = await Conversation.objects.acreate(owner=alice, model="test:tps=200,words=30")
    # A fresh event loop has a fresh hub: these joins race to create its channel and subscriptions.
    tabs = await asyncio.gather(*(sockets.open(alice, conversation) for _ in range(4)))
    elsewhere = await asyncio.gather(*(sockets.open(alice, other) for _ in range(2)))

    await tabs[0].send(send_frame("hello everyone"))
    ends = []
    for tab in tabs:
        completed, frames = await tab.recv_until("run.completed")
        types = [f["type"] for f in frames]
        assert types.count("message.created") == 1 and "run.started" in types
        assert deltas_text(frames) == completed["message"]["content"]
        ends.append(completed["message"])
    assert all(end == ends[0] for end in ends)
    for socket in elsewhere:
        assert await socket.nothing(0.3)


async def test_a_conversation_left_by_every_socket_is_joined_again(alice, conversation, sockets):
    first = await sockets.open(alice, conversation)
    second = await sockets.open(alice, conversation)
    await first.send(send_frame("one"))
    await second.recv_until("run.completed")
    await first.recv_until("run.completed")
    await first.close()
    await second.close()

    again = await sockets.open(alice, conversation)
    await again.send(send_frame("two"))
    completed, frames = await again.recv_until("run.completed")
    assert deltas_text(frames) == completed["message"]["content"] != ""


async def test_a_tab_closing_mid_answer_leaves_the_others_streaming(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=60,words=40")
    staying = await sockets.open(alice, conversation)
    leaving = await sockets.open(alice, conversation)
    await staying.send(send_frame("go on"))
    await leaving.recv_until("run.delta")
    await leaving.close()
    completed, frames = await staying.recv_until("run.completed")
    assert deltas_text(frames) == completed["message"]["content"]


async def test_the_hub_keeps_reading_after_the_layer_fails_once(alice, conversation, sockets, monkeypatch):
    hub = conversation_hub()
    receive, failures = hub.layer.receive, []

    async def failing_once(channel):
        if not failures:
            failures.append(channel)
            raise ConnectionError("the layer lost its connection")
        return await receive(channel)

    monkeypatch.setattr(hub.layer, "receive", failing_once)
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("still there?"))
    completed, frames = await socket.recv_until("run.completed")
    assert failures and deltas_text(frames) == completed["message"]["content"]
