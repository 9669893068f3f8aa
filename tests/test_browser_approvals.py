"""Approval cards in a real browser (headless Chromium) against a real uvicorn on the test database.

A tool call that waits for the owner shows a card (its name, its arguments, a countdown) in every
tab, again after a reload; Approve lets the run go on to its answer, Reject with a reason lets it
answer without the tool; in a room the other members see the card without buttons to press. Then
the card code against a scripted server: no card twice, the countdown to "expired", a refusal shown
in the card, markup in arguments kept as text.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.models import Conversation, Message, ToolApproval
from rooms.models import create_room
from tests.browser_support import (
    Contexts,
    ScriptedSocket,
    close_thread_connections,  # noqa: F401 (a fixture)
    log_in,
    watch,
)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

# The test model calls the calculator with the prompt's arithmetic, then answers.
MODEL = "test:tools=calculator,tps=30,words=20"
SCREENSHOT = Path("/tmp/nous-approval.png")
SCREENSHOT_ROOM = Path("/tmp/nous-approval-room.png")
COUNTDOWN = re.compile(r"^expires in \d+:\d\d$")


@pytest.fixture
async def browser(live_uvicorn):
    """`await browser.context(user)`: a browser context (its own cookies) logged in as `user`;
    `await browser.page(context, path)`: a tab of it. Uncaught errors and dialogs collect in
    `page.problems`."""
    class Browser(Contexts):
        async def context(self, username: str):
            context = await self.new_context()
            page = await self.page(context, None)
            await log_in(page, username)
            await page.close()
            return context

        async def page(self, context, path: str | None, before=None):
            page = watch(await context.new_page())
            if before is not None:
                await before(page)
            if path is not None:
                await page.goto(path)
            return page

    async with Browser.launched(live_uvicorn.url) as opener:
        yield opener


async def connected(page) -> None:
    from playwright.async_api import expect

    await expect(page.locator("#status")).to_contain_text("Connected")


async def expect_card(page, tool_call_id: str | None = None):
    """The one approval card of the page: the calculator with the prompt's arithmetic, counting down."""
    from playwright.async_api import expect

    cards = page.locator(".approval-card")
    await expect(cards).to_have_count(1)
    card = cards.first
    await expect(card.locator(".tool-name")).to_have_text("calculator")
    assert json.loads(await card.locator("pre").text_content()) == {"expression": "6 * 7"}
    await expect(card.locator(".approval-countdown")).to_have_text(COUNTDOWN)
    if tool_call_id is not None:
        await expect(card).to_have_attribute("data-tool-call-id", tool_call_id)
    # Under the streaming answer.
    await expect(page.locator('.message[data-role="assistant"] .approval-card')).to_have_count(1)
    return card


async def guarded_conversation(alice) -> Conversation:
    return await Conversation.objects.acreate(owner=alice, model=MODEL, approval_tools=["calculator"])


async def test_approve_in_one_tab_of_two_after_a_reload(browser, alice):
    from playwright.async_api import expect

    conversation = await guarded_conversation(alice)
    path = f"/chat/{conversation.id}/"
    started = time.monotonic()
    context = await browser.context("alice")
    first = await browser.page(context, path)
    second = await browser.page(context, path)
    await connected(first)
    await connected(second)

    await first.fill("#input", "what is 6 * 7")
    await first.press("#input", "Enter")
    card = await expect_card(first)
    tool_call_id = await card.get_attribute("data-tool-call-id")
    approval = await ToolApproval.objects.aget(tool_call_id=tool_call_id)
    assert approval.status == "pending"
    await expect_card(second, tool_call_id)  # the other tab shows it too
    await expect(card.locator(".approve")).to_be_enabled()
    await expect(card.locator(".reject")).to_be_enabled()
    # The countdown moves every second.
    shown = await card.locator(".approval-countdown").text_content()
    await expect(card.locator(".approval-countdown")).not_to_have_text(shown, timeout=2500)

    # A reload: the card comes back once (from the run's events and the pending list alike).
    await first.reload()
    await connected(first)
    card = await expect_card(first, tool_call_id)
    await expect(first.locator('.message[data-role="assistant"]')).to_have_attribute("data-status", "streaming")
    await first.screenshot(path=str(SCREENSHOT))

    await card.locator(".approve").click()
    for page in (first, second):
        await expect(page.locator(".approval-card")).to_have_count(0)
    answers = [page.locator('.message[data-role="assistant"]').last for page in (first, second)]
    for answer in answers:
        await expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    stored = await Message.objects.filter(conversation=conversation, role="assistant").alast()
    assert "42" in stored.content
    for answer in answers:
        assert await answer.locator(".content").text_content() == stored.content
    approval = await ToolApproval.objects.aget(tool_call_id=tool_call_id)
    assert approval.status == "approved" and approval.decided_by_id == alice.id
    # The tool's bubble shows the result.
    await expect(first.locator('.message[data-role="tool"] .content')).to_contain_text("42")
    assert first.problems == [] and second.problems == []
    assert time.monotonic() - started < 60


