"""A sensitive tool waits for the owner's approval, held by the server: approved, rejected,
expired, refused to others and the second time, shown again after a reload, and a paused run
that holds no worker and goes on after the decision."""

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from chat.models import AgentRun, Conversation, ToolApproval
from rooms.models import create_room
from tests.chat_helpers import deltas_text, send_frame
from tests.conftest import PRODUCTION, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

# The test model calls the calculator with the arithmetic in the prompt, then answers.
MODEL = "test:tools=calculator,tps=200,words=12"


@pytest.fixture
def guarded(alice):
    return Conversation.objects.create(owner=alice, model=MODEL, approval_tools=["calculator"])


async def wait_for(condition, timeout=5.0):
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def wait_for_approval(socket):
    required, _ = await socket.recv_until("run.approval_required")
    call = required["tool_call"]
    assert call["name"] == "calculator" and call["needs_approval"] is True
    return required


async def test_an_approved_call_runs_and_the_answer_goes_on(alice, guarded, sockets):
    socket = await sockets.open(alice, guarded)
    await socket.send(send_frame("what is 6 * 7"))
    required = await wait_for_approval(socket)
    # Paused: no worker holds it while a human decides.
    await wait_for(lambda: AgentRun.objects.filter(id=required["run_id"], status="waiting").aexists())
    await socket.send({"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": True})
    result, _ = await socket.recv_until("run.tool_result")
    assert result["tool_call_id"] == required["tool_call"]["id"] and result["result"] == "42" and not result["is_error"]
    completed, _ = await socket.recv_until("run.completed", timeout=20)
    assert deltas_text(socket.frames) == completed["message"]["content"] and "42" in completed["message"]["content"]
    approval = await ToolApproval.objects.aget(run_id=required["run_id"])
    assert approval.status == "approved" and approval.decided_by_id == alice.id


async def test_a_rejected_call_never_runs_and_the_model_is_told(alice, guarded, sockets):
    socket = await sockets.open(alice, guarded)
    await socket.send(send_frame("what is 6 * 7"))
    required = await wait_for_approval(socket)
    await socket.send({"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": False, "reason": "no maths"})
    result, _ = await socket.recv_until("run.tool_result")
    assert result["is_error"] and "Rejected by the user: no maths" in result["result"]
    completed, _ = await socket.recv_until("run.completed", timeout=20)
    assert "42" not in completed["message"]["content"]


async def test_a_second_decision_someone_elses_and_an_unknown_call_are_refused(alice, bob, sockets):
    room = await sync_to_async(create_room)(alice, "Guarded room", model=MODEL)
    await Conversation.objects.filter(id=room.conversation_id).aupdate(approval_tools=["calculator"])
    a, _, _ = await open_socket(alice, f"/ws/rooms/{room.slug}/")
    b, _, _ = await open_socket(bob, f"/ws/rooms/{room.slug}/")
    sockets.opened.extend([a, b])
    await a.recv()
    await b.recv()
    await a.send(send_frame("@ai what is 2 + 3"))
    required = await wait_for_approval(b)  # the whole room sees the card
    decide = {"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": True}
    await b.send(decide)
    assert (await b.recv_until("error"))[0]["code"] == "forbidden"  # only the room's owner decides
    await a.send(decide)
    await a.recv_until("run.tool_result")
    await a.send(decide)
    refused, _ = await a.recv_until("error")
    assert refused["code"] == "bad_request" and "already approved" in refused["message"]
    await a.send({"type": "tool.decide", "tool_call_id": "call-that-never-was", "approved": True})
    assert (await a.recv_until("error"))[0]["code"] == "not_found"
    await a.recv_until("run.completed", timeout=20)


async def test_each_sensitive_call_of_one_turn_waits_for_its_own_decision(alice, sockets):
    # One response calls both tools: the run pauses on the first, goes on after its decision with
    # the second still undecided, so it pauses again before anything of the answer is written.
    both = await Conversation.objects.acreate(owner=alice, model="test:tools=calculator+current_datetime,tps=200,words=12",
                                              approval_tools=["calculator", "current_datetime"])
    socket = await sockets.open(alice, both)
    await socket.send(send_frame("what is 6 * 7"))
    first, _ = await socket.recv_until("run.approval_required")
    assert first["tool_call"]["name"] == "calculator"
    await socket.send({"type": "tool.decide", "tool_call_id": first["tool_call"]["id"], "approved": False, "reason": "no"})
    second, seen = await socket.recv_until("run.approval_required")
    assert second["tool_call"]["name"] == "current_datetime" and second["tool_call"]["needs_approval"] is True
    assert [f["result"] for f in seen if f["type"] == "run.tool_result"] == ["Rejected by the user: no"]
    await socket.send({"type": "tool.decide", "tool_call_id": second["tool_call"]["id"], "approved": True})
    result, _ = await socket.recv_until("run.tool_result")
    assert result["tool_call_id"] == second["tool_call"]["id"] and not result["is_error"]
    completed, _ = await socket.recv_until("run.completed", timeout=20)
    assert deltas_text(socket.frames) == completed["message"]["content"]


