"""The chat page in a real browser: the fallback models setting, "answered by" and the trimmed-history note, live and after a reload."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message
from tests.browser_support import (
    browser_page,  # noqa: F401 (the fixture `page`)
    close_thread_connections,  # noqa: F401 (a fixture)
    log_in,
)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

FAILING = "test:fail=provider_error,window=800"
FALLBACK = "test:words=12,tps=40,window=800"


async def test_the_page_says_which_model_answered_and_what_was_left_out(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=FAILING)
    for n in range(8):  # more history than the 800-token window holds
        await Message.objects.acreate(conversation=conversation, role="user", author=alice,
                                      content=f"question {n}: " + "tell me more about streaming answers " * 4)
        await Message.objects.acreate(conversation=conversation, role="assistant", content=f"answer {n}: " + "they stream word by word " * 5)
    await log_in(page, "alice", f"/chat/{conversation.id}/")
    await expect(page.locator("#status")).to_contain_text("Connected")

    # The fallback models field: one model a line, saved with the other settings.
    await page.click("#settings-panel summary")
    await expect(page.locator("#settings-fallback-models")).to_have_value("")
    await page.fill("#settings-fallback-models", f"{FALLBACK}\n")
    await page.click("#settings-save")
    await expect(page.locator("#settings-note")).to_contain_text("Saved")
    assert (await Conversation.objects.aget(id=conversation.id)).fallback_models == [FALLBACK]
    await page.click("#settings-panel summary")

    await page.fill("#input", "and now?")
    await page.press("#input", "Enter")
    await expect(page.locator('.message[data-role="assistant"]')).to_have_count(9)
    answer = page.locator('.message[data-role="assistant"]').last
    await expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    stored = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    left_out = stored.provenance["trimmed_messages"]
    assert stored.provenance["fallback_model"] == FALLBACK and left_out > 0
    notes = answer.locator(".answer-note")
    await expect(notes).to_have_text([f"answered by {FALLBACK}", f"{left_out} older messages were left out of the model's context"])
    # The older answers came from the first model with nothing left out: no notes.
    assert await page.locator('.message[data-role="assistant"] .answer-note').count() == 2

    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(page.locator('.message[data-role="assistant"]').last.locator(".answer-note")).to_have_text(
        [f"answered by {FALLBACK}", f"{left_out} older messages were left out of the model's context"])
    await expect(page.locator("#settings-fallback-models")).to_have_value(FALLBACK)
    assert page.problems == []
