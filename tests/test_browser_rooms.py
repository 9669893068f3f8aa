"""The room page in real browsers (headless Chromium) against a real uvicorn on the test database.

Two people in one open room, each in their own browser context: presence, the typing line, a
message from one reaching the other, an AI answer streaming to both, and leaving. Then the page's
code against a scripted server (Playwright's websocket routing): every room frame of PROTOCOL.md
in, every client frame out.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from rooms.models import create_room
from tests.browser_support import (
    Contexts,
    ScriptedSocket,
    assert_grows,
    close_thread_connections,  # noqa: F401 (a fixture)
    log_in,
    text_of,
    wait_for_text,
    watch,
)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

MODEL = "test:tps=30,words=120"  # about 4 s of streaming: slow enough to watch it grow
SCREENSHOT = Path("/tmp/nous-room.png")


@pytest.fixture
async def browser(live_uvicorn):
    """`await browser.page(user)`: a page in a fresh context (its own cookies) logged in as `user`.
    Uncaught errors collect in `page.problems`; confirm() dialogs are accepted."""
    class Browser(Contexts):
        async def page(self, username: str, next_path: str, before=None):
            page = watch(await (await self.new_context()).new_page(), accept_dialogs=True)
            if before is not None:
                await before(page)
            await log_in(page, username, next_path)
            return page

    async with Browser.launched(live_uvicorn.url) as opener:
        yield opener


async def test_two_people_in_a_room(browser, alice, bob):
    from playwright.async_api import expect

    room = await sync_to_async(create_room)(alice, "Book club", model=MODEL)
    path = f"/rooms/{room.slug}/"
    started = time.monotonic()
    a = await browser.page("alice", path)
    await expect(a.locator("#status")).to_contain_text("Connected")
    b = await browser.page("bob", path)
    await expect(b.locator("#status")).to_contain_text("Connected")
    await expect(a.locator("#ai-toggle")).to_be_visible()
    await expect(b.locator("#ai-toggle")).to_be_hidden()

    # Presence: each sees both.
    for page in (a, b):
        await expect(page.locator("#participants li")).to_have_count(2)
        await expect(page.locator("#participants")).to_contain_text("alice")
        await expect(page.locator("#participants")).to_contain_text("bob")

    # Typing: bob sees alice typing, alice never sees herself; sending ends it.
    await a.locator("#composer").press_sequentially("hello bo", delay=40)
    await expect(b.locator("#typing-line")).to_have_text("alice is typing…")
    await expect(a.locator("#typing-line")).to_have_text("")
    await a.locator("#composer").press_sequentially("b", delay=40)
    await a.press("#composer", "Enter")
    mine = b.locator('.message[data-role="user"]').last
    await expect(mine.locator(".content")).to_have_text("hello bob")
    await expect(mine.locator(".author")).to_have_text("alice")
    await expect(b.locator("#typing-line")).to_have_text("")
    await expect(a.locator("#composer")).to_have_value("")
    await expect(a.locator('.message[data-mine="true"] .edit')).to_be_visible()
    await expect(b.locator('.message[data-role="user"] .edit')).to_be_hidden()

    # And the other way round.
    await b.locator("#composer").press_sequentially("hi", delay=40)
    await expect(a.locator("#typing-line")).to_have_text("bob is typing…")
    await expect(b.locator("#typing-line")).to_have_text("")
    await b.fill("#composer", "")
    await expect(a.locator("#typing-line")).to_have_text("")

    # An AI answer streams to both and ends with the same, stored, text.
    await a.fill("#composer", "@ai hello")
    await a.press("#composer", "Enter")
    answers = [page.locator('.message[data-role="assistant"]').last for page in (a, b)]
    for answer in answers:
        await expect(answer).to_have_attribute("data-status", "streaming")
        await expect(answer.locator(".author")).to_have_text(room.ai_name)
    await wait_for_text(answers[1], 20)
    await assert_grows(answers[0], pause=0.5)
    await assert_grows(answers[1], pause=0.5)
    # Bob reloads in the middle: the text so far comes back (resumed by seq) and the end is the same.
    before_reload = await text_of(answers[1])
    await b.reload()
    await expect(b.locator("#status")).to_contain_text("Connected")
    assert (await text_of(answers[1])).startswith(before_reload)
    for answer in answers:
        await expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    texts = [await text_of(answer) for answer in answers]
    stored = await Message.objects.filter(conversation_id=room.conversation_id, role="assistant").alast()
    assert texts[0] == texts[1] == stored.content and len(stored.content.split()) == 120
    for answer in answers:
        assert await answer.get_attribute("data-id") == str(stored.id)
        assert await answer.get_attribute("data-resynced") is None
    await expect(a.locator("#stop")).to_be_hidden()

    await a.screenshot(path=str(SCREENSHOT))

    # Edit and delete one's own message: the other sees both.
    hello = a.locator('.message[data-mine="true"]').first
    await hello.locator(".edit").click()
    await hello.locator(".edit-input").fill("hello bob, edited")
    await hello.locator(".save").click()
    await expect(b.locator('.message[data-role="user"] .content').first).to_have_text("hello bob, edited")
    await expect(hello.locator(".content")).to_have_text("hello bob, edited")
    await hello.locator(".delete").click()
    await expect(b.locator('.message[data-role="user"]')).to_have_count(1)
    await expect(a.locator('.message[data-role="user"]')).to_have_count(1)
    assert a.dialogs == ["Delete this message?"]

    # The owner switches the AI off: nobody's @ai is answered; on again, bob asks and stops it.
    await a.click("#ai-toggle")
    await expect(b.locator("#ai-state")).to_contain_text("off")
    await b.fill("#composer", "@ai are you there?")
    await b.press("#composer", "Enter")
    await expect(a.locator('.message[data-role="user"]').last.locator(".content")).to_have_text("@ai are you there?")
    await asyncio.sleep(1.0)
    assert await a.locator('.message[data-role="assistant"]').count() == 1
    await a.click("#ai-toggle")
    await expect(b.locator("#ai-state")).not_to_contain_text("off")
    await b.fill("#composer", "@ai tell me more")
    await b.press("#composer", "Enter")
    answers = [page.locator('.message[data-role="assistant"]').nth(1) for page in (a, b)]
    await wait_for_text(answers[0], 20)
    await b.click("#stop")
    for answer in answers:
        await expect(answer).to_have_attribute("data-status", "stopped")
    texts = [await text_of(answer) for answer in answers]
    stored = await Message.objects.filter(conversation_id=room.conversation_id, role="assistant").alast()
    assert stored.status == "stopped" and texts[0] == texts[1] == stored.content
    assert 3 < len(stored.content.split()) < 120

    # Bob leaves: alice's list follows.
    await b.context.close()
    await expect(a.locator("#participants li")).to_have_count(1)
    await expect(a.locator("#participants")).to_have_text("alice")
    assert a.problems == [] and b.problems == []
    assert time.monotonic() - started < 90


# --- the page's code against a scripted server ------------------------------------------------

class ScriptedRoom(ScriptedSocket):
    """Stands in for the room socket: records what the page sends, sends what the test says."""

    pattern = "**/ws/rooms/**"


def message(id: int, author: str, content: str, role: str = "user", **extra) -> dict:
    return {"id": str(id), "role": role, "content": content, "author": author if role == "user" else role,
            "created_at": "2026-01-01T10:00:00Z", "client_id": None, "status": "complete", "usage": None,
            "run_id": None, **extra}


async def test_the_room_page_code(browser, alice, bob):
    from playwright.async_api import expect

    room = await sync_to_async(create_room)(alice, "<b>Scripted</b>", model=MODEL)
    room_dict = await sync_to_async(lambda: room.to_dict())()
    server = ScriptedRoom()
    page = await browser.page("alice", f"/rooms/{room.slug}/", before=server.install)
    await server.connected()
    await expect(page.locator("#room-title")).to_have_text("<b>Scripted</b>")
    server.send({"type": "session.ready", "room": room_dict, "has_more": True, "active_run": None,
                 "pending_approvals": [], "participants": ["alice", "bob"], "user": {"id": str(alice.id), "username": "alice"},
                 "messages": [message(10, "alice", "mine **bold** <img src=x onerror=alert(1)>"), message(11, "bob", "his"),
                              message(12, "assistant", "an answer", role="assistant", run_id="r0")]})
    await expect(page.locator("#status")).to_have_text("Connected")
    await expect(page.locator("#participants li")).to_have_text(["alice", "bob"])
    rows = page.locator("#messages .message")
    await expect(rows.locator(".author")).to_have_text(["alice", "bob", room.ai_name])
    await expect(rows.nth(0).locator(".content strong")).to_have_text("bold")
    await expect(rows.nth(0).locator(".content")).to_contain_text("<img src=x onerror=alert(1)>")
    assert await page.locator("#messages img").count() == 0
    await expect(rows.nth(0).locator(".edit")).to_be_visible()
    await expect(rows.nth(1).locator(".edit")).to_be_hidden()
    await expect(rows.nth(2).locator(".delete")).to_be_hidden()
    await expect(page.locator("#load-older")).to_be_visible()
    await expect(page.locator("#ai-toggle")).to_be_checked()

    # The typing line: never me, two by name, then "and N others"; presence drops who left.
    line = page.locator("#typing-line")
    for user in ("bob", "alice"):
        server.send({"type": "typing", "user": user, "typing": True})
    await expect(line).to_have_text("bob is typing…")
    server.send({"type": "typing", "user": "carol", "typing": True})
    await expect(line).to_have_text("bob and carol are typing…")
    for user in ("dave", "erin", "frank"):
        server.send({"type": "typing", "user": user, "typing": True})
    await expect(line).to_have_text("bob, carol and 3 others are typing…")
    server.send({"type": "typing", "user": "bob", "typing": False})
    server.send({"type": "presence", "participants": ["alice", "bob", "dave", "erin", "frank"]})
    await expect(line).to_have_text("dave, erin and frank are typing…")
    await expect(page.locator("#participants li")).to_have_count(5)
    server.send({"type": "presence", "participants": ["alice"]})
    await expect(line).to_have_text("")

    # My typing: one `true` however many keys, `false` when cleared.
    await page.locator("#composer").press_sequentially("abcdef", delay=30)
    assert (await server.next("typing"))["typing"] is True
    await asyncio.sleep(0.2)
    assert server.sent("typing") == []
    await page.fill("#composer", "")
    assert (await server.next("typing"))["typing"] is False

    # A refused send keeps the text; an accepted one clears it (and sent typing: false first).
    await page.fill("#composer", "keep me")
    await page.click("#send")
    send = await server.next("message.send")
    assert send["content"] == "keep me" and len(send["client_id"]) == 36
    server.send({"type": "error", "code": "rate_limited", "message": "Slow down", "ref": send["client_id"]})
    await expect(page.locator("#error-banner")).to_contain_text("Slow down")
    await expect(page.locator("#composer")).to_have_value("keep me")
    await page.click("#error-dismiss")
    await expect(page.locator("#error-banner")).to_be_hidden()
    await page.press("#composer", "Enter")
    send = await server.next("message.send")
    server.send({"type": "message.created", "message": message(13, "alice", "keep me", client_id=send["client_id"])})
    await expect(page.locator("#composer")).to_have_value("")
    await expect(rows).to_have_count(4)

    # A run: queued, started, deltas, Stop, stopped.
    server.send({"type": "run.queued", "run_id": "r1", "position": 0})
    server.send({"type": "run.started", "run_id": "r1", "model": MODEL})
    answer = page.locator('.message[data-run-id="r1"]')
    await expect(answer).to_have_attribute("data-status", "streaming")
    await expect(answer.locator(".author")).to_have_text(room.ai_name)
    for seq, text in enumerate(["Once", " upon", " a"], start=1):
        server.send({"type": "run.delta", "run_id": "r1", "seq": seq, "text": text})
    await expect(answer.locator(".content")).to_have_text("Once upon a")
    await expect(page.locator("#stop")).to_be_visible()
    await page.click("#stop")
    assert (await server.next("run.stop"))["run_id"] == "r1"
    stopped = message(14, "assistant", "Once upon a", role="assistant", run_id="r1", status="stopped")
    server.send({"type": "run.stopped", "run_id": "r1", "message": stopped})
    await expect(answer).to_have_attribute("data-status", "stopped")
    await expect(answer).to_have_attribute("data-id", "14")
    await expect(page.locator("#stop")).to_be_hidden()

    # A completed run, streamed to us from its start.
    server.send({"type": "run.started", "run_id": "r2", "model": MODEL})
    server.send({"type": "run.delta", "run_id": "r2", "seq": 1, "text": "Done"})
    server.send({"type": "run.completed", "run_id": "r2", "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
                 "message": message(15, "assistant", "Done", role="assistant", run_id="r2")})
    second = page.locator('.message[data-run-id="r2"]')
    await expect(second).to_have_attribute("data-status", "complete")
    assert await second.get_attribute("data-resynced") is None

    # A run refused by the open breaker says when the provider will be tried again, in local time.
    # It is shown in the failed answer's bubble (static/js/failed.js).
    server.send({"type": "run.started", "run_id": "r3", "model": MODEL})
    server.send({"type": "run.failed", "run_id": "r3", "error": {
        "code": "provider_unavailable", "message": "The anthropic provider is unavailable", "retryable": True,
        "retry_after": 30, "retry_at": "2026-12-03T14:05:30.000+00:00"}})
    await expect(page.locator('.message[data-run-id="r3"] .failure-text')).to_contain_text(
        re.compile(r"The anthropic provider is unavailable; it will be tried again at \d{1,2}:\d\d:30"))

    # Edit: inline, Save sends message.edit; message.updated shows the new text.
    mine = page.locator('.message[data-id="13"]')
    await mine.locator(".edit").click()
    await mine.locator(".edit-input").fill("kept, edited")
    await mine.locator(".save").click()
    edit = await server.next("message.edit")
    assert (edit["id"], edit["content"]) == ("13", "kept, edited")
    server.send({"type": "message.updated", "message": message(13, "alice", "kept, edited")})
    await expect(mine.locator(".content")).to_have_text("kept, edited")
    await expect(mine.locator(".edit-input")).to_have_count(0)
    # Cancel leaves it alone; a refused edit keeps the box open with the error shown.
    await mine.locator(".edit").click()
    await mine.locator(".edit-input").fill("never sent")
    await mine.locator(".cancel").click()
    await expect(mine.locator(".content")).to_have_text("kept, edited")
    await mine.locator(".edit").click()
    await mine.locator(".edit-input").fill("x" * 10)
    await mine.locator(".save").click()
    edit = await server.next("message.edit")
    server.send({"type": "error", "code": "forbidden", "message": "Not yours", "ref": edit["client_id"]})
    await expect(page.locator("#error-banner")).to_contain_text("Not yours")
    await expect(mine.locator(".save")).to_be_enabled()
    await mine.locator(".cancel").click()

    # Delete asks first, then sends message.delete; message.deleted removes it (for anyone's message).
    await mine.locator(".delete").click()
    delete = await server.next("message.delete")
    assert delete["id"] == "13" and page.dialogs == ["Delete this message?"]
    server.send({"type": "message.deleted", "id": "13"})
    await expect(mine).to_have_count(0)
    server.send({"type": "message.deleted", "id": "11"})
    await expect(page.locator('.message[data-id="11"]')).to_have_count(0)

    # The AI switch: ai.toggle, then room.updated is what shows.
    await page.click("#ai-toggle")
    assert (await server.next("ai.toggle"))["active"] is False
    server.send({"type": "room.updated", "room": {**room_dict, "settings": {**room_dict["settings"], "ai_active": False}}})
    await expect(page.locator("#ai-toggle")).not_to_be_checked()
    await expect(page.locator("#ai-toggle")).to_be_enabled()

    # Older messages: history.load before the oldest shown; prepended in order.
    await page.click("#load-older")
    assert (await server.next("history.load"))["before"] == "10"
    server.send({"type": "history", "messages": [message(3, "bob", "old one"), message(4, "alice", "old two")], "has_more": False})
    await expect(rows.first.locator(".content")).to_have_text("old one")
    await expect(rows.nth(1).locator(".content")).to_have_text("old two")
    await expect(page.locator("#load-older")).to_be_hidden()

    # An error of nobody's frame is a dismissable notice; pong is nothing.
    server.send({"type": "pong"})
    server.send({"type": "error", "code": "bad_request", "message": "What was that?", "ref": None})
    await expect(page.locator("#error-banner")).to_contain_text("What was that?")

    # A reconnect in the middle of a run: the snapshot's text, then the live deltas after its seq.
    await server.sockets[-1].close(code=1011)
    await server.connected(2, timeout=10)
    server.send({"type": "session.ready", "room": room_dict, "has_more": False, "pending_approvals": [],
                 "active_run": {"run_id": "r3", "seq": 2, "content": "Hello th", "status": "running"},
                 "participants": ["alice", "bob"], "user": {"id": str(alice.id), "username": "alice"},
                 "messages": [message(10, "alice", "mine"), message(12, "assistant", "an answer", role="assistant")]})
    third = page.locator('.message[data-run-id="r3"]')
    await expect(third.locator(".content")).to_have_text("Hello th")
    server.send({"type": "run.delta", "run_id": "r3", "seq": 2, "text": "DUPLICATE"})
    server.send({"type": "run.delta", "run_id": "r3", "seq": 3, "text": "ere"})
    await expect(third.locator(".content")).to_have_text("Hello there")
    # Shown after the snapshot's first message but absent from it: deleted while we were away.
    await expect(page.locator('.message[data-id="15"]')).to_have_count(0)
    await expect(page.locator('.message[data-id="3"]')).to_have_count(1)

    assert page.problems == []
