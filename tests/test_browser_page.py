"""The chat page as a daily tool, in a real browser (headless Chromium) on a real uvicorn.

Markdown (tables, quotes, strikethrough, bare links, highlighted code with Copy), hostile markdown
staying inert, a failed answer as one bubble with Retry, Escape stopping an answer, the focus coming
back to the composer, dark mode, the provenance details, and the room page's tool lines.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async

from chat.models import AgentRun, Conversation, Message, ShareLink
from rooms.models import create_room
from tests.browser_support import (
    close_thread_connections,  # noqa: F401 (a fixture)
    launch,
    log_in,
    wait_for_text,
    watch,
)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

FAST = "test:tps=200,words=12"
SLOW = "test:tps=15,words=300"

MARKDOWN = "\n".join([
    "| Name | Count |", "| :--- | ---: |", "| apples | 3 |", "| pears | 12 |", "",
    "> a quoted line", "", "this is ~~gone~~ now, see https://example.com/docs for more", "",
    "```python", "def add(a, b):", "    return a + b", "```",
])

# Each hostile input tries its own way in; `window.__pwned` is set by any that gets to run.
HOSTILE = "\n\n".join([
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "[click me](javascript:window.__pwned=3)",
    "[encoded](&#106;avascript:window.__pwned=4) [mixed](JaVaScRiPt:window.__pwned=5)",
    "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![pixel](data:image/png;base64,iVBORw0KGgo=) ![remote](https://example.com/track.png)",
    "<javascript:window.__pwned=6>",
    "```html\n<script>window.__pwned = 7</script><img src=x onerror=\"window.__pwned=8\">\n```",
    '[title](https://example.com "a\\" onmouseover=\\"window.__pwned=9") [t2](https://example.com \'x" onclick="window.__pwned=10\')',
    '<a href="javascript:window.__pwned=11">raw link</a> <svg onload="window.__pwned=12"></svg>',
    '<iframe src="javascript:window.__pwned=13"></iframe> <style>body{display:none}</style>',
])

DOM_REPORT = """() => {
    const all = [...document.querySelectorAll("#message-list *")];
    return {
        pwned: window.__pwned ?? null,
        tags: all.map(e => e.tagName.toLowerCase()).filter(t => ["script", "img", "svg", "iframe", "style", "object", "embed"].includes(t)),
        handlers: all.flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith("on") || n === "style"),
        hrefs: [...document.querySelectorAll("#message-list a")].map(a => a.getAttribute("href")),
        rels: [...document.querySelectorAll("#message-list a[href]")].map(a => a.getAttribute("rel") + "|" + a.getAttribute("target")),
    };
}"""


@pytest.fixture
async def browser(live_uvicorn):
    async with launch() as chromium:
        yield chromium, live_uvicorn.url


async def open_page(browser, username: str, path: str, **context_options):
    chromium, url = browser
    context = await chromium.new_context(viewport={"width": 1200, "height": 800}, base_url=url, **context_options)
    page = watch(await context.new_page())
    await log_in(page, username, path)
    from playwright.async_api import expect

    await expect(page.locator("#status")).to_contain_text("Connected")
    return page


async def send(page, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


async def test_markdown_renders_with_highlighted_code_and_copy(browser, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=FAST)
    page = await open_page(browser, "alice", f"/chat/{conversation.id}/", permissions=["clipboard-read", "clipboard-write"])
    await send(page, MARKDOWN)
    user = page.locator('.message[data-role="user"] .content')
    await expect(user.locator("table tbody tr")).to_have_count(2)
    await expect(user.locator("table th")).to_have_text(["Name", "Count"])
    await expect(user.locator("td.align-right").first).to_have_text("3")
    await expect(user.locator("blockquote")).to_have_text("a quoted line")
    await expect(user.locator("del, s")).to_have_text("gone")
    link = user.locator('a[href="https://example.com/docs"]')
    await expect(link).to_have_text("https://example.com/docs")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(link).to_have_attribute("target", "_blank")
    code = user.locator(".code-block pre code.language-python")
    await expect(code).to_have_text("def add(a, b):\n    return a + b")
    await expect(code.locator(".hljs-keyword").first).to_have_text("def")  # highlighted
    await expect(user.locator(".code-lang")).to_have_text("python")
    copy = user.locator(".code-copy")
    await copy.click()
    await expect(copy).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b"
    await expect(copy).to_have_text("Copy", timeout=5000)
    # Plain http on a LAN address has no clipboard API: the fallback copies all the same.
    await page.evaluate("""() => { navigator.clipboard.writeText("something else");
        Object.defineProperty(window, "isSecureContext", { get: () => false }); }""")
    await copy.click()
    await expect(copy).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b"
    # The answer is markdown too, and ends normally.
    await expect(page.locator('.message[data-role="assistant"]')).to_have_attribute("data-status", "complete")
    assert page.problems == []


async def test_hostile_markdown_is_inert_text(browser, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=FAST)
    page = await open_page(browser, "alice", f"/chat/{conversation.id}/")
    await send(page, HOSTILE)
    user = page.locator('.message[data-role="user"] .content')
    await expect(user).to_contain_text("<script>window.__pwned = 1</script>")
    await expect(user).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    await expect(user.locator("pre code")).to_contain_text("<script>window.__pwned = 7</script>")
    await expect(page.locator('.message[data-role="assistant"]')).to_have_attribute("data-status", "complete")
    # The same text from the server on a fresh page (session.ready's history) and as an answer.
    await page.reload()
    await expect(user).to_contain_text("<javascript:window.__pwned=6>")
    await page.evaluate("""text => NousChat.socket._receive(JSON.stringify({type: "run.completed", run_id: "x1",
        message: {id: "999999", role: "assistant", content: text, status: "complete", run_id: "x1", author: "assistant"}}))""",
                        HOSTILE)
    await expect(page.locator('.message[data-id="999999"] .content')).to_contain_text("<script>")
    # Hover and click everything that could carry a handler.
    for anchor in await page.locator("#message-list a").all():
        await anchor.hover()
    report = await page.evaluate(DOM_REPORT)
    assert report["pwned"] is None
    assert report["tags"] == [] and report["handlers"] == []
    assert all(href.startswith("https://") for href in report["hrefs"] if href is not None), report["hrefs"]
    assert set(report["rels"]) == {"noopener noreferrer nofollow|_blank"}
    assert page.problems == []  # no alert, no error


async def test_the_shared_page_renders_the_same_safe_markdown(browser, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=FAST, title="Shared")
    await Message.objects.acreate(conversation=conversation, role="user", author=alice, content=HOSTILE)
    await Message.objects.acreate(conversation=conversation, role="assistant", content=MARKDOWN)
    link = await ShareLink.objects.acreate(conversation=conversation)
    chromium, url = browser
    context = await chromium.new_context(base_url=url)  # not logged in
    page = watch(await context.new_page())
    await page.goto(f"/s/{link.token}/")
    answer = page.locator('.message[data-role="assistant"] .content')
    await expect(answer.locator("table tbody tr")).to_have_count(2)
    await expect(answer.locator("blockquote")).to_have_text("a quoted line")
    await expect(answer.locator("code.language-python .hljs-keyword").first).to_have_text("def")
    await expect(page.locator('.message[data-role="user"] .content')).to_contain_text("<script>window.__pwned = 1</script>")
    report = await page.evaluate(DOM_REPORT)
    assert report["pwned"] is None and report["tags"] == [] and report["handlers"] == []
    assert all(href.startswith("https://") for href in report["hrefs"] if href is not None), report["hrefs"]
    assert page.problems == []
    await context.close()


@sync_to_async
def runs_and_users(conversation) -> tuple[int, int]:
    return (AgentRun.objects.filter(conversation=conversation).count(),
            Message.objects.filter(conversation=conversation, role="user").count())


async def test_a_failed_answer_is_one_bubble_with_retry(browser, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model="test:fail=provider_error")
    page = await open_page(browser, "alice", f"/chat/{conversation.id}/")
    await send(page, "hello")
    answer = page.locator('.message[data-role="assistant"]')
    await expect(answer).to_have_attribute("data-status", "failed")
    failure = answer.locator(".failure")
    await expect(failure.locator(".failure-text")).not_to_be_empty()
    await expect(failure.locator(".failure-retry")).to_be_visible()
    await expect(page.locator('.message[data-role="error"]')).to_have_count(0)
    await expect(page.locator("#error-banner")).to_be_hidden()
    await expect(page.locator("text=(no text)")).to_have_count(0)
    error_text = await failure.locator(".failure-text").text_content()
    stored = await Message.objects.aget(conversation=conversation, role="error")
    assert error_text and stored.content.startswith(error_text.rstrip("."))
    assert await page.evaluate("document.activeElement.id") == "input"

    # After a reload: still one bubble, built from the stored failed answer and its error message.
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(answer).to_have_count(1)
    await expect(page.locator('.message[data-role="error"]')).to_have_count(0)
    await expect(answer.locator(".failure-text")).to_have_text(error_text)

    # Retry regenerates the answer to the same message; it never stores the user's message again.
    # (A server without message.regenerate refuses it: the refusal shows in the bubble.)
    runs_before, users_before = await runs_and_users(conversation)
    # Clicked, and looked at in the same task (before any answer can come): the Retry is the
    # branches' regenerate, so their Regenerate and Edit wait for its run as for their own.
    controls_wait = await page.evaluate("""() => {
        document.querySelector('.message[data-role="assistant"] .failure-retry').click();
        const controls = [...document.querySelectorAll('.branch-bar button')];
        return controls.length > 0 && controls.every(b => b.disabled);
    }""")
    assert controls_wait, "Edit and Regenerate stayed enabled while the Retry was in flight"
    deadline = time.monotonic() + 10
    while True:
        refused = await page.locator(".failure-note:visible").count()
        runs_now, users_now = await runs_and_users(conversation)
        if refused or runs_now > runs_before:
            break
        assert time.monotonic() < deadline, "Retry neither started a run nor was refused"
        await asyncio.sleep(0.05)
    assert users_now == users_before == 1
    if refused:
        await expect(page.locator(".failure-note")).to_contain_text("Retry did not start")
        await expect(answer.locator(".failure-retry")).to_be_enabled()
    assert page.problems == []


async def test_escape_stops_and_the_focus_comes_back(browser, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=SLOW)
    page = await open_page(browser, "alice", f"/chat/{conversation.id}/")
    await send(page, "tell me a story")
    answer = page.locator('.message[data-role="assistant"]').last
    await wait_for_text(answer, 20)
    await expect(answer).to_have_attribute("aria-busy", "true")
    await page.keyboard.press("Escape")
    await expect(answer).to_have_attribute("data-status", "stopped")
    run = await AgentRun.objects.aget(conversation=conversation)
    assert run.status == "stopped"
    await expect(page.locator("#input")).to_be_focused()
    await expect(answer).not_to_have_attribute("aria-busy", "true")
    await expect(page.locator("#answer-live")).to_contain_text("Answer stopped")

    # A completed answer: the focus is back in the composer, and the live region has the answer.
    await page.evaluate("""() => NousChat.socket.send({type: "settings.update", model: "test:tps=60,words=30"})""")
    await expect(page.locator("#settings-model")).to_have_value("test:tps=60,words=30")
    await send(page, "again")
    second = page.locator('.message[data-role="assistant"]').nth(1)
    await expect(second).to_have_attribute("data-status", "complete")
    await expect(page.locator("#input")).to_be_focused()
    await expect(page.locator("#answer-live")).to_have_text((await second.locator(".content").text_content()).strip())

    # The user moved elsewhere on purpose (the search box): the end of an answer leaves it there.
    await send(page, "and once more")
    third = page.locator('.message[data-role="assistant"]').nth(2)
    await expect(third).to_have_attribute("data-status", "streaming")
    await page.focus("#search-q")
    await expect(third).to_have_attribute("data-status", "complete")
    await expect(page.locator("#search-q")).to_be_focused()
    assert page.problems == []


async def test_dark_mode_and_the_provenance_details(browser, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=FAST)
    page = await open_page(browser, "alice", f"/chat/{conversation.id}/")
    await send(page, "```js\nlet x = 1;\n```")
    answer = page.locator('.message[data-role="assistant"]')
    await expect(answer).to_have_attribute("data-status", "complete")

    style = """() => ({body: getComputedStyle(document.body).backgroundColor,
                      code: getComputedStyle(document.querySelector(".code-block pre")).backgroundColor,
                      keyword: getComputedStyle(document.querySelector(".hljs-keyword")).color})"""
    light = await page.evaluate(style)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    assert await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    dark = await page.evaluate(style)
    assert dark["body"] != light["body"] and dark["code"] != light["code"] and dark["keyword"] != light["keyword"], (light, dark)
    red, green, blue = (int(part) for part in dark["body"][4:-1].split(",")[:3])
    assert red + green + blue < 120, dark  # dark indeed

    # Provenance, on demand and by keyboard.
    toggle = answer.locator(".provenance-toggle")
    panel = answer.locator(".provenance")
    await expect(panel).to_be_hidden()
    await toggle.focus()
    await page.keyboard.press("Enter")
    await expect(panel).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    stored = await Message.objects.aget(conversation=conversation, role="assistant")
    await expect(panel.locator('[data-field="model"]')).to_have_text(FAST)
    tokens = f"{stored.provenance['input_tokens']:,} in · {stored.provenance['output_tokens']:,} out"
    await expect(panel.locator('[data-field="tokens"]')).to_have_text(tokens)
    await expect(panel.locator('[data-field="ended"]')).to_have_text("completed")
    await expect(panel.locator('[data-field="retries"]')).to_have_text("0")
    await expect(panel.locator('[data-field="duration"]')).not_to_be_empty()
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(toggle).to_be_focused()
    await toggle.click()
    await page.screenshot(path="/tmp/nous-page-dark.png")
    assert page.problems == []


async def test_the_room_page_shows_tool_lines_that_expand(browser, alice):
    from playwright.async_api import expect

    room = await sync_to_async(create_room)(alice, "Tools", model="test:tools=calculator,tps=60,words=10")
    page = await open_page(browser, "alice", f"/rooms/{room.slug}/")
    await page.fill("#composer", "@ai what is 6 * 7")
    await page.press("#composer", "Enter")
    answer = page.locator('.message[data-role="assistant"]').last
    await expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    line = answer.locator(".tool-line")
    await expect(line).to_have_count(1)
    await expect(line.locator("summary")).to_have_text("used calculator")
    await expect(line.locator(".tool-result")).to_be_hidden()  # collapsed by default
    await line.locator("summary").click()
    await expect(line.locator(".tool-result")).to_have_text("42")
    assert json.loads(await line.locator(".tool-arguments").text_content()) == {"expression": "6 * 7"}
    await expect(page.locator('.message[data-role="tool"]')).to_have_count(0)

    # After a reload the stored tool message shows the same line, under the same answer.
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(answer.locator(".tool-line summary")).to_have_text("used calculator")
    await expect(page.locator('.message[data-role="tool"]')).to_have_count(0)
    assert page.problems == []


async def test_a_failed_answer_in_a_room_is_one_bubble(browser, alice):
    from playwright.async_api import expect

    room = await sync_to_async(create_room)(alice, "Failing", model="test:fail=provider_error")
    page = await open_page(browser, "alice", f"/rooms/{room.slug}/")
    await page.fill("#composer", "@ai hello")
    await page.press("#composer", "Enter")
    answer = page.locator('.message[data-role="assistant"]')
    await expect(answer).to_have_attribute("data-status", "failed")
    await expect(answer.locator(".failure-text")).not_to_be_empty()
    await expect(answer.locator(".failure-retry")).to_be_hidden()  # regenerating is the chat's
    await expect(page.locator('.message[data-role="error"]')).to_have_count(0)
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(answer).to_have_count(1)
    await expect(answer.locator(".failure-text")).not_to_be_empty()
    await expect(page.locator('.message[data-role="error"]')).to_have_count(0)
    assert page.problems == []
