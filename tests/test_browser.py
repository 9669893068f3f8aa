"""The chat page in a real browser (headless Chromium) against a real uvicorn on the test database.

Log in, stream an answer, stop it, reload in the middle of the next one, and check that what the
page shows is exactly what was stored; markup in messages stays text; settings; history paging;
and the page's socket and markdown code (back-off, resume, refusals, link safety) with a fake
socket and clock.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message
from tests.browser_support import (
    assert_grows,
    browser_page,  # noqa: F401 (the fixture `page`)
    close_thread_connections,  # noqa: F401 (a fixture)
    log_in,
    text_of,
    wait_for_text,
)

pytest_plugins = ["tests.live_server"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

MODEL = "test:tps=15,words=300"
SCREENSHOT = Path("/tmp/nous-chat.png")
XSS = "Please render **bold words** and `inline code` but not this: <img src=x onerror=alert(1)>"


@sync_to_async
def stored_assistant_messages(conversation) -> list[Message]:
    return list(Message.objects.filter(conversation=conversation, role="assistant").order_by("id"))


async def test_send_stream_stop_reload_and_markup(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model=MODEL)
    path = f"/chat/{conversation.id}/"
    started = time.monotonic()
    await log_in(page, "alice", path)
    status = page.locator("#status")
    await expect(status).to_contain_text("Connected")
    await expect(page.locator("#settings-model")).to_have_value(MODEL)
    await expect(page.locator("#settings-ignored")).to_contain_text("temperature")
    await expect(page.locator("#stop")).to_be_hidden()

    # 1. Enter sends; the answer streams in; Stop keeps what was written, exactly as stored.
    await page.locator("#input").press_sequentially("Tell me how streaming works")
    await page.press("#input", "Enter")
    await expect(page.locator('.message[data-role="user"]')).to_have_count(1)
    await expect(page.locator('.message[data-role="user"] .content')).to_have_text("Tell me how streaming works")
    await expect(page.locator("#input")).to_have_value("")
    await expect(page.locator("#input")).to_be_disabled()
    await expect(page.locator("#stop")).to_be_visible()
    answer = page.locator('.message[data-role="assistant"]').nth(0)
    await expect(answer).to_have_attribute("data-status", "streaming")
    await wait_for_text(answer, 20)
    await assert_grows(answer)
    await page.click("#stop")
    await expect(answer).to_have_attribute("data-status", "stopped")
    await expect(answer.locator(".badge")).to_have_text("stopped")
    await expect(page.locator("#input")).to_be_enabled()
    await expect(page.locator("#stop")).to_be_hidden()
    shown = await text_of(answer)
    [stored] = await stored_assistant_messages(conversation)
    assert stored.status == "stopped" and stored.content == shown
    assert 3 < len(shown.split()) < 300
    assert await answer.get_attribute("data-id") == str(stored.id)
    assert await answer.get_attribute("data-resynced") is None  # the streamed text already equalled the stored one

    # 2. Reload in the middle of the next answer: the text so far comes back and keeps growing,
    #    and at the end the page shows exactly the stored answer.
    await page.fill("#input", XSS)
    await page.press("#input", "Enter")
    second = page.locator('.message[data-role="assistant"]').nth(1)
    await expect(second).to_have_attribute("data-status", "streaming")
    before_reload = await wait_for_text(second, 40)
    await page.reload()
    await expect(status).to_contain_text("Connected")
    await expect(second).to_have_attribute("data-status", "streaming")
    await expect(page.locator("#input")).to_be_disabled()
    await expect(page.locator("#stop")).to_be_visible()
    after_reload = await text_of(second)
    assert after_reload.startswith(before_reload), (before_reload, after_reload)
    first_sample, _ = await assert_grows(second)
    assert first_sample.startswith(after_reload)
    await expect(second).to_have_attribute("data-status", "complete", timeout=30_000)
    final = await text_of(second)
    stored = (await stored_assistant_messages(conversation))[-1]
    assert stored.status == "complete" and final == stored.content
    assert len(final.split()) == 300 and final.endswith(".")
    assert await second.get_attribute("data-resynced") is None
    await expect(second.locator(".usage")).to_contain_text("out 300")
    await expect(page.locator("#input")).to_be_enabled()
    await expect(page.locator("#stop")).to_be_hidden()

    # 3. Markup in a message is text; markdown is rendered with elements, never through HTML.
    user = page.locator('.message[data-role="user"]').nth(1)
    await expect(user.locator(".content strong")).to_have_text("bold words")
    await expect(user.locator(".content code")).to_have_text("inline code")
    await expect(user.locator(".content")).to_contain_text("<img src=x onerror=alert(1)>")
    assert await page.locator("#messages img").count() == 0
    title = (await Conversation.objects.aget(id=conversation.id)).title
    await expect(page.locator("#conversation-title")).to_have_text(title)

    # 4. Settings: a refused model shows the server's error and changes nothing; a good change is saved.
    await page.click("#settings-panel summary")
    await page.fill("#settings-model", "nosuch:model")
    await page.click("#settings-save")
    await expect(page.locator("#settings-note")).to_contain_text("Unknown provider")
    assert (await Conversation.objects.aget(id=conversation.id)).model == MODEL
    await page.fill("#settings-model", "test:tps=50,words=40")
    await page.fill("#settings-max-tokens", "500")
    await page.click("#settings-save")
    await expect(page.locator("#settings-note")).to_contain_text("Saved")
    saved = await Conversation.objects.aget(id=conversation.id)
    assert saved.model == "test:tps=50,words=40" and saved.max_tokens == 500
    await page.click("#settings-panel summary")

    await page.screenshot(path=str(SCREENSHOT))
    assert page.problems == []
    assert time.monotonic() - started < 60


async def test_history_and_the_page_code(page, alice):
    from playwright.async_api import expect

    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=200,words=10", title="A long one")
    await Message.objects.abulk_create([Message(conversation=conversation, role="user", content=f"message {i}", author=alice)
                                        for i in range(120)])
    path = f"/chat/{conversation.id}/"
    await log_in(page, "alice", path)
    await expect(page.locator("#status")).to_contain_text("Connected")
    messages = page.locator(".message")
    await expect(messages).to_have_count(50)
    await expect(page.locator(".message .content").last).to_have_text("message 119")

    # "Load older" prepends the previous page and keeps what was on screen where it was.
    load_older = page.locator("#load-older")
    await page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    await expect(load_older).to_be_visible()
    anchor = page.locator(f'.message[data-id="{await messages.first.get_attribute("data-id")}"]')
    top_before = (await anchor.bounding_box())["y"]
    await load_older.click()
    await expect(messages).to_have_count(100)
    await expect(page.locator(".message .content").first).to_have_text("message 20")
    assert abs((await anchor.bounding_box())["y"] - top_before) < 5
    await load_older.click()
    await expect(messages).to_have_count(120)
    await expect(load_older).to_be_hidden()

    # A send whose answer never came back is sent again after a reconnect, with the same client_id:
    # stored once. Here the socket swallows the frame and drops.
    await page.evaluate(SWALLOW_NEXT_SEND, True)
    await page.fill("#input", "lost in transit")
    await page.press("#input", "Enter")
    await expect(page.locator('.message[data-role="user"] .content').last).to_have_text("lost in transit")
    await expect(page.locator('.message[data-role="assistant"]').last).to_have_attribute("data-status", "complete")
    swallowed = await page.evaluate("window.swallowed")
    assert swallowed and await Message.objects.filter(conversation=conversation, client_id=swallowed).acount() == 1
    assert await Message.objects.filter(conversation=conversation, content="lost in transit").acount() == 1

    # A refused send (`error` whose ref is the pending client_id) keeps the text in the input.
    await page.evaluate(SWALLOW_NEXT_SEND, False)
    await page.fill("#input", "keep me")
    await page.press("#input", "Enter")
    await expect(page.locator("#input")).to_be_disabled()
    await page.evaluate("""() => NousChat.socket._receive(JSON.stringify({type: "error", code: "busy",
        message: "An answer is still being written", ref: window.swallowed}))""")
    await expect(page.locator("#error-banner")).to_contain_text("An answer is still being written")
    await expect(page.locator("#input")).to_be_enabled()
    await expect(page.locator("#input")).to_have_value("keep me")
    assert not await Message.objects.filter(conversation=conversation, content="keep me").aexists()

    # A run refused by the open breaker says when the provider will be tried again, in local time.
    # It is shown in the failed answer's bubble (static/js/failed.js).
    await page.evaluate("""() => {
        NousChat.socket._receive(JSON.stringify({type: "run.started", run_id: "r-breaker", model: "anthropic:claude-sonnet-4-5"}));
        NousChat.socket._receive(JSON.stringify({type: "run.failed", run_id: "r-breaker",
            error: {code: "provider_unavailable", message: "The anthropic provider is unavailable", retryable: true,
                    retry_after: 30, retry_at: "2026-12-03T14:05:30.000+00:00"}}));
    }""")
    await expect(page.locator('.message[data-role="assistant"] .failure-text').last).to_contain_text(
        re.compile(r"The anthropic provider is unavailable; it will be tried again at \d{1,2}:\d\d:30"))

    # The markdown renderer builds elements; HTML and unsafe links stay text.
    result = await page.evaluate(MARKDOWN_SCRIPT)
    assert result["h1"] == "Title" and result["strong"] == "bold" and result["em"] == "italic"
    assert result["code"] == "a<b>" and result["br"] == 1 and result["ul"] == 2 and result["ol"] == 2
    assert result["olStart"] == "3" and result["pre"] == "<b>raw</b> **kept**"
    assert result["links"] == 1 and result["href"] == "https://example.com/x"
    assert result["rel"] == "noopener noreferrer nofollow" and result["target"] == "_blank"
    assert result["tags"] == [] and "[bad](javascript:alert(1)) <img src=x onerror=alert(1)>" in result["text"]

    # The socket, with a fake WebSocket and clock: back-off, ping, resume, refusals.
    result = await page.evaluate(SOCKET_SCRIPT)
    assert result["url"] == "wss://chat.example/ws/chat/c1/"
    assert result["statuses"][:2] == ["connecting", "connected"]
    assert result["deltas"] == [4, 5, 6], result["deltas"]  # 3 was in the snapshot; 6 came after a resume
    assert result["resumes"] == [{"type": "run.resume", "run_id": "r1", "after_seq": 4}]
    assert result["ping"] == {"type": "ping"}
    assert result["delays"] == [500, 1000, 2000, 4000, 8000, 10000, 10000]
    assert result["jittered"] == [250, 500, 1000, 2000, 4000, 5000]
    assert result["reset_after_ready"] == 500
    assert result["login"] == {"state": "closed", "reason": "Please log in", "redirect": ["/accounts/login/?next=%2Fchat%2Fc1%2F%3Fa%3D1"],
                               "timers": 0, "sockets": 0}
    assert result["not_found"] == {"state": "closed", "reason": "This conversation does not exist", "timers": 0, "sockets": 0}
    assert result["forbidden"]["state"] == "closed" and result["forbidden"]["timers"] == 0
    assert page.problems == []


# Make the page's socket swallow its next message.send (and, if asked, drop the connection).
SWALLOW_NEXT_SEND = """drop => {
    const ws = NousChat.socket.ws, send = ws.send.bind(ws);
    window.swallowed = null;
    ws.send = data => {
        const frame = JSON.parse(data);
        if (frame.type !== "message.send" || window.swallowed) return send(data);
        window.swallowed = frame.client_id;
        if (drop) ws.close();
    };
}"""

MARKDOWN_SCRIPT = """() => {
    const box = document.createElement("div");
    box.appendChild(NousMarkdown.render([
        "# Title", "", "Some **bold**, *italic* and `a<b>` code.", "second line", "",
        "- one", "- two", "", "3. three", "4. four", "",
        "```python", "<b>raw</b> **kept**", "```",
        "[good](https://example.com/x) [bad](javascript:alert(1)) <img src=x onerror=alert(1)>",
    ].join("\\n")));
    const link = box.querySelector("a");
    return {
        h1: box.querySelector("h1")?.textContent, strong: box.querySelector("p strong")?.textContent,
        em: box.querySelector("p em")?.textContent, code: box.querySelector("p code")?.textContent,
        br: box.querySelectorAll("p br").length, ul: box.querySelectorAll("ul > li").length,
        ol: box.querySelectorAll("ol > li").length, olStart: box.querySelector("ol")?.getAttribute("start"),
        pre: box.querySelector("pre > code.language-python")?.textContent,
        links: box.querySelectorAll("a").length, href: link?.getAttribute("href"),
        rel: link?.getAttribute("rel"), target: link?.getAttribute("target"),
        tags: [...box.querySelectorAll("*")].map(e => e.tagName.toLowerCase()).filter(t => ["img", "b", "script"].includes(t)),
        text: box.textContent,
    };
}"""


SOCKET_SCRIPT = """() => {
    function harness(random) {
        const h = { timers: [], now: 0, next: 1, sockets: [], statuses: [], frames: [], redirects: [] };
        h.clock = {
            setTimeout(fn, ms) { const id = h.next++; h.timers.push({ id, at: h.now + ms, fn }); return id; },
            clearTimeout(id) { h.timers = h.timers.filter(t => t.id !== id); },
            now() { return h.now; },
        };
        h.advance = ms => {
            h.now += ms;
            for (;;) {
                h.timers.sort((a, b) => a.at - b.at);
                const t = h.timers[0];
                if (!t || t.at > h.now) break;
                h.timers.shift();
                t.fn();
            }
        };
        class FakeSocket {
            constructor(url) { this.url = url; this.sent = []; this.readyState = 0; h.sockets.push(this); }
            send(data) { this.sent.push(JSON.parse(data)); }
            close() { this.readyState = 3; }
            deliver(frame) { this.readyState = 1; this.onmessage({ data: JSON.stringify(frame) }); }
            drop(code) { this.readyState = 3; this.onclose({ code, reason: "" }); }
        }
        h.socket = new NousSocket({
            path: "/ws/chat/c1/", WebSocket: FakeSocket, clock: h.clock, random,
            location: { protocol: "https:", host: "chat.example", pathname: "/chat/c1/", search: "?a=1" },
            onStatus: (state, info) => h.statuses.push({ state, info }),
            onFrame: frame => h.frames.push(frame), redirect: url => h.redirects.push(url),
        });
        h.last = () => h.sockets[h.sockets.length - 1];
        h.ready = active => h.last().deliver({ type: "session.ready", active_run: active || null });
        return h;
    }
    const out = {};
    const a = harness(() => 1);
    a.socket.connect();
    out.url = a.last().url;
    a.ready({ run_id: "r1", seq: 3, content: "abc", status: "running" });
    for (const seq of [2, 3, 4, 6, 7, 4, 5, 6]) a.last().deliver({ type: "run.delta", run_id: "r1", seq, text: "x" + seq });
    out.deltas = a.frames.filter(f => f.type === "run.delta").map(f => f.seq);
    out.resumes = a.last().sent.filter(f => f.type === "run.resume");
    a.advance(25000);
    out.ping = a.last().sent[a.last().sent.length - 1];
    a.advance(10000);  // no pong: the connection is dead; reconnect
    out.statuses = a.statuses.map(s => s.state);
    out.delays = [a.statuses[a.statuses.length - 1].info.delay];
    for (let i = 0; i < 6; i++) {
        a.advance(out.delays[out.delays.length - 1]);
        a.last().drop(1006);
        out.delays.push(a.statuses[a.statuses.length - 1].info.delay);
    }
    a.advance(out.delays[out.delays.length - 1]);
    a.ready(null);
    a.last().drop(1011);
    out.reset_after_ready = a.statuses[a.statuses.length - 1].info.delay;
    out.jittered = [0, 1, 2, 3, 4, 5].map(n => NousSocket.backoff(n, () => 0, 500, 10000));

    function refused(code) {
        const h = harness(() => 1);
        h.socket.connect();
        h.last().drop(code);
        const last = h.statuses[h.statuses.length - 1];
        const before = h.sockets.length;
        h.advance(60000);
        return { state: last.state, reason: last.info.reason, redirect: h.redirects, timers: h.timers.length,
                 sockets: h.sockets.length - before };
    }
    out.login = refused(4401);
    out.not_found = refused(4404);
    delete out.not_found.redirect;
    out.forbidden = refused(4403);
    return out;
}"""
