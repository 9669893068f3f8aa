"""A search result in a real browser: the linked message is in an old history page; the chat page
loads older pages until it has it, scrolls to it and highlights it."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message
from tests.browser_support import browser_page, close_thread_connections, log_in  # noqa: F401 (fixtures)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


async def test_a_result_opens_its_message_scrolled_to_and_highlighted(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=200,words=10", title="A long one")
    await Message.objects.abulk_create([
        Message(conversation=conversation, role="user", author=alice,
                content="the word to find is quetzal" if i == 7 else f"message {i}")
        for i in range(120)
    ])
    target = await Message.objects.aget(conversation=conversation, content__contains="quetzal")

    # From the list page's search box to the result.
    await log_in(page, "alice", "/chat/")
    await page.fill("#search-q", "quetzal")
    await page.press("#search-q", "Enter")
    await page.wait_for_url("**/chat/search/?q=quetzal")
    result = page.locator(".search-result-link")
    await expect(result).to_have_count(1)
    await expect(result.locator("mark")).to_have_text("quetzal")
    await result.click()
    await page.wait_for_url(f"**/chat/{conversation.id}/?message={target.id}#message-{target.id}")

    # Message 7 is in the third page of 50 (newest first): two pages were loaded to reach it.
    message = page.locator(f'.message[data-id="{target.id}"]')
    await expect(message).to_have_class("message highlighted")
    await expect(message).to_be_in_viewport()
    await expect(page.locator(".message")).to_have_count(120)
    await expect(page.locator(".message.highlighted")).to_have_count(1)
    # It stays there: nothing scrolls back to the bottom afterwards.
    await page.wait_for_timeout(500)
    await expect(message).to_be_in_viewport()
    await expect(page.locator(".message .content").last).not_to_be_in_viewport()

    # A link to a message that is not in this conversation gives up at its start, quietly.
    await page.goto(f"/chat/{conversation.id}/?message=999999999")
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(page.locator(".message")).to_have_count(50)
    first = await Message.objects.filter(conversation=conversation).order_by("id").afirst()
    await page.goto(f"/chat/{conversation.id}/?message={first.id - 1}")
    await expect(page.locator(".message")).to_have_count(120)
    await expect(page.locator(".message.highlighted")).to_have_count(0)
    await expect(page.locator("#load-older")).to_be_hidden()
    assert page.problems == []