async def test_a_reload_while_pending_shows_the_call_again(alice, guarded, sockets):
    socket = await sockets.open(alice, guarded)
    await socket.send(send_frame("what is 6 * 7"))
    required = await wait_for_approval(socket)
    await wait_for(lambda: AgentRun.objects.filter(id=required["run_id"], status="waiting").aexists())
    await socket.close()
    again = await sockets.open(alice, guarded)
    pending = again.ready["pending_approvals"]
    assert [p["tool_call"]["id"] for p in pending] == [required["tool_call"]["id"]]
    assert again.ready["active_run"]["status"] == "waiting"
    assert [e["type"] for e in again.ready["active_run"]["events"]] == ["run.tool_call", "run.approval_required"]
    await again.send({"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": True})
    await again.recv_until("run.completed", timeout=20)


async def test_nobody_deciding_in_time_is_a_no(alice, guarded, sockets):
    socket = await sockets.open(alice, guarded)
    await socket.send(send_frame("what is 6 * 7"))
    required = await wait_for_approval(socket)
    await ToolApproval.objects.filter(run_id=required["run_id"]).aupdate(expires_at=timezone.now())
    await sync_to_async(call_command)("cleanup_agents")
    result, _ = await socket.recv_until("run.tool_result", timeout=20)
    assert result["is_error"] and "nobody approved" in result["result"]
    await socket.recv_until("run.completed", timeout=20)
    await socket.send({"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": True})
    assert "already expired" in (await socket.recv_until("error"))[0]["message"]


async def test_a_waiting_run_can_be_stopped(alice, guarded, sockets):
    socket = await sockets.open(alice, guarded)
    await socket.send(send_frame("what is 6 * 7"))
    required = await wait_for_approval(socket)
    await socket.send({"type": "run.stop"})
    stopped, _ = await socket.recv_until("run.stopped")
    assert stopped["run_id"] == required["run_id"]
    assert (await AgentRun.objects.aget(id=required["run_id"])).status == "stopped"
    await socket.send(send_frame("and now?"))  # the conversation is free again
    await socket.recv_until("run.approval_required")


@pytest.mark.skipif(not PRODUCTION, reason="needs REDIS_URL: in the embedded default runs live in the ASGI process")
async def test_a_worker_restart_while_pending_loses_nothing(alice, guarded, sockets, runs):
    socket = await sockets.open(alice, guarded)
    await socket.send(send_frame("what is 6 * 7"))
    required = await wait_for_approval(socket)
    await wait_for(lambda: AgentRun.objects.filter(id=required["run_id"], status="waiting").aexists())
    await sync_to_async(runs.kill)()  # the worker that ran it is gone
    await sync_to_async(runs.start)()
    await socket.send({"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": True})
    completed, _ = await socket.recv_until("run.completed", timeout=30)
    assert "42" in completed["message"]["content"] and deltas_text(socket.frames) == completed["message"]["content"]


async def test_the_message_search_tool_sees_only_the_askers_own_messages(alice, bob):
    from chat.runs.tools import search_tool

    mine = await Conversation.objects.acreate(owner=alice, model="test:")
    theirs = await Conversation.objects.acreate(owner=bob, model="test:")
    room = await sync_to_async(create_room)(alice, "Planning", model="test:")
    from chat.models import Message

    await Message.objects.acreate(conversation=mine, role="user", author=alice, content="my passport number is in the drawer")
    await Message.objects.acreate(conversation=theirs, role="user", author=bob, content="bob's passport is lost")
    await Message.objects.acreate(conversation=room.conversation, role="user", author=alice, content="passport check in the room")
    in_chat = await search_tool(alice.id, str(mine.id), in_room=False).call({"query": "passport"})
    assert "drawer" in in_chat and "bob" not in in_chat and "room" not in in_chat
    in_room = await search_tool(alice.id, str(room.conversation_id), in_room=True).call({"query": "PASSPORT"})
    assert "in the room" in in_room and "drawer" not in in_room
    assert await search_tool(bob.id, str(theirs.id), in_room=False).call({"query": "drawer"}) == "No messages found."
