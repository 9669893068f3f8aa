"""Property-based fuzzing of every client frame type on every socket, and of the HTTP pages.

For each example: every frame is answered by one `error` with a PROTOCOL.md code (never
`internal`), the socket stays open and answers `ping`, nothing is stored or started, and nothing
is logged at ERROR. `make test` runs a bounded number of examples (profile `ci`);
`HYPOTHESIS_PROFILE=long` runs thousands.
"""

import logging
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from hypothesis import given
from hypothesis import strategies as st

from chat.models import AgentRun, Conversation, Message
from chat.protocol import ERROR_CODES
from rooms.models import Membership, create_room
from tests.conftest import open_socket
from tests.fuzz_frames import HOSTILE_TEXT, UNSTORABLE, Foreign, refused_frames

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


@pytest.fixture
async def foreign(charlie):
    """Another user's conversation, with a message and a finished run: ids the socket must not reach."""
    conversation = await Conversation.objects.acreate(owner=charlie, model="test:")
    message = await Message.objects.acreate(conversation=conversation, role="user", content="charlie's", author=charlie)
    run = await AgentRun.objects.acreate(conversation=conversation, trigger_message=message, model="test:", status="completed")
    return Foreign(run_id=str(run.id), message_id=str(message.id))


@pytest.fixture(params=["chat", "room"])
async def hostile_socket(request, alice, bob, conversation, sockets, settings):
    """alice on her chat, or bob in alice's room (not its owner: ai.toggle is refused to him)."""
    settings.NOUS_FRAMES_PER_SECOND = 1_000_000  # the flood limit has its own test; here it would hide the rest
    if request.param == "chat":
        return await sockets.open(alice, conversation)
    room = await sync_to_async(create_room)(alice, "Fuzz room", model="test:")
    socket, connected, _ = await open_socket(bob, f"/ws/rooms/{room.slug}/")
    assert connected and (await socket.recv())["type"] == "session.ready"
    sockets.opened.append(socket)
    return socket


async def _stored() -> tuple[int, int]:
    return await Message.objects.acount(), await AgentRun.objects.acount()


@given(data=st.data())
async def test_every_refused_frame_is_answered_and_changes_nothing(hostile_socket, foreign, caplog, data):
    socket = hostile_socket
    frames = data.draw(st.lists(st.one_of(refused_frames(foreign), st.binary(max_size=64)), min_size=1, max_size=4))
    caplog.clear()
    while not await socket.nothing(timeout=0.01):  # what a failed example before this one left
        await socket.communicator.receive_from()
    before = await _stored()
    for frame in frames:  # send_input, as the test helpers refuse an empty frame a client can send
        kind = "bytes" if isinstance(frame, bytes) else "text"
        await socket.communicator.send_input({"type": "websocket.receive", kind: frame})
    await socket.send({"type": "ping"})
    answers = []
    while True:
        answer = await socket.recv(timeout=10)
        if answer["type"] == "pong":
            break
        answers.append(answer)
    assert [a["type"] for a in answers] == ["error"] * len(frames), (frames, answers)
    for answer in answers:
        assert answer["code"] in ERROR_CODES and answer["code"] != "internal", (frames, answer)
    assert await _stored() == before, frames
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, (frames, errors)


# --- HTTP ---------------------------------------------------------------------------------

PATH_TEXT = st.one_of(HOSTILE_TEXT, st.uuids().map(str), st.integers(-(2**70), 2**70).map(str))


@given(data=st.data())
def test_hostile_page_urls_and_forms_never_fail_on_our_side(client, alice, bob, data):
    """Every page with hostile ids and form fields: a 2xx, 3xx or 4xx, never a 500 (the test
    client raises on one); another user's conversation is a 404, as a missing one is."""
    client.force_login(alice)
    bobs = Conversation.objects.create(owner=bob, title="bob's")
    own = Conversation.objects.create(owner=alice, title="mine")
    segment = quote(data.draw(PATH_TEXT), safe="")
    form_text = data.draw(st.one_of(HOSTILE_TEXT, st.builds(lambda a, b: a + b, HOSTILE_TEXT, UNSTORABLE.filter(lambda t: "\x00" in t))))
    next_url = data.draw(st.one_of(HOSTILE_TEXT, st.sampled_from(["//evil.example/", "https://evil.example/x", "/chat/", "javascript:alert(1)"])))

    for method, url, form in [
        ("get", f"/chat/{segment}/", None),
        ("post", f"/chat/{segment}/rename/", {"title": form_text, "next": next_url}),
        ("post", f"/chat/{segment}/delete/", {}),
        ("get", f"/chat/{segment}", None),
        ("get", f"/{segment}", None),
    ]:
        r = getattr(client, method)(url, form) if form is not None else getattr(client, method)(url)
        assert r.status_code < 500, (url, r.status_code)

    for method, url in [("get", f"/chat/{bobs.id}/"), ("post", f"/chat/{bobs.id}/rename/"), ("post", f"/chat/{bobs.id}/delete/")]:
        assert getattr(client, method)(url, {"title": form_text}).status_code == 404
    r = client.post(f"/chat/{own.id}/rename/", {"title": form_text, "next": next_url})
    assert r.status_code == 302 and not r["Location"].startswith(("//", "http", "javascript")), r["Location"]
    own.refresh_from_db()
    assert "\x00" not in own.title
    assert Conversation.objects.filter(id=bobs.id, title="bob's").exists()


@given(data=st.data())
def test_hostile_room_urls_and_forms_never_fail_on_our_side(client, alice, bob, charlie, data):
    """The room pages with hostile slugs, titles, models and user names: never a 500; a private
    room is a 404 to an outsider, as a missing one is; the members panel is the owner's only."""
    client.force_login(bob)
    private = create_room(charlie, "charlie's secret", is_private=True)
    segment = quote(data.draw(PATH_TEXT), safe="")
    text = data.draw(st.one_of(HOSTILE_TEXT, st.builds(lambda a: a + "\x00", HOSTILE_TEXT)))
    form = {"title": text, "slug": data.draw(HOSTILE_TEXT), "model": data.draw(st.one_of(HOSTILE_TEXT, st.just("test:"))),
            "is_private": data.draw(st.sampled_from(["", "on", text]))}
    for method, url, body in [
        ("get", f"/rooms/{segment}/", None),
        ("post", f"/rooms/{segment}/join/", {}),
        ("post", f"/rooms/{segment}/members/", {"username": text}),
        ("post", f"/rooms/{segment}/members/{segment}/remove/", {}),
        ("post", "/rooms/", form),
    ]:
        r = getattr(client, method)(url, body) if body is not None else getattr(client, method)(url)
        assert r.status_code < 500, (url, r.status_code)
    for method, url in [("get", f"/rooms/{private.slug}/"), ("post", f"/rooms/{private.slug}/join/"),
                        ("post", f"/rooms/{private.slug}/members/"), ("post", f"/rooms/{private.slug}/members/bob/remove/")]:
        assert getattr(client, method)(url, {"username": "bob"}).status_code == 404, url
    assert not Membership.objects.filter(room=private, user=bob).exists()


def test_posts_without_a_csrf_token_are_refused(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    own = Conversation.objects.create(owner=alice, title="keep me")
    assert client.post("/chat/").status_code == 403
    assert client.post(f"/chat/{own.id}/rename/", {"title": "changed"}).status_code == 403
    assert client.post(f"/chat/{own.id}/delete/").status_code == 403
    own.refresh_from_db()
    assert own.title == "keep me" and Conversation.objects.filter(owner=alice).count() == 1
