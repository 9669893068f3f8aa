"""Rooms through the real ASGI app with several clients: who may enter, presence, typing,
history, edits, the AI participant and its one run at a time."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.leases import leases
from chat.models import AgentRun, Message
from chat.runs.lifecycle import model_history
from rooms import consumers as room_consumers
from rooms.models import Membership, Room, create_room
from rooms.presence import presence_key
from tests.chat_helpers import deltas_text, send_frame
from tests.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


@pytest.fixture
def room(alice):
    return create_room(alice, "Lunch plans", model="test:tps=200,words=20")


@pytest.fixture
def slow_room(alice):
    return create_room(alice, "Slow", model="test:tps=20,words=200")


@pytest.fixture
async def rooms():
    """`await rooms.join(user, room)`: a socket that got its session.ready; all closed afterwards."""

    class Joiner:
        opened = []

        async def join(self, user, room):
            socket, connected, _ = await open_socket(user, f"/ws/rooms/{room.slug}/")
            assert connected
            self.opened.append(socket)
            socket.ready = await socket.recv()
            assert socket.ready["type"] == "session.ready", socket.ready
            return socket

    joiner = Joiner()
    joiner.opened = []
    yield joiner
    for socket in joiner.opened:
        await socket.close()


async def wait_for(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def refusal(user, path):
    socket, connected, _ = await open_socket(user, path)
    assert connected  # accepted, then closed, so that a browser sees the code
    return (await socket.communicator.receive_output(2))["code"]


async def test_who_may_enter(alice, bob, charlie, room):
    private = await sync_to_async(create_room)(alice, "Secret", is_private=True)
    await Membership.objects.acreate(room=private, user=bob)
    assert await refusal(None, f"/ws/rooms/{room.slug}/") == 4401
    assert await refusal(charlie, f"/ws/rooms/{private.slug}/") == 4403
    assert await refusal(alice, "/ws/rooms/no-such-room/") == 4404
    for user in (alice, bob):  # the owner and a member the owner added
        socket, connected, _ = await open_socket(user, f"/ws/rooms/{private.slug}/")
        assert (await socket.recv())["type"] == "session.ready"
        await socket.close()
    # A room's conversation is not reachable as a chat, not even by the room's owner.
    assert await refusal(alice, f"/ws/chat/{room.conversation_id}/") == 4404


async def test_joining_and_leaving_update_everyone_and_two_tabs_count_once(alice, bob, room, rooms):
    a1 = await rooms.join(alice, room)
    assert a1.ready["participants"] == ["alice"] and a1.ready["room"]["settings"]["ai_active"] is True
    b = await rooms.join(bob, room)
    assert b.ready["participants"] == ["alice", "bob"]
    assert (await a1.recv())["participants"] == ["alice", "bob"]
    a2 = await rooms.join(alice, room)  # a second tab: nobody new is here
    assert a2.ready["participants"] == ["alice", "bob"]
    await a2.close()
    assert await b.nothing(0.3), await b.recv()
    assert await a1.nothing(0.1)
    await b.close()
    assert (await a1.recv())["participants"] == ["alice"]


async def test_a_socket_whose_process_died_leaves_within_the_lease(alice, room, rooms, settings):
    settings.NOUS_PRESENCE_TTL_SECS = 0.6
    # A socket held by a process that was killed: nobody renews its lease any more.
    await leases().add(presence_key(room.conversation_id), "ghost|dead-socket")
    a = await rooms.join(alice, room)
    assert a.ready["participants"] == ["alice", "ghost"]
    presence, _ = await a.recv_until("presence", timeout=3)
    assert presence["participants"] == ["alice"]  # alice's own lease was renewed meanwhile


async def test_typing_is_relayed_throttled_never_echoed_and_stops_by_itself(alice, bob, room, rooms, monkeypatch):
    monkeypatch.setattr(room_consumers, "TYPING_TIMEOUT_SECS", 0.5)
    a, other_tab, b = await rooms.join(alice, room), await rooms.join(alice, room), await rooms.join(bob, room)
    await a.recv_until("presence")
    await other_tab.recv_until("presence")
    for _ in range(10):  # a keystroke each
        await a.send({"type": "typing", "typing": True})
    assert await b.recv() == {"type": "typing", "user": "alice", "typing": True}
    assert await b.recv(timeout=2) == {"type": "typing", "user": "alice", "typing": False}  # 0.5 s after the last
    assert await a.nothing(0.1) and await other_tab.nothing(0.1)  # never to the typer, on any tab
    await a.send({"type": "typing", "typing": True})
    assert (await b.recv())["typing"] is True
    await a.close()  # the typer leaves: the room hears it stopped
    assert await b.recv() == {"type": "typing", "user": "alice", "typing": False}


async def test_the_newest_20_messages_on_join_and_older_pages_on_request(alice, bob, room, rooms):
    for i in range(45):
        await Message.objects.acreate(conversation_id=room.conversation_id, role="user", content=f"m{i}", author=alice)
    b = await rooms.join(bob, room)
    assert [m["content"] for m in b.ready["messages"]] == [f"m{i}" for i in range(25, 45)] and b.ready["has_more"]
    await b.send({"type": "history.load", "before": b.ready["messages"][0]["id"]})
    page = await b.recv()
    assert [m["content"] for m in page["messages"]] == [f"m{i}" for i in range(5, 25)] and page["has_more"]


async def test_messages_reach_everyone_and_a_resend_is_idempotent(alice, bob, room, rooms):
    a, b = await rooms.join(alice, room), await rooms.join(bob, room)
    await a.recv_until("presence")
    await b.send(send_frame("hello all", "hi-1"))
    created = await b.recv()
    assert created["message"]["author"] == "bob" and created["message"]["client_id"] == "hi-1"
    assert (await a.recv())["message"]["id"] == created["message"]["id"]
    await b.send(send_frame("hello all", "hi-1"))  # a resend after a reconnect
    assert (await b.recv())["message"]["id"] == created["message"]["id"]
    assert await a.nothing(0.3)
    assert await Message.objects.filter(conversation_id=room.conversation_id).acount() == 1


async def test_only_the_author_edits_and_deletes_and_a_deleted_message_leaves_the_context(alice, bob, room, rooms):
    a, b = await rooms.join(alice, room), await rooms.join(bob, room)
    await a.recv_until("presence")
    await b.send(send_frame("lunch at noon"))
    mine = (await b.recv())["message"]
    await a.recv()
    await a.send({"type": "message.edit", "id": mine["id"], "content": "hijacked"})
    assert (await a.recv())["code"] == "forbidden"
    await a.send({"type": "message.delete", "id": mine["id"]})
    assert (await a.recv())["code"] == "forbidden"
    await b.send({"type": "message.edit", "id": mine["id"], "content": "lunch at one"})
    for socket in (a, b):
        updated = await socket.recv()
        assert updated["type"] == "message.updated" and updated["message"]["content"] == "lunch at one"
    await b.send({"type": "message.delete", "id": mine["id"]})
    for socket in (a, b):
        assert await socket.recv() == {"type": "message.deleted", "id": mine["id"]}
    await a.send({"type": "message.delete", "id": "999999"})
    assert (await a.recv())["code"] == "not_found"
    # The AI's next context has no trace of it.
    await a.send(send_frame("@ai what time is lunch?"))
    completed, _ = await a.recv_until("run.completed")
    run = await AgentRun.objects.aget(id=completed["run_id"])
    history = await sync_to_async(model_history)(room.conversation_id, run.message_id, 10, True)
    assert all("lunch at" not in turn["content"] for turn in history)


@pytest.mark.parametrize("content", ["@ai what now", "Nous, pick one", "hey @Nous", "is it raining?", "lunch? anyone"])
async def test_the_ai_answers_when_addressed_or_asked_and_streams_to_everyone(alice, bob, room, rooms, content):
    a, b = await rooms.join(alice, room), await rooms.join(bob, room)
    await a.recv_until("presence")
    await b.send(send_frame(content))
    ends = []
    for socket in (a, b):
        completed, frames = await socket.recv_until("run.completed")
        assert deltas_text(frames) == completed["message"]["content"] != ""
        ends.append(completed["message"]["content"])
    assert ends[0] == ends[1]


@pytest.mark.parametrize("content", ["I said wait", "the train is late", "email me", "AI is hard"])
async def test_the_ai_stays_quiet_otherwise(alice, bob, room, rooms, content):
    a, b = await rooms.join(alice, room), await rooms.join(bob, room)
    await a.recv_until("presence")
    await b.send(send_frame(content))
    await b.recv()
    assert (await a.recv())["type"] == "message.created"
    assert await a.nothing(0.5)
    assert not await AgentRun.objects.filter(conversation_id=room.conversation_id).aexists()


async def test_only_the_owner_switches_the_ai_and_off_means_silent(alice, bob, room, rooms):
    a, b = await rooms.join(alice, room), await rooms.join(bob, room)
    await a.recv_until("presence")
    await b.send({"type": "ai.toggle", "active": False})
    assert (await b.recv())["code"] == "forbidden"
    await a.send({"type": "ai.toggle", "active": False})
    for socket in (a, b):
        updated = await socket.recv()
        assert updated["type"] == "room.updated" and updated["room"]["settings"]["ai_active"] is False
    await b.send(send_frame("@ai are you there?"))
    await b.recv()
    await a.recv()
    assert await a.nothing(0.5)
    assert not await AgentRun.objects.filter(conversation_id=room.conversation_id).aexists()


async def test_triggers_during_an_answer_fold_into_one_follow_up(alice, bob, slow_room, rooms):
    a, b = await rooms.join(alice, slow_room), await rooms.join(bob, slow_room)
    await a.recv_until("presence")
    await a.send(send_frame("@ai first question"))
    await a.recv_until("run.delta")
    for text in ("@ai second", "@ai third?", "and a fourth?"):
        await b.send(send_frame(text))
        await b.recv_until("message.created")
    await wait_for(lambda: Room.objects.filter(id=slow_room.id, followup_pending=True,
                                               followup_trigger__content="and a fourth?").aexists())
    await a.send({"type": "run.stop"})  # the owner stops the first answer; the folded one still comes
    stopped, _ = await a.recv_until("run.stopped")
    follow, _ = await a.recv_until("run.queued")
    assert follow["run_id"] != stopped["run_id"]
    await a.send({"type": "run.stop", "run_id": follow["run_id"]})
    await a.recv_until("run.stopped")
    await asyncio.sleep(0.3)  # nothing else may start after the follow-up
    runs = [r async for r in AgentRun.objects.filter(conversation_id=slow_room.conversation_id).select_related("trigger_message").order_by("created_at")]
    assert [r.trigger_message.content for r in runs] == ["@ai first question", "and a fourth?"]


async def test_the_owner_and_whoever_asked_may_stop_the_ai_and_nobody_else(alice, bob, charlie, slow_room, rooms):
    a, b, c = await rooms.join(alice, slow_room), await rooms.join(bob, slow_room), await rooms.join(charlie, slow_room)
    await b.send(send_frame("@ai tell me a story"))
    delta, _ = await c.recv_until("run.delta")
    await c.send({"type": "run.stop"})
    assert (await c.recv_until("error"))[0]["code"] == "forbidden"
    await b.send({"type": "run.stop", "run_id": delta["run_id"]})  # whoever asked
    stopped, _ = await c.recv_until("run.stopped")
    assert stopped["run_id"] == delta["run_id"] and stopped["message"]["content"] == deltas_text(c.frames)

    await b.send(send_frame("@ai another one"))
    await a.recv_until("run.delta")
    await a.send({"type": "run.stop"})  # the owner
    await a.recv_until("run.stopped")


async def test_the_ai_chimes_in_after_five_minutes_of_silence(alice, bob, room, rooms):
    from datetime import timedelta

    from django.utils import timezone

    a = await rooms.join(alice, room)
    await a.send(send_frame("good morning"))  # the room is new: the AI was not silent for long
    await a.recv()
    assert await a.nothing(0.4)
    await Room.objects.filter(id=room.id).aupdate(created_at=timezone.now() - timedelta(minutes=6))
    await a.send(send_frame("good morning again"))
    await a.recv_until("run.completed")
    await a.send(send_frame("and now?!"))  # a question: it answers
    await a.recv_until("run.completed")
    await a.send(send_frame("thanks"))  # it just spoke: quiet again
    await a.recv()
    assert await a.nothing(0.4)


async def test_a_member_the_owner_removes_is_shut_out_at_once(alice, bob, rooms):
    from django.test import Client

    private = await sync_to_async(create_room)(alice, "Board", is_private=True)
    await Membership.objects.acreate(room=private, user=bob)
    a, b = await rooms.join(alice, private), await rooms.join(bob, private)
    await a.recv_until("presence")
    owner = Client()
    await sync_to_async(owner.force_login)(alice)
    r = await sync_to_async(owner.post)(f"/rooms/{private.slug}/members/bob/remove/")
    assert r.status_code == 302
    assert (await b.communicator.receive_output(2))["code"] == 4403
    assert (await a.recv_until("presence"))[0]["participants"] == ["alice"]
    assert await refusal(bob, f"/ws/rooms/{private.slug}/") == 4403


async def test_a_chats_run_ends_ask_once_whether_it_is_a_room(alice, conversation, monkeypatch):
    """The follow-up hook runs at every run's end; a chat's (a conversation's kind never changes)
    is read once, a room's flag at every end, so a room's folded triggers are never skipped."""
    from rooms import ai

    reads = []
    read = ai._followup_pending
    monkeypatch.setattr(ai, "_followup_pending", lambda conversation_id: reads.append(conversation_id) or read(conversation_id))
    monkeypatch.setattr(ai, "_CHATS", {})
    for _ in range(3):
        await ai.start_followup_after(str(conversation.id), {})
    assert reads == [str(conversation.id)]
    room = await sync_to_async(create_room)(alice, "Follow-ups", model="test:")
    for _ in range(2):
        await ai.start_followup_after(str(room.conversation_id), {})
    assert reads.count(str(room.conversation_id)) == 2