async def test_reject_with_a_reason(browser, alice):
    from playwright.async_api import expect

    conversation = await guarded_conversation(alice)
    context = await browser.context("alice")
    page = await browser.page(context, f"/chat/{conversation.id}/")
    await connected(page)
    await page.fill("#input", "what is 6 * 7")
    await page.press("#input", "Enter")
    card = await expect_card(page)
    tool_call_id = await card.get_attribute("data-tool-call-id")
    await card.locator(".reason").fill("no maths today")
    await card.locator(".reject").click()
    await expect(page.locator(".approval-card")).to_have_count(0)
    answer = page.locator('.message[data-role="assistant"]').last
    await expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    stored = await Message.objects.filter(conversation=conversation, role="assistant").alast()
    assert "42" not in stored.content
    assert await answer.locator(".content").text_content() == stored.content
    approval = await ToolApproval.objects.aget(tool_call_id=tool_call_id)
    assert approval.status == "rejected" and approval.reason == "no maths today"
    await expect(page.locator('.message[data-role="tool"] .content')).to_contain_text("Rejected by the user: no maths today")
    await expect(page.locator("#input")).to_be_enabled()
    assert page.problems == []


async def test_in_a_room_only_the_owner_decides(browser, alice, bob):
    from playwright.async_api import expect

    room = await sync_to_async(create_room)(alice, "Guarded room", model=MODEL)
    await Conversation.objects.filter(id=room.conversation_id).aupdate(approval_tools=["calculator"])
    path = f"/rooms/{room.slug}/"
    a = await browser.page(await browser.context("alice"), path)
    await connected(a)
    b = await browser.page(await browser.context("bob"), path)
    await connected(b)

    await a.fill("#composer", "@ai what is 6 * 7")
    await a.press("#composer", "Enter")
    mine = await expect_card(a)
    tool_call_id = await mine.get_attribute("data-tool-call-id")
    theirs = await expect_card(b, tool_call_id)
    await expect(mine.locator(".approve")).to_be_enabled()
    await expect(theirs.locator(".approve")).to_be_disabled()
    await expect(theirs.locator(".reject")).to_be_disabled()
    await expect(theirs.locator(".approval-note")).to_have_text("Waiting for alice to approve")
    await expect(mine.locator(".approval-note")).to_be_hidden()
    await b.screenshot(path=str(SCREENSHOT_ROOM))

    # Bob reloads: still there, still not his to decide.
    await b.reload()
    await connected(b)
    theirs = await expect_card(b, tool_call_id)
    await expect(theirs.locator(".approve")).to_be_disabled()

    await mine.locator(".approve").click()
    for page in (a, b):
        await expect(page.locator(".approval-card")).to_have_count(0)
    answers = [page.locator('.message[data-role="assistant"]').last for page in (a, b)]
    for answer in answers:
        await expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    stored = await Message.objects.filter(conversation_id=room.conversation_id, role="assistant").alast()
    assert "42" in stored.content
    for answer in answers:
        assert await answer.locator(".content").text_content() == stored.content
    assert a.problems == [] and b.problems == []


# --- the card code against a scripted server --------------------------------------------------

