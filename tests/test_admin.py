"""The admin: fixed query counts however long a conversation is, and live actions on runs that
reach the sockets through the same code as run.stop and the watchdog."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import AgentRun, Conversation, Message
from tests.chat_helpers import deltas_text, send_frame


def conversation_with(owner, n: int) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=f"{n} messages")
    Message.objects.bulk_create(
        [Message(conversation=conversation, role="user" if i % 2 == 0 else "assistant", content=f"m{i}", author=owner)
         for i in range(n)], batch_size=1000)
    return conversation


def queries_of(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.django_db
def test_every_admin_page_runs_the_same_queries_for_5_and_5000_messages(admin_client, alice):
    short, long = conversation_with(alice, 5), conversation_with(alice, 5000)
    for conversation in (short, long):
        message = Message.objects.filter(conversation=conversation).first()
        AgentRun.objects.create(conversation=conversation, trigger_message=message, model="test:", status="completed")
    counts = {}
    for conversation in (short, long, short):  # the first round warms Django's caches (content types)
        run = AgentRun.objects.get(conversation=conversation)
        counts[conversation.title] = [
            queries_of(admin_client, "/admin/chat/conversation/"),
            queries_of(admin_client, f"/admin/chat/conversation/{conversation.id}/change/"),
            queries_of(admin_client, f"/admin/chat/message/?conversation__id__exact={conversation.id}"),
            queries_of(admin_client, "/admin/chat/agentrun/"),
            queries_of(admin_client, f"/admin/chat/agentrun/{run.id}/change/"),
        ]
    assert counts["5 messages"] == counts["5000 messages"], counts
    page = admin_client.get("/admin/chat/conversation/").content.decode()
    assert ">5000<" in page and ">5<" in page  # the message counts


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("runs")
@pytest.mark.parametrize("action, ends_as", [("stop_selected", "run.stopped"), ("fail_selected", "run.failed")])
async def test_the_admins_run_actions_reach_the_page(admin_client, alice, sockets, action, ends_as):
    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=20,words=300")
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("a long answer, please"))
    delta, _ = await socket.recv_until("run.delta")
    r = await sync_to_async(admin_client.post)("/admin/chat/agentrun/", {"action": action, "_selected_action": [delta["run_id"]]})
    assert r.status_code == 302
    ended, _ = await socket.recv_until(ends_as, timeout=10)
    run = await AgentRun.objects.select_related("message").aget(id=delta["run_id"])
    assert run.status == ends_as.split(".")[1] and run.message.content == deltas_text(socket.frames)
    if ends_as == "run.failed":
        assert "operator" in ended["error"]["message"]
    else:  # the worker ended it, and stored when its first token went out
        assert run.first_token_at is not None and 0 <= run.time_to_first_token_secs < 30
