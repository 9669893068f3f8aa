"""Branches of a chat through the real stack: regenerate, edit, branch.select, reload, the model's
context, busy, resume, history and export on the selected branch. Runs in both modes."""

import pytest
from asgiref.sync import sync_to_async

from chat.exports import export_dict
from chat.models import AgentRun, Conversation, Message
from tests.chat_helpers import deltas_text, send_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


def contents(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages]


async def ask(socket, content: str) -> dict:
    await socket.send(send_frame(content))
    completed, _ = await socket.recv_until("run.completed")
    return completed


async def branch_words(conversation, before_id: int) -> int:
    """The words of the selected branch's turns before `before_id`: what the test model counts as its input."""
    rows = Message.objects.filter(conversation=conversation, on_branch=True, id__lt=before_id, role__in=["user", "assistant"])
    return sum([len(m.content.split()) async for m in rows])


async def test_regenerate_keeps_the_old_answer_as_a_sibling_and_each_branch_can_be_shown(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    other = await sockets.open(alice, conversation)
    first = (await ask(socket, "Tell me something"))["message"]
    assert first["branch"] is None and first["parent_id"] is not None

    await socket.send({"type": "message.regenerate", "message_id": first["id"], "client_id": "regen-1"})
    switched, _ = await socket.recv_until("branch.switched")
    question, answer = switched["messages"]
    assert question["id"] == first["parent_id"] and answer["status"] == "streaming"
    assert answer["branch"] == {"index": 2, "count": 2, "siblings": [first["id"], answer["id"]]}
    assert answer["parent_id"] == question["id"] and switched["leaf_id"] == answer["id"]
    completed, before = await socket.recv_until("run.completed")
    assert [f["type"] for f in before][0] == "run.queued"  # the switch comes before the run's frames
    assert completed["message"]["id"] == answer["id"] and completed["message"]["branch"]["index"] == 2
    assert completed["message"]["content"] == deltas_text(before)
    assert (await other.recv_until("branch.switched"))[0]["leaf_id"] == answer["id"]  # every tab follows
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1

    # A resend of the same regenerate (a reconnect) starts nothing.
    await socket.send({"type": "message.regenerate", "message_id": first["id"], "client_id": "regen-1"})
    again, _ = await socket.recv_until("branch.switched")
    assert again["leaf_id"] == answer["id"] and await socket.nothing(0.3)
    assert await AgentRun.objects.filter(conversation=conversation).acount() == 2

    await socket.send({"type": "branch.select", "message_id": first["id"]})
    back, _ = await socket.recv_until("branch.switched")
    assert contents(back["messages"]) == [question["content"], first["content"]]
    assert back["messages"][1]["branch"] == {"index": 1, "count": 2, "siblings": [first["id"], answer["id"]]}
    assert (await other.recv_until("branch.switched"))[0]["leaf_id"] == first["id"]

    reloaded = await sockets.open(alice, conversation)  # a reload shows the branch chosen
    assert contents(reloaded.ready["messages"]) == [question["content"], first["content"]]
    assert reloaded.ready["messages"][1]["branch"]["index"] == 1
    exported = await sync_to_async(export_dict)(await Conversation.objects.aget(id=conversation.id))
    assert contents(exported["messages"]) == [question["content"], first["content"]]


async def test_the_model_sees_only_the_selected_branch(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await ask(socket, "alpha beta gamma")
    second = await ask(socket, "delta")
    question = second["message"]["parent_id"]

    await socket.send({"type": "message.edit", "id": question, "content": "epsilon zeta eta theta", "client_id": "e-1"})
    switched, _ = await socket.recv_until("branch.switched")
    edited = switched["messages"][-2]
    assert edited["content"] == "epsilon zeta eta theta" and edited["client_id"] == "e-1"
    assert edited["branch"] == {"index": 2, "count": 2, "siblings": [question, edited["id"]]}
    assert "delta" not in contents(switched["messages"])
    completed, _ = await socket.recv_until("run.completed")
    # The test model counts the words it is given: the edited branch's, not the old one's.
    answer_id = int(completed["message"]["id"])
    assert completed["usage"]["input_tokens"] == await branch_words(conversation, answer_id) == 3 + 30 + 4

    # Back on the first branch, a follow-up is answered from that branch.
    await socket.send({"type": "branch.select", "message_id": question})
    back, _ = await socket.recv_until("branch.switched")
    assert contents(back["messages"])[-2] == "delta"
    follow_up = await ask(socket, "omega")
    assert follow_up["message"]["branch"] is None
    assert follow_up["usage"]["input_tokens"] == 3 + 30 + 1 + 30 + 1

    # An edit of the first message is a branch with nothing before it.
    first_question = back["messages"][0]["id"]
    await socket.send({"type": "message.edit", "id": first_question, "content": "only this", "client_id": "e-2"})
    switched, _ = await socket.recv_until("branch.switched")
    assert contents(switched["messages"])[0] == "only this" and len(switched["messages"]) == 2
    assert switched["messages"][0]["branch"]["siblings"][0] == first_question
    assert (await socket.recv_until("run.completed"))[0]["usage"]["input_tokens"] == 2


async def test_regenerate_edit_and_select_during_a_run_are_busy_and_store_nothing(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    first = (await ask(socket, "first"))["message"]
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=20,words=200")
    await socket.send(send_frame("a long one"))
    await socket.recv_until("run.delta")
    stored = await Message.objects.filter(conversation=conversation).acount()
    refusals = [
        {"type": "message.regenerate", "message_id": first["id"], "client_id": "r-busy"},
        {"type": "message.edit", "id": first["parent_id"], "content": "changed", "client_id": "e-busy"},
        {"type": "branch.select", "message_id": first["id"]},
    ]
    for frame in refusals:
        await socket.send(frame)
        error, _ = await socket.recv_until("error")
        assert error["code"] == "busy" and error["ref"] == frame.get("client_id")
    assert await Message.objects.filter(conversation=conversation).acount() == stored
    assert await Message.objects.filter(conversation=conversation, on_branch=False).acount() == 0
    await socket.send({"type": "run.stop"})
    await socket.recv_until("run.stopped")


async def test_a_reload_mid_regenerated_answer_resumes_it_on_its_branch(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    first = (await ask(socket, "story time"))["message"]
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=60,words=120")
    await socket.send({"type": "message.regenerate", "message_id": first["id"]})
    switched, _ = await socket.recv_until("branch.switched")
    for _ in range(2):
        delta, _ = await socket.recv_until("run.delta")
    run_id = delta["run_id"]
    seen = deltas_text(socket.frames, run_id)
    after_seq = delta["seq"]
    await socket.close()

    reloaded = await sockets.open(alice, conversation)
    shown = reloaded.ready["messages"]
    assert shown[-1]["id"] == switched["leaf_id"] and shown[-1]["branch"]["index"] == 2
    active = reloaded.ready["active_run"]
    assert active is not None and active["run_id"] == run_id and active["content"].startswith(seen)
    await reloaded.send({"type": "run.resume", "run_id": active["run_id"], "after_seq": after_seq})
    completed, frames = await reloaded.recv_until("run.completed")
    deltas = [f for f in frames if f["type"] == "run.delta"]
    start = next(i for i, f in enumerate(deltas) if f["seq"] == after_seq + 1)
    assert [f["seq"] for f in deltas[start:]] == list(range(after_seq + 1, completed["seq"] + 1))
    assert seen + "".join(f["text"] for f in deltas[start:]) == completed["message"]["content"]
    assert completed["message"]["id"] == switched["leaf_id"]


async def test_retry_of_a_failed_answer_answers_the_same_message_again(alice, conversation, sockets):
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=200,fail=provider_error,fail_after=3")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("this will break"))
    failed, _ = await socket.recv_until("run.failed")
    await socket.send({"type": "settings.update", "model": "test:tps=200,words=10"})
    await socket.recv_until("conversation.updated")
    await socket.send({"type": "message.regenerate", "message_id": failed["partial"]["id"], "client_id": "retry-1"})
    switched, _ = await socket.recv_until("branch.switched")
    assert [m["role"] for m in switched["messages"]] == ["user", "assistant"]  # the failed one and its error hidden
    completed, _ = await socket.recv_until("run.completed")
    assert completed["message"]["branch"]["siblings"] == [failed["partial"]["id"], completed["message"]["id"]]
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1
    await socket.send({"type": "branch.select", "message_id": failed["partial"]["id"]})
    back, _ = await socket.recv_until("branch.switched")
    assert [m["role"] for m in back["messages"]] == ["user", "assistant", "error"]  # the error follows its answer


async def test_edit_is_refused_like_a_send_and_is_idempotent(alice, bob, conversation, sockets, settings):
    socket = await sockets.open(alice, conversation)
    first = (await ask(socket, "hello"))["message"]
    question = first["parent_id"]
    refused = [
        ({"id": question, "content": "x" * (settings.NOUS_MAX_MESSAGE_CHARS + 1), "client_id": "long"}, "too_long"),
        ({"id": question, "content": "   ", "client_id": "empty"}, "bad_request"),
        ({"id": question, "content": "no client id"}, "bad_request"),
        ({"id": first["id"], "content": "an answer", "client_id": "answer"}, "bad_request"),
        ({"id": "999999", "content": "nowhere", "client_id": "unknown"}, "not_found"),
    ]
    for fields, code in refused:
        await socket.send({"type": "message.edit", **fields})
        error, _ = await socket.recv_until("error")
        assert error["code"] == code and error["ref"] == fields.get("client_id"), (fields, error)
    theirs = await Conversation.objects.acreate(owner=bob, model="test:")
    their_message = await Message.objects.acreate(conversation=theirs, role="user", content="bob's", author=bob)
    await socket.send({"type": "message.edit", "id": str(their_message.id), "content": "mine", "client_id": "foreign"})
    assert (await socket.recv_until("error"))[0]["code"] == "not_found"
    assert await Message.objects.filter(conversation=conversation).acount() == 2

    edit = {"type": "message.edit", "id": question, "content": "hello again", "client_id": "e-1"}
    await socket.send(edit)
    switched, _ = await socket.recv_until("branch.switched")
    await socket.recv_until("run.completed")
    await socket.send(edit)  # a resend after a reconnect: the stored message, nothing new
    again, _ = await socket.recv_until("message.created")
    assert again["message"]["id"] == switched["messages"][0]["id"] and await socket.nothing(0.3)
    assert await AgentRun.objects.filter(conversation=conversation).acount() == 2

    settings.NOUS_SENDS_PER_MINUTE = 1  # edits count toward the send limit (used up by now)
    await socket.send({**edit, "client_id": "e-2"})
    assert (await socket.recv_until("error"))[0] == {"type": "error", "code": "rate_limited", "ref": "e-2",
                                                     "message": "You are sending messages too fast; wait a minute"}


async def test_history_pages_follow_the_selected_branch(alice, conversation, sockets, settings):
    settings.NOUS_HISTORY_PAGE_SIZE = 3

    @sync_to_async
    def build() -> list[Message]:
        # One branch of six messages, and a sibling of the fifth that is not selected.
        chain, parent = [], None
        for n in range(6):
            parent = Message.objects.create(conversation=conversation, role="user" if n % 2 == 0 else "assistant",
                                            content=f"m{n}", author=alice, parent=parent)
            chain.append(parent)
        Message.objects.create(conversation=conversation, role="user", content="other", author=alice,
                               parent=chain[3], on_branch=False)
        return chain

    chain = await build()
    socket = await sockets.open(alice, conversation)
    assert contents(socket.ready["messages"]) == ["m3", "m4", "m5"] and socket.ready["has_more"]
    assert socket.ready["messages"][1]["branch"]["count"] == 2
    await socket.send({"type": "history.load", "before": socket.ready["messages"][0]["id"]})
    older, _ = await socket.recv_until("history")
    assert contents(older["messages"]) == ["m0", "m1", "m2"] and not older["has_more"]

    await socket.send({"type": "branch.select", "message_id": socket.ready["messages"][1]["branch"]["siblings"][1]})
    switched, _ = await socket.recv_until("branch.switched")
    assert contents(switched["messages"]) == ["m2", "m3", "other"] and switched["has_more"]
    await socket.send({"type": "history.load", "before": switched["messages"][0]["id"]})
    assert contents((await socket.recv_until("history"))[0]["messages"]) == ["m0", "m1"]
    assert [m.on_branch async for m in Message.objects.filter(id__in=[c.id for c in chain]).order_by("id")] == [
        True, True, True, True, False, False]


async def test_existing_chats_are_linked_into_one_branch(alice, conversation):
    from importlib import import_module

    from django.apps import apps

    @sync_to_async
    def link() -> list[tuple]:
        for role in ["user", "assistant", "tool", "user", "assistant", "error"]:
            Message.objects.create(conversation=conversation, role=role, content=role)
        import_module("chat.migrations.0010_message_branches").link_existing_chats(apps, None)
        return list(Message.objects.filter(conversation=conversation).order_by("id").values_list("role", "parent_id"))

    rows = await link()
    ids = [m async for m in Message.objects.filter(conversation=conversation).order_by("id").values_list("id", flat=True)]
    assert rows == [("user", None), ("assistant", ids[0]), ("tool", None), ("user", ids[1]), ("assistant", ids[3]),
                    ("error", None)]