def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_the_card_code(browser, alice):
    from playwright.async_api import expect

    conversation = await guarded_conversation(alice)
    conversation_dict = await sync_to_async(conversation.to_dict)()
    server = ScriptedSocket()
    page = await browser.page(await browser.context("alice"), f"/chat/{conversation.id}/", before=server.install)
    await server.connected()
    soon = timezone.now() + timedelta(seconds=3)
    later = timezone.now() + timedelta(minutes=4, seconds=33)
    markup = {"expression": "<img src=x onerror=alert(1)>", "nested": {"n": 1}}
    call = {"id": "call-1", "name": "calculator", "arguments": {"expression": "1 + 1"}, "needs_approval": True}
    third = {"id": "call-3", "name": "calculator", "arguments": {"expression": "2 + 2"}, "needs_approval": True}
    other = {"id": "call-2", "name": "<b>odd</b>", "arguments": markup, "needs_approval": True}
    events = [
        {"type": "run.tool_call", "run_id": "r1", "seq": 1, "tool_call": call},
        {"type": "run.approval_required", "run_id": "r1", "seq": 2, "tool_call": call, "expires_at": iso(soon)},
        {"type": "run.tool_call", "run_id": "r1", "seq": 3, "tool_call": other},
        {"type": "run.approval_required", "run_id": "r1", "seq": 4, "tool_call": other, "expires_at": iso(later)},
    ]
    server.send({"type": "session.ready", "conversation": conversation_dict, "messages": [], "has_more": False,
                 "active_run": {"run_id": "r1", "seq": 4, "content": "", "status": "waiting", "events": events},
                 "pending_approvals": [{"run_id": "r1", "tool_call": call, "expires_at": iso(soon)},
                                       {"run_id": "r1", "tool_call": other, "expires_at": iso(later)},
                                       {"run_id": "r1", "tool_call": third, "expires_at": iso(later)}],
                 "user": {"id": str(alice.id), "username": "alice"}})
    await connected(page)
    cards = page.locator(".approval-card")
    await expect(cards).to_have_count(3)  # each once, though in the events and the pending list
    first, second = page.locator('[data-tool-call-id="call-1"]'), page.locator('[data-tool-call-id="call-2"]')
    # Markup stays text; the arguments are pretty JSON.
    await expect(second.locator(".tool-name")).to_have_text("<b>odd</b>")
    assert await second.locator("pre").text_content() == json.dumps(markup, indent=2)
    assert await page.locator("#messages img, #messages b").count() == 0
    await expect(second.locator(".approval-countdown")).to_have_text(re.compile(r"^expires in 4:3[0-3]$"))

    # A live duplicate of a card shown already changes nothing.
    server.send({"type": "run.approval_required", "run_id": "r1", "seq": 5, "tool_call": call, "expires_at": iso(soon)})
    await page.wait_for_timeout(200)
    await expect(cards).to_have_count(3)

    # The countdown reaches 0: "expired", no buttons.
    await expect(first.locator(".approval-countdown")).to_have_text("expired", timeout=5000)
    await expect(first.locator(".approve")).to_be_disabled()
    await expect(first.locator(".reject")).to_be_disabled()
    await expect(second.locator(".approve")).to_be_enabled()

    # A click disables both buttons until the answer; a refusal re-enables them, shown in the card.
    await second.locator(".reason").fill("not now")
    await second.locator(".reject").click()
    decide = await server.next("tool.decide")
    assert decide["tool_call_id"] == "call-2" and decide["approved"] is False and decide["reason"] == "not now"
    assert decide["client_id"]
    await expect(second.locator(".approve")).to_be_disabled()
    await expect(second.locator(".reject")).to_be_disabled()
    server.send({"type": "error", "code": "internal", "message": "Something <i>broke</i>", "ref": decide["client_id"]})
    await expect(second.locator(".approval-note")).to_have_text("Something <i>broke</i>")
    await expect(second.locator(".approve")).to_be_enabled()
    await expect(page.locator("#error-banner")).to_be_hidden()  # in the card, not the banner
    await second.locator(".approve").click()
    decide = await server.next("tool.decide")
    assert decide["approved"] is True and "reason" not in decide

    # The results: each card goes.
    server.send({"type": "run.tool_result", "run_id": "r1", "seq": 6, "tool_call_id": "call-2", "result": "2", "is_error": False})
    await expect(second).to_have_count(0)
    await expect(cards).to_have_count(2)
    # A reconnect whose pending list no longer has call-3 (decided meanwhile): its card goes; the
    # expired one stays while the run lasts.
    server.send({"type": "session.ready", "conversation": conversation_dict, "messages": [], "has_more": False,
                 "active_run": {"run_id": "r1", "seq": 6, "content": "", "status": "waiting", "events": events[:2]},
                 "pending_approvals": [], "user": {"id": str(alice.id), "username": "alice"}})
    await expect(page.locator('[data-tool-call-id="call-3"]')).to_have_count(0)
    await expect(cards).to_have_count(1)
    await expect(first.locator(".approval-countdown")).to_have_text("expired")
    # The run ends: no card is left.
    server.send({"type": "run.stopped", "run_id": "r1", "message": {
        "id": "7", "role": "assistant", "content": "", "author": "assistant", "created_at": iso(timezone.now()),
        "client_id": None, "status": "stopped", "usage": None, "run_id": "r1"}})
    await expect(cards).to_have_count(0)
    assert page.problems == []
