"""Fallback models and context trimming through the real stack (sockets on the ASGI app; in
production mode a Celery worker process runs the runs): what the answer says about them, live and
after a reload."""

import pytest

from chat.models import AgentRun, Conversation, Message
from tests.chat_helpers import deltas_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def send(socket, content, client_id):
    await socket.send({"type": "message.send", "content": content, "client_id": client_id})
    return await socket.recv_until("run.completed", "run.failed")


async def test_a_failing_model_hands_over_to_its_fallback_and_the_answer_says_so(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:fail=provider_error", fallback_models=["test:"])
    socket = await sockets.open(alice, conversation)
    ended, before = await send(socket, "hello", "fb-1")
    assert ended["type"] == "run.completed", ended
    provenance = ended["message"]["provenance"]
    assert (provenance["model"], provenance["fallback_model"]) == ("test:fail=provider_error", "test:")
    assert provenance["trimmed_messages"] == 0 and provenance["ended"] == {"status": "completed"}
    assert deltas_text(before) == ended["message"]["content"] != ""
    # A reload shows the same provenance.
    reloaded = await sockets.open(alice, conversation)
    assert reloaded.ready["messages"][-1]["provenance"] == provenance


async def test_without_a_fallback_the_same_failure_fails_the_run(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:fail=provider_error")
    socket = await sockets.open(alice, conversation)
    ended, _ = await send(socket, "hello", "fb-none")
    assert ended["type"] == "run.failed" and ended["error"]["code"] == "provider_error"
    assert ended["partial"]["provenance"]["fallback_model"] is None


async def test_a_retry_is_counted_and_no_fallback_is_named(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:fail=overloaded,fail_times=1,words=8",
                                                      fallback_models=["test:words=3"])
    socket = await sockets.open(alice, conversation)
    ended, _ = await send(socket, "hello", "fb-retry")
    provenance = ended["message"]["provenance"]
    assert ended["type"] == "run.completed" and len(ended["message"]["content"].split()) == 8
    assert (provenance["retries"], provenance["fallback_model"], provenance["trimmed_messages"]) == (1, None, 0)


async def test_a_long_conversation_is_trimmed_to_the_window_instead_of_failing(alice, sockets):
    # Over the window unless older turns are left out. 800, not fewer: the built-in tools'
    # definitions alone are estimated near 300 tokens on every request.
    model = "test:window=800,words=20,tps=0"
    conversation = await Conversation.objects.acreate(owner=alice, model=model)
    for n in range(8):
        await Message.objects.acreate(conversation=conversation, role="user", author=alice,
                                      content=f"question {n}: " + "tell me more about streaming answers " * 4)
        await Message.objects.acreate(conversation=conversation, role="assistant", content=f"answer {n}: " + "they stream word by word " * 5)
    socket = await sockets.open(alice, conversation)
    ended, _ = await send(socket, "and now?", "trim-1")
    assert ended["type"] == "run.completed", ended
    trimmed = ended["message"]["provenance"]["trimmed_messages"]
    assert 0 < trimmed < 16 and trimmed % 2 == 0  # whole turns, from the oldest
    reloaded = await sockets.open(alice, conversation)
    assert reloaded.ready["messages"][-1]["provenance"]["trimmed_messages"] == trimmed

    # With the window lifted by the model string alone, nothing is left out.
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:window=100000,words=20,tps=0")
    ended, _ = await send(socket, "and again?", "trim-2")
    assert ended["type"] == "run.completed" and ended["message"]["provenance"]["trimmed_messages"] == 0


async def test_fallback_models_are_a_setting_checked_like_the_model(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:")
    socket = await sockets.open(alice, conversation)
    assert socket.ready["type"] == "session.ready"
    await socket.send({"type": "settings.update", "fallback_models": [" test:words=3 ", "test:"]})
    updated, _ = await socket.recv_until("conversation.updated")
    assert updated["conversation"]["settings"]["fallback_models"] == ["test:words=3", "test:"]
    for bad, code in ((["nope:x"], "bad_request"), (["test:"] * 4, "bad_request"), (["test:bogus=1"], "bad_request"), ([3], "bad_request")):
        await socket.send({"type": "settings.update", "fallback_models": bad})
        error, _ = await socket.recv_until("error")
        assert error["code"] == code, (bad, error)
    assert (await Conversation.objects.aget(id=conversation.id)).fallback_models == ["test:words=3", "test:"]

    # A run keeps the fallbacks it was queued with.
    await socket.send({"type": "message.send", "content": "hi", "client_id": "fb-snap"})
    await socket.recv_until("run.completed")
    run = await AgentRun.objects.aget(conversation=conversation)
    assert run.fallback_models == ["test:words=3", "test:"]
    await socket.send({"type": "settings.update", "fallback_models": None})
    updated, _ = await socket.recv_until("conversation.updated")
    assert updated["conversation"]["settings"]["fallback_models"] == []
