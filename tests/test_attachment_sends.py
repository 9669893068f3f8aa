"""Sending attachments with a message through the real ASGI stack, in both modes.

The attachments are stored with the message in the send's transaction, the model reads them
(text inline, images as parts: the `test:` model says "I see N image(s)"), and a send naming
attachments it may not use is refused with nothing stored.
"""

import pytest
from asgiref.sync import sync_to_async

from agents.models.base import ModelRequest
from agents.models.test import TestModel
from chat.models import AgentRun, Attachment, Conversation, Message
from chat.uploads import store_upload
from rooms.models import create_room
from tests.attachment_files import PNG
from tests.chat_helpers import send_frame
from tests.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]
MODEL = "test:tps=200,words=12"


@sync_to_async
def uploaded(user, conversation, name: str, data: bytes) -> str:
    return str(store_upload(user, conversation.id, name, data).id)


def with_attachments(content: str, client_id: str, ids: list) -> dict:
    return {**send_frame(content, client_id), "attachments": ids}


def expected_answer(prompt: str, images: int = 0) -> str:
    """What the `test:` model answers when it reads `prompt` (and `images` images) as the last user turn."""
    words = TestModel.from_name(MODEL.removeprefix("test:")).answer_for(ModelRequest([{"role": "user", "content": prompt}]))
    return (f"I see {images} image{'s' if images > 1 else ''}. " if images else "") + "".join(words)


async def nothing_stored(conversation, attachment_ids: list[str]) -> None:
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert await AgentRun.objects.filter(conversation=conversation).acount() == 0
    assert await Attachment.objects.filter(id__in=attachment_ids, message__isnull=False).acount() == 0


async def test_a_send_stores_its_attachments_and_the_model_reads_them(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    notes = await uploaded(alice, conversation, "notes.md", b"# Notes\nbuy milk\n")
    picture = await uploaded(alice, conversation, "cat.png", PNG)
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("What do you make of these?", "c-1", [notes, picture]))
    created = await socket.recv()
    assert created["type"] == "message.created"
    assert [(a["id"], a["name"], a["content_type"], a["size"], a["url"]) for a in created["message"]["attachments"]] == [
        (notes, "notes.md", "text/plain", 17, f"/attachments/{notes}/"),
        (picture, "cat.png", "image/png", len(PNG), f"/attachments/{picture}/"),
    ]
    completed, _ = await socket.recv_until("run.completed")
    # The text file reached the model inline, fenced and named; the image as an image part.
    prompt = "What do you make of these?\n\nAttached file notes.md:\n```\n# Notes\nbuy milk\n```"
    assert completed["message"]["content"] == expected_answer(prompt, images=1)
    message = await Message.objects.aget(id=created["message"]["id"])
    assert {str(i) async for i in Attachment.objects.filter(message=message).values_list("id", flat=True)} == {notes, picture}
    # A reload shows them with the message.
    await socket.close()
    again = await sockets.open(alice, conversation)
    shown = next(m for m in again.ready["messages"] if m["id"] == created["message"]["id"])
    assert shown["attachments"] == created["message"]["attachments"]
    assert all(m["attachments"] == [] for m in again.ready["messages"] if m["role"] != "user")


async def test_a_message_of_attachments_only_needs_no_text(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    picture = await uploaded(alice, conversation, "cat.png", PNG)
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("   ", "c-1", [picture]))
    created = await socket.recv()
    assert created["type"] == "message.created" and created["message"]["content"] == ""
    completed, _ = await socket.recv_until("run.completed")
    assert completed["message"]["content"].startswith("I see 1 image. ")


async def test_a_resend_finds_the_stored_message_with_its_attachments(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    notes = await uploaded(alice, conversation, "notes.txt", b"hello")
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("once", "same", [notes]))
    first = await socket.recv()
    await socket.recv_until("run.completed")
    await socket.send(with_attachments("once", "same", [notes]))
    again = await socket.recv()
    assert again["type"] == "message.created" and again["message"]["id"] == first["message"]["id"]
    assert again["message"]["attachments"] == first["message"]["attachments"]
    assert await AgentRun.objects.filter(conversation=conversation).acount() == 1


async def test_an_attachment_already_sent_is_refused_and_nothing_is_stored(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    notes = await uploaded(alice, conversation, "notes.txt", b"hello")
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("first", "c-1", [notes]))
    await socket.recv_until("run.completed")
    await socket.send(with_attachments("second", "c-2", [notes]))
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "not_found", "c-2")
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1
    assert await AgentRun.objects.filter(conversation=conversation).acount() == 1


@pytest.mark.parametrize("whose", ["another user's", "another conversation's", "a made-up"])
async def test_an_attachment_not_the_senders_unsent_upload_here_is_refused(alice, bob, sockets, whose):
    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    mine = await uploaded(alice, conversation, "mine.txt", b"mine")
    if whose == "another user's":  # even one in this conversation (no page lets bob upload here)
        other = await uploaded(bob, conversation, "bob.txt", b"bob's")
    elif whose == "another conversation's":
        other = await uploaded(alice, await Conversation.objects.acreate(owner=alice, model=MODEL), "elsewhere.txt", b"x")
    else:
        other = "00000000-0000-4000-8000-000000000000"
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("take these", "c-1", [mine, other]))
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "not_found", "c-1")
    await nothing_stored(conversation, [mine, other])
    # The refused send left the user's own upload unsent, ready for the next try.
    await socket.send(with_attachments("take this", "c-2", [mine]))
    assert (await socket.recv())["type"] == "message.created"


async def test_an_image_for_a_model_that_reads_none_is_refused_and_nothing_is_stored(alice, sockets):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:images=no,tps=200,words=5")
    picture = await uploaded(alice, conversation, "cat.png", PNG)
    notes = await uploaded(alice, conversation, "notes.txt", b"hello")
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("look", "c-1", [notes, picture]))
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "c-1")
    assert error["message"] == "test:images=no,tps=200,words=5 does not accept images"
    await nothing_stored(conversation, [notes, picture])
    # Text files it reads.
    await socket.send(with_attachments("read this", "c-2", [notes]))
    assert (await socket.recv())["type"] == "message.created"


@pytest.mark.parametrize("attachments", ["not-a-list", [1, 2], [""], ["x" * 65]])
async def test_a_malformed_attachments_field_is_a_bad_request(alice, conversation, sockets, attachments):
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("hello", "c-1", attachments))
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "c-1")
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_too_many_attachments_are_refused(alice, sockets, settings):
    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    ids = [await uploaded(alice, conversation, f"{n}.txt", b"x") for n in range(2)]
    settings.NOUS_ATTACHMENTS_PER_MESSAGE = 1
    socket = await sockets.open(alice, conversation)
    await socket.send(with_attachments("both", "c-1", ids))
    error = await socket.recv()
    assert (error["code"], error["ref"]) == ("bad_request", "c-1")
    await nothing_stored(conversation, ids)


async def test_rooms_refuse_attachments(alice):
    room = await sync_to_async(create_room)(alice, "Files", model=MODEL)
    socket, connected, _ = await open_socket(alice, f"/ws/rooms/{room.slug}/")
    try:
        assert connected and (await socket.recv())["type"] == "session.ready"
        await socket.send(with_attachments("a file", "c-1", ["00000000-0000-4000-8000-000000000000"]))
        error = await socket.recv()
        assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "c-1")
        assert await Message.objects.filter(conversation_id=room.conversation_id, role="user").acount() == 0
    finally:
        await socket.close()
