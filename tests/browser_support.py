"""What the browser tests (tests/test_browser*.py) share: Chromium and how it is launched, a page
that collects its problems, logging in, reading a message bubble, and a scripted socket server.

A browser test module imports the fixture `close_thread_connections` (autouse: it applies to
every test of the module that imports it) along with the helpers it uses, and `browser_page`
(the fixture `page`) if its tests take a page; it loads `pytest_plugins = ["tests.live_server"]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(autouse=True)
async def close_thread_connections():
    """The async ORM calls run in asgiref's executor thread: close its connection after the test,
    or the test database cannot be dropped at the end of the session."""
    yield
    await sync_to_async(connections.close_all)()


def require_chromium() -> str:
    """The Chromium executable; without it the test skips (fails where REQUIRE_SERVICES=1)."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium, or `make browser-deps`)")
    return CHROMIUM


@asynccontextmanager
async def launch():
    """`async with launch() as browser`: a headless Chromium, closed on the way out (the test skips
    or fails first without one: `require_chromium`)."""
    executable = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(name="page")
async def browser_page(live_uvicorn):
    """`page`: a fresh Chromium page on the live server (tests.live_server); uncaught errors and
    dialogs collect in `page.problems`. Imported as `browser_page`, so a test's `page` argument
    does not shadow the import."""
    async with launch() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 820}, base_url=live_uvicorn.url)
        page = watch(await context.new_page())
        try:
            yield page
        finally:
            await context.close()


def watch(page, accept_dialogs: bool = False):
    """A 10 s default timeout; uncaught errors collect in `page.problems`. Dialogs are dismissed
    and noted in `page.problems`, or with `accept_dialogs` accepted and noted in `page.dialogs`."""
    page.set_default_timeout(10_000)
    page.problems = []
    if accept_dialogs:
        page.dialogs = []
    page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))

    async def on_dialog(dialog) -> None:
        if accept_dialogs:
            page.dialogs.append(dialog.message)
            await dialog.accept()
        else:
            page.problems.append(f"dialog: {dialog.message}")
            await dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


class Contexts:
    """Browser contexts (each its own cookies) on the live server, all closed by `close()`.
    `async with SubClass.launched(base_url) as opener`: one on a Chromium of its own."""

    def __init__(self, browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list = []

    async def new_context(self):
        context = await self.browser.new_context(viewport={"width": 1200, "height": 800}, base_url=self.base_url)
        self.contexts.append(context)
        return context

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()

    @classmethod
    @asynccontextmanager
    async def launched(cls, base_url: str):
        async with launch() as browser:
            opener = cls(browser, base_url)
            try:
                yield opener
            finally:
                await opener.close()


async def log_in(page, username: str, next_path: str | None = None) -> None:
    """Log in as `username` (tests.conftest.make_user's password); on to `next_path` if given."""
    if next_path is None:
        await page.goto("/accounts/login/")
    else:
        await page.goto(f"/accounts/login/?next={next_path}")
    await page.fill("#id_username", username)
    await page.fill("#id_password", "pw-" + username)  # tests.conftest.make_user
    await page.click("button[type=submit]")
    if next_path is None:
        await page.wait_for_url(lambda url: "/accounts/login/" not in url)
    else:
        await page.wait_for_url(f"**{next_path}")


async def text_of(locator) -> str:
    return await locator.locator(".content").text_content() or ""


async def wait_for_text(locator, min_chars: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = await text_of(locator)
        if len(text) >= min_chars:
            return text
        assert time.monotonic() < deadline, f"the answer did not reach {min_chars} characters: {text!r}"
        await asyncio.sleep(0.05)


async def assert_grows(locator, pause: float = 0.6) -> tuple[str, str]:
    """Two samples of a streaming bubble: the second is longer and starts with the first."""
    first = await text_of(locator)
    await asyncio.sleep(pause)
    second = await text_of(locator)
    assert len(second) > len(first) and second.startswith(first), (first, second)
    return first, second


class ScriptedSocket:
    """Stands in for the page's socket (the chat's; a subclass names another `pattern`): records
    what the page sends, sends what the test says."""

    pattern = "**/ws/chat/**"

    def __init__(self) -> None:
        self.sockets: list = []
        self.received: list[dict] = []

    async def install(self, page) -> None:
        await page.route_web_socket(self.pattern, self._connected)

    def _connected(self, ws) -> None:
        self.sockets.append(ws)
        ws.on_message(lambda message: self.received.append(json.loads(message)))

    def send(self, frame: dict) -> None:
        self.sockets[-1].send(json.dumps(frame))

    async def connected(self, count: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sockets) < count:
            assert time.monotonic() < deadline, "the page did not open its socket"
            await asyncio.sleep(0.02)

    async def next(self, kind: str, timeout: float = 5.0) -> dict:
        """The first frame of `kind` the page sent (and not taken yet)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, frame in enumerate(self.received):
                if frame.get("type") == kind:
                    return self.received.pop(i)
            assert time.monotonic() < deadline, f"the page sent no {kind}; it sent {self.received}"
            await asyncio.sleep(0.02)

    def sent(self, kind: str) -> list[dict]:
        return [frame for frame in self.received if frame.get("type") == kind]
