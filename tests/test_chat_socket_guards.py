"""Who may open a chat socket, and how bad input is answered: an error frame, nothing lost."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message
from tests.chat_helpers import send_frame
from tests.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def test_it_refuses_anonymous_users_with_4401(conversation):
    socket, connected, _ = await open_socket(None, f"/ws/chat/{conversation.id}/")
    # Accepted, then closed with the code, so that a browser sees it.
    assert connected
    assert (await socket.communicator.receive_output(2))["code"] == 4401


async def test_it_refuses_other_users_conversations_with_4403(charlie, conversation):
    socket, connected, _ = await open_socket(charlie, f"/ws/chat/{conversation.id}/")
    assert connected
    assert (await socket.communicator.receive_output(2))["code"] == 4403


async def test_it_handles_a_missing_conversation_with_4404(alice):
    socket, connected, _ = await open_socket(alice, "/ws/chat/00000000-0000-0000-0000-000000000000/")
    assert connected
    assert (await socket.communicator.receive_output(2))["code"] == 4404


async def test_it_refuses_a_foreign_origin_at_the_handshake(alice, conversation):
    socket, connected, code = await open_socket(alice, f"/ws/chat/{conversation.id}/", origin="http://evil.example")
    assert not connected


async def test_it_limits_sockets_per_user(alice, conversation, sockets, settings):
    settings.NOUS_MAX_SOCKETS_PER_USER = 2
    await sockets.open(alice, conversation)
    await sockets.open(alice, conversation)
    socket, connected, _ = await open_socket(alice, f"/ws/chat/{conversation.id}/")
    assert (await socket.communicator.receive_output(2))["code"] == 4429


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"type": "no.such.type"}', "bad_request"),
        ('{"content": "no type"}', "bad_request"),
        ('{"type": "message.send", "content": 42, "client_id": "x"}', "bad_request"),
        ('{"type": "message.send", "content": "hi"}', "bad_request"),
        ('{"type": "message.send", "content": "   ", "client_id": "blank"}', "bad_request"),
        ('{"type": "run.resume", "run_id": "x", "after_seq": "1"}', "bad_request"),
        ('{"type": "run.resume", "run_id": "not-a-uuid", "after_seq": 0}', "not_found"),
        ('{"type": "history.load", "before": "abc"}', "bad_request"),
        ('{"type": "history.load", "before": "999999"}', "not_found"),
        ('{"type": "tool.decide", "tool_call_id": "t", "approved": true}', "not_found"),
        ('{"type": "ai.toggle", "active": true}', "bad_request"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(alice, conversation, sockets, raw, code):
    socket = await sockets.open(alice, conversation)
    await socket.communicator.send_to(text_data=raw)
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == code, error
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"


async def test_a_binary_frame_gets_bad_request(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await socket.recv())["code"] == "bad_request"
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"


async def test_a_too_long_message_is_refused_with_its_ref_and_stores_nothing(alice, conversation, sockets, settings):
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("x" * (settings.NOUS_MAX_MESSAGE_CHARS + 1), "long-1"))
    error = await socket.recv()
    assert error["code"] == "too_long" and error["ref"] == "long-1"
    await socket.communicator.send_to(text_data='{"type":"ping","pad":"' + "y" * 70_000 + '"}')
    assert (await socket.recv())["code"] == "too_long"
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_a_flood_of_frames_is_rate_limited(alice, conversation, sockets, settings):
    socket = await sockets.open(alice, conversation)
    for _ in range(settings.NOUS_FRAMES_PER_SECOND * 3):
        await socket.send({"type": "ping"})
    frames = [await socket.recv() for _ in range(settings.NOUS_FRAMES_PER_SECOND * 3)]
    assert any(f["type"] == "error" and f["code"] == "rate_limited" for f in frames)
    assert sum(f["type"] == "pong" for f in frames) >= settings.NOUS_FRAMES_PER_SECOND


async def test_too_many_sends_a_minute_are_refused(alice, conversation, sockets, settings):
    settings.NOUS_SENDS_PER_MINUTE = 2
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=0,words=3")
    socket = await sockets.open(alice, conversation)
    for i in range(2):
        await socket.send(send_frame(f"m{i}"))
        await socket.recv_until("run.completed")
    await socket.send(send_frame("one too many", "flood"))
    error = await socket.recv()
    assert error["code"] == "rate_limited" and error["ref"] == "flood"
    assert not await Message.objects.filter(client_id="flood").aexists()


async def test_a_run_of_another_conversation_cannot_be_resumed_or_stopped(alice, conversation, sockets):
    other = await Conversation.objects.acreate(owner=alice, model="test:tps=20,words=100")
    socket_other = await sockets.open(alice, other)
    await socket_other.send(send_frame("busy elsewhere"))
    queued, _ = await socket_other.recv_until("run.queued")
    socket = await sockets.open(alice, conversation)
    await socket.send({"type": "run.resume", "run_id": queued["run_id"], "after_seq": 0})
    assert (await socket.recv())["code"] == "not_found"
    await socket.send({"type": "run.stop", "run_id": queued["run_id"]})
    assert (await socket.recv())["code"] == "not_found"
    await socket_other.send({"type": "run.stop"})
    await socket_other.recv_until("run.stopped")


async def test_message_content_is_stored_as_sent_not_interpreted(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    html = '<img src=x onerror="alert(1)"> **bold**'
    await socket.send(send_frame(html))
    created = await socket.recv()
    assert created["message"]["content"] == html


async def test_socket_slots_held_by_a_dead_process_come_back_within_a_lease(alice, conversation, sockets, settings):
    from chat.leases import leases

    settings.NOUS_MAX_SOCKETS_PER_USER, settings.NOUS_PRESENCE_TTL_SECS = 2, 0.5
    for ghost in ("dead-1", "dead-2"):  # sockets of a process that was killed: nobody renews them
        await leases().add(f"nous:sockets:{alice.id}", ghost)
    socket, _, _ = await open_socket(alice, f"/ws/chat/{conversation.id}/")
    assert (await socket.communicator.receive_output(2))["code"] == 4429
    await asyncio.sleep(0.6)  # the leases run out; alice is still trying
    live = await sockets.open(alice, conversation)
    # A live socket's lease is renewed: it keeps its slot however long it stays.
    await asyncio.sleep(1.2)
    await sockets.open(alice, conversation)
    socket, _, _ = await open_socket(alice, f"/ws/chat/{conversation.id}/")
    assert (await socket.communicator.receive_output(2))["code"] == 4429
    await live.send({"type": "ping"})
    assert (await live.recv())["type"] == "pong"


async def test_a_session_from_before_a_password_change_is_not_logged_in(alice, conversation):
    from channels.testing import WebsocketCommunicator
    from django.conf import settings as django_settings

    from nous_site.asgi import application
    from tests.conftest import ORIGIN, session_cookie

    cookie = await session_cookie(alice)
    await sync_to_async(alice.set_password)("a-new-password")
    await alice.asave()
    headers = [(b"origin", ORIGIN.encode()), (b"host", b"127.0.0.1:8000"),
               (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode())]
    communicator = WebsocketCommunicator(application, f"/ws/chat/{conversation.id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected and (await communicator.receive_output(2))["code"] == 4401
