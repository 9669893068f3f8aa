"""Attachments in a real browser (headless Chromium) against a real uvicorn: attach a text file
and an image, send, see both in the bubble, still there after a reload; a refused upload says why."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import Attachment, Conversation, Message
from tests.attachment_files import ELF, png
from tests.browser_support import (
    browser_page,  # noqa: F401 (the fixture `page`)
    close_thread_connections,  # noqa: F401 (a fixture)
    log_in,
)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


@sync_to_async
def stored_attachments(conversation) -> list[tuple[str, str, int | None]]:
    return [(a.name, a.content_type, a.message_id) for a in Attachment.objects.filter(conversation=conversation).order_by("name")]


async def wait_until(read, wanted, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := await read()) != wanted:
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.05)


async def expect_files_in(bubble, expect) -> None:
    await expect(bubble.locator(".attachments a")).to_have_count(2)
    image = bubble.locator(".attachment-image img")
    await expect(image).to_have_attribute("alt", "cat.png")
    # The thumbnail really loads from the download URL (decode() rejects a broken image).
    assert await image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 2
    text_file = bubble.locator(".attachment-file")
    await expect(text_file.locator(".attachment-name")).to_have_text("notes <img src=x onerror=alert(1)>.md")
    await expect(text_file.locator(".attachment-size")).to_have_text("23 B")


async def test_attach_a_text_file_and_an_image_send_and_reload(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=100,words=8")
    await log_in(page, "alice", f"/chat/{conversation.id}/")
    await expect(page.locator("#status")).to_contain_text("Connected")

    # A refused upload says why beside the composer, shows no chip and stores nothing.
    await page.set_input_files("#attach-input", files=[{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": ELF}])
    await expect(page.locator("#attach-error")).to_contain_text("tool.exe")
    await expect(page.locator(".attachment-chip")).to_have_count(0)
    assert await stored_attachments(conversation) == []

    # The name is markup-looking on purpose: it must show as text.
    await page.set_input_files("#attach-input", files=[
        {"name": "notes <img src=x onerror=alert(1)>.md", "mimeType": "text/markdown", "buffer": b"# Shopping\n- milk\n- tea"},
        {"name": "cat.png", "mimeType": "image/png", "buffer": PNG_2x2},
    ])
    await expect(page.locator('.attachment-chip[data-state="ready"]')).to_have_count(2)
    await expect(page.locator("#attach-error")).to_be_hidden()
    await page.fill("#input", "What is on my list?")
    await page.press("#input", "Enter")

    bubble = page.locator('.message[data-role="user"]')
    await expect(bubble).to_have_count(1)
    await expect(page.locator(".attachment-chip")).to_have_count(0)
    await expect_files_in(bubble, expect)
    answer = page.locator('.message[data-role="assistant"]')
    await expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    await expect(answer.locator(".content")).to_contain_text("I see 1 image.")
    message = await Message.objects.aget(conversation=conversation, role="user")
    assert sorted(await stored_attachments(conversation)) == [("cat.png", "image/png", message.id),
                                                             ("notes <img src=x onerror=alert(1)>.md", "text/plain", message.id)]
    assert await page.locator(".message img").count() == 1  # the thumbnail; the name stayed text

    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect_files_in(page.locator('.message[data-role="user"]'), expect)
    assert page.problems == []


async def test_a_chip_removed_before_sending_is_not_sent(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=100,words=8")
    await log_in(page, "alice", f"/chat/{conversation.id}/")
    await expect(page.locator("#status")).to_contain_text("Connected")
    await page.set_input_files("#attach-input", files=[{"name": "a.txt", "mimeType": "text/plain", "buffer": b"aaa"}])
    await expect(page.locator('.attachment-chip[data-state="ready"]')).to_have_count(1)
    await page.click(".attachment-chip-remove")
    await expect(page.locator(".attachment-chip")).to_have_count(0)
    await page.fill("#input", "no files")
    await page.press("#input", "Enter")
    await expect(page.locator('.message[data-role="assistant"]')).to_have_attribute("data-status", "complete", timeout=20_000)
    await expect(page.locator(".message .attachments a")).to_have_count(0)
    # The removed upload was deleted on the server too.
    await wait_until(lambda: stored_attachments(conversation), [])
    assert page.problems == []


PNG_2x2 = png(2, 2)
