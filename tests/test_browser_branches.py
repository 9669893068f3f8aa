"""Branches in a real browser (headless Chromium, real uvicorn, real runs): regenerate shows
`< 2/2 >`, the arrows switch branches, a reload stays on the chosen one, Edit starts a new branch."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message
from tests.browser_support import browser_page, close_thread_connections, log_in, text_of  # noqa: F401 (fixtures)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def test_regenerate_switch_reload_and_edit(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=200,words=12")
    await log_in(page, "alice", f"/chat/{conversation.id}/")
    await expect(page.locator("#status")).to_contain_text("Connected")
    await page.fill("#input", "What is a branch?")
    await page.press("#input", "Enter")
    answer = page.locator('.message[data-role="assistant"]')
    await expect(answer).to_have_attribute("data-status", "complete")
    first_text = await text_of(answer)
    await expect(answer.locator(".branch-nav")).to_be_hidden()  # no siblings yet

    # Regenerate: a second answer beside the first, shown as 2/2 (the test model answers a prompt
    # the same way each time: a shorter answer tells the two apart).
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=200,words=7")
    await answer.locator(".regenerate").click()
    await expect(answer.locator(".branch-label")).to_have_text("2/2")
    await expect(answer).to_have_attribute("data-status", "complete")
    second_text = await text_of(answer)
    assert await answer.get_attribute("data-id") != str((await Message.objects.filter(role="assistant").afirst()).id)
    await expect(answer.locator(".branch-next")).to_be_disabled()
    await expect(page.locator('.message[data-role="user"]')).to_have_count(1)

    # Back to 1/2: the old answer; a reload stays there.
    await answer.get_by_label("Previous version").click()
    await expect(answer.locator(".branch-label")).to_have_text("1/2")
    assert await text_of(answer) == first_text != second_text
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(answer.locator(".branch-label")).to_have_text("1/2")
    assert await text_of(answer) == first_text

    # Edit the question: a new branch from it, its controls waiting while the answer streams.
    await Conversation.objects.filter(id=conversation.id).aupdate(model="test:tps=20,words=60")
    question = page.locator('.message[data-role="user"]')
    await question.get_by_label("Edit this message").click()
    await question.locator(".edit-box textarea").fill("What is a tree?")
    await question.locator(".edit-save").click()
    await expect(question.locator(".content")).to_have_text("What is a tree?")
    await expect(question.locator(".branch-label")).to_have_text("2/2")
    await expect(answer).to_have_attribute("data-status", "streaming")
    await expect(question.get_by_label("Previous version")).to_be_disabled()
    await expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    await expect(question.get_by_label("Previous version")).to_be_enabled()
    await expect(answer.locator(".branch-nav")).to_be_hidden()  # the new question's only answer
    await question.get_by_label("Previous version").click()
    await expect(question.locator(".content")).to_have_text("What is a branch?")
    # The branch through the old question goes down to the newest answer under it.
    await expect(answer.locator(".branch-label")).to_have_text("2/2")
    assert await text_of(answer) == second_text
    assert page.problems == []
