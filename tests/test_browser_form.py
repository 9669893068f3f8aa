"""The contact form in a real browser (headless Chromium) against real uvicorn servers, one per
suggestion model: suggestions after a pause, a stale answer dropped while typing goes on, at most
one request in flight, submitting with the AI failing or still thinking, and without JavaScript.
The suggester's timing logic itself runs with a fake clock inside the page."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from contact.models import ContactMessage
from contact.suggest import suggest
from tests.browser_support import (
    close_thread_connections,  # noqa: F401 (a fixture)
    launch,
    watch,
)
from tests.live_server import LiveServer, start_server, stop_server

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FAST = "test:tps=0,words=12"
# 8 words at 2 a second: an answer takes 3.5 s, time enough to type on while it is in flight.
SLOW = "test:tps=2,words=8"
FAILING = "test:fail=provider_error"
MESSAGE = "The export button on the chat page does nothing"

# Before the page's scripts: count the suggestion requests in flight and keep what each answered,
# and record every list of suggestions the page shows.
INSTRUMENT = """
(() => {
  const s = window.__suggest = { inFlight: 0, maxInFlight: 0, sent: [], answered: [], shown: [] };
  const fetch = window.fetch;
  window.fetch = function (url, options) {
    if (!String(url).includes("/contact/suggest/")) return fetch.apply(this, arguments);
    const message = JSON.parse(options.body).message;
    s.inFlight++; s.maxInFlight = Math.max(s.maxInFlight, s.inFlight); s.sent.push(message);
    return fetch.apply(this, arguments).then(
      r => r.clone().json().then(body => { s.answered.push({ message, status: r.status, body }); s.inFlight--; return r; }),
      e => { s.inFlight--; throw e; });
  };
  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("suggestions");
    if (list) new MutationObserver(() => s.shown.push(Array.from(list.children, li => li.textContent)))
      .observe(list, { childList: true });
  });
})();
"""


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory):
    """`servers(model)`: a live uvicorn whose NOUS_FORM_MODEL is `model`, started once per module."""
    started: dict[str, LiveServer] = {}

    def server(model: str) -> LiveServer:
        if model not in started:
            log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
            started[model] = start_server(log, extra_env={"NOUS_FORM_MODEL": model, "NOUS_FORM_TIMEOUT_SECS": "8"})
        return started[model]

    yield server
    for s in started.values():
        stop_server(s)


@pytest.fixture
async def browser():
    async with launch() as browser:
        yield browser


async def open_form(browser, server: LiveServer, javascript: bool = True):
    """The contact page in a fresh context; uncaught errors and dialogs collect in `page.problems`."""
    context = await browser.new_context(base_url=server.url, java_script_enabled=javascript)
    page = watch(await context.new_page())
    await page.add_init_script(INSTRUMENT)
    await page.goto("/contact/")
    return page


async def probe(page) -> dict:
    return await page.evaluate("window.__suggest")


async def wait_until(page, condition: str, timeout: float = 10.0) -> dict:
    """Poll the instrumentation until `condition` (JS over `s`) holds; return it."""
    deadline = time.monotonic() + timeout
    while True:
        if await page.evaluate(f"(s => Boolean({condition}))(window.__suggest)"):
            return await probe(page)
        assert time.monotonic() < deadline, f"timed out waiting for {condition}: {await probe(page)}"
        await asyncio.sleep(0.05)


async def shown(page) -> list[str]:
    return await page.locator("#suggestions li").all_text_contents()


@sync_to_async
def stored() -> list[ContactMessage]:
    return list(ContactMessage.objects.order_by("id"))


async def test_suggestions_appear_after_a_pause(browser, servers):
    from playwright.async_api import expect

    page = await open_form(browser, servers(FAST))
    await page.fill("#id_name", "Alice")
    await expect(page.locator("#suggestions-box")).to_be_hidden()
    await page.locator("#id_message").press_sequentially(MESSAGE, delay=15)
    expected = await suggest(MESSAGE, "Alice", model=FAST)
    assert len(expected) == 1  # the test model answers one line (see the report on `test:`)
    await expect(page.locator("#suggestions li")).to_have_count(len(expected))
    await expect(page.locator("#suggestions-box")).to_be_visible()
    assert await shown(page) == expected
    s = await probe(page)
    # Never for 20 characters or fewer, and the last one for the whole message.
    assert s["sent"] and all(len(m) > 20 for m in s["sent"]) and s["sent"][-1] == MESSAGE
    assert s["maxInFlight"] == 1
    # Cleared below the threshold.
    await page.fill("#id_message", "too short")
    await expect(page.locator("#suggestions-box")).to_be_hidden()
    assert page.problems == []


async def test_an_answer_that_arrives_after_more_typing_is_dropped(browser, servers):
    from playwright.async_api import expect

    page = await open_form(browser, servers(SLOW))
    await page.fill("#id_name", "Alice")
    first = MESSAGE
    await page.locator("#id_message").press_sequentially(first, delay=10)
    await wait_until(page, "s.sent.length === 1")
    second = first + " in Firefox"
    await page.locator("#id_message").press_sequentially(" in Firefox", delay=10)
    s = await probe(page)
    # Precondition: typing ended while the first answer was still on its way.
    assert s["answered"] == [] and s["inFlight"] == 1, s

    s = await wait_until(page, "s.answered.length === 2", timeout=15)
    assert s["sent"] == [first, second] and s["maxInFlight"] == 1
    stale, fresh = (a["body"]["suggestions"] for a in s["answered"])
    assert [a["message"] for a in s["answered"]] == [first, second]
    assert stale and fresh and stale != fresh
    await expect(page.locator("#suggestions li")).to_have_count(len(fresh))
    assert await shown(page) == fresh == await suggest(second, "Alice", model="test:tps=0,words=8")  # SLOW, fast
    assert stale not in (await probe(page))["shown"]  # never on screen, not even for a moment

    # Submitting never waits: send while another answer is in flight.
    await page.locator("#id_message").press_sequentially(" and Chromium", delay=5)
    await wait_until(page, "s.sent.length === 3 && s.inFlight === 1")
    await page.fill("#id_email", "alice@example.com")
    started = time.monotonic()
    await page.click("#contact-submit")
    await page.wait_for_url("**/contact/thanks/")
    assert time.monotonic() - started < 3  # the answer in flight needs 3.5 s
    [sent] = await stored()
    assert sent.message == second + " and Chromium"
    assert page.problems == []


async def test_submitting_works_while_the_ai_fails(browser, servers):
    from playwright.async_api import expect

    page = await open_form(browser, servers(FAILING))
    await page.fill("#id_name", "Bob")
    await page.fill("#id_email", "bob@example.com")
    await page.locator("#id_message").press_sequentially(MESSAGE, delay=5)
    s = await wait_until(page, "s.answered.length >= 1")
    assert s["answered"][-1]["status"] == 200 and s["answered"][-1]["body"] == {"suggestions": []}
    await expect(page.locator("#suggestions-box")).to_be_hidden()
    await page.click("#contact-submit")
    await page.wait_for_url("**/contact/thanks/")
    await expect(page.locator("#thanks h1")).to_have_text("Thank you, Bob")
    assert [(m.name, m.email, m.message) for m in await stored()] == [("Bob", "bob@example.com", MESSAGE)]
    assert page.problems == []


async def test_the_form_works_without_javascript(browser, servers):
    from playwright.async_api import expect

    page = await open_form(browser, servers(FAST), javascript=False)
    await page.fill("#id_name", "Carol")
    await page.fill("#id_email", "carol@example")
    await page.fill("#id_message", "Too short.")
    await page.click("#contact-submit")
    await expect(page.locator("#error-email")).to_be_visible()
    await expect(page.locator("#error-message")).to_be_visible()
    await expect(page.locator("#id_name")).to_have_value("Carol")
    assert await stored() == []
    await page.fill("#id_email", "carol@example.com")
    await page.fill("#id_message", MESSAGE)
    await page.click("#contact-submit")
    await expect(page.locator("#thanks h1")).to_have_text("Thank you, Carol")
    assert [m.name for m in await stored()] == ["Carol"]


async def test_suggestions_are_text_capped_at_three_and_hidden_on_errors(browser, servers):
    from playwright.async_api import expect

    page = await open_form(browser, servers(FAST))
    answers = [{"json": {"suggestions": ["<img src=x onerror=alert(1)>", "<b>two</b>", "three", "four"]}},
               {"status": 500, "body": "<h1>Server Error</h1>"}]

    async def fulfil(route) -> None:
        await route.fulfill(**answers.pop(0))

    await page.route("**/contact/suggest/", fulfil)
    await page.locator("#id_message").press_sequentially(MESSAGE, delay=5)
    await expect(page.locator("#suggestions li")).to_have_count(3)
    assert await shown(page) == ["<img src=x onerror=alert(1)>", "<b>two</b>", "three"]
    assert await page.locator("#suggestions img, #suggestions b").count() == 0
    await page.locator("#id_message").press_sequentially("!", delay=5)
    await expect(page.locator("#suggestions-box")).to_be_hidden()
    assert page.problems == []


SUGGESTER_WITH_A_FAKE_CLOCK = """
async () => {
  const { Suggester } = window.NousContact;
  let now = 0;
  const timers = [];
  const clock = {
    setTimeout(fn, ms) { const t = { fn, at: now + ms }; timers.push(t); return t; },
    clearTimeout(t) { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1); },
  };
  const tick = ms => {
    now += ms;
    for (const t of timers.filter(t => t.at <= now)) { timers.splice(timers.indexOf(t), 1); t.fn(); }
  };
  const flush = () => new Promise(resolve => setTimeout(resolve, 0));
  const requests = [], shown = [], checks = [];
  const check = (what, ok) => checks.push([what, Boolean(ok)]);
  const last = () => JSON.stringify(shown[shown.length - 1]);
  const s = new Suggester({
    clock, debounceMs: 600, minChars: 21, show: list => shown.push(list),
    request: text => new Promise((resolve, reject) => requests.push({ text, resolve, reject })),
  });
  const A = "a message of some length", B = A + " and more", C = B + " again";

  s.input("twenty chars exactly"); tick(5000);
  check("20 characters: no request", requests.length === 0);
  s.input("   " + "x".repeat(20) + "   "); tick(5000);
  check("spaces do not count", requests.length === 0);
  s.input(A); tick(599);
  check("no request before the pause", requests.length === 0);
  s.input(A); tick(599);
  check("each keystroke restarts the pause", requests.length === 0);
  tick(1);
  check("one request after 600 ms", requests.length === 1 && requests[0].text === A);
  s.input(B); tick(600); s.input(C); tick(600);
  check("one request in flight however long the typing", requests.length === 1);
  requests[0].resolve(["for A"]); await flush();
  check("the stale answer is dropped", !shown.some(list => list.includes("for A")));
  check("the newest text goes once it returns", requests.length === 2 && requests[1].text === C);
  requests[1].resolve(["c1", "", "c2", 5, "c3", "c4"]); await flush();
  check("fresh answer shown, at most 3 strings", last() === '["c1","c2","c3"]');
  check("nothing more sent", requests.length === 2);

  s.input(C + "!"); tick(600); requests[2].reject(new Error("offline")); await flush();
  check("an error hides the suggestions", last() === "[]");
  s.input(C); tick(600); requests[3].resolve({ not: "a list" }); await flush();
  check("a malformed answer hides them", last() === "[]");

  s.input(B); tick(600); s.input(B + "?"); tick(300); s.input(B); tick(600);
  requests[4].resolve(["for B"]); await flush();
  check("typed back to the text in flight: shown, not sent again", last() === '["for B"]' && requests.length === 5);

  s.input(A); tick(600); s.input("short"); requests[5].resolve(["for A again"]); await flush();
  check("below the minimum: hidden, the answer dropped", last() === "[]" && requests.length === 6);
  check("no timer left", timers.length === 0);
  return checks;
}
"""


async def test_the_suggester_timing_with_a_fake_clock(browser, servers):
    page = await open_form(browser, servers(FAST))
    checks = await page.evaluate(SUGGESTER_WITH_A_FAKE_CLOCK)
    assert checks and [what for what, ok in checks if not ok] == []
    assert page.problems == []

