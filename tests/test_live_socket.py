"""Sockets against a real uvicorn process: what only a real server and real TCP show."""

import asyncio
import json

import pytest
import websockets

from chat.models import Conversation
from tests.conftest import session_cookie
from tests.live_server import SECRET, start_server, stop_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]


@pytest.fixture
def small_socket_limit_server(django_db_setup, tmp_path):
    server = start_server(tmp_path / "uvicorn.log", extra_env={"NOUS_MAX_SOCKETS_PER_USER": "3"})
    yield server
    stop_server(server)


async def test_tabs_that_vanish_mid_handshake_give_their_socket_slot_back(alice, settings, small_socket_limit_server):
    settings.SECRET_KEY = SECRET  # the session must verify in the server process
    conversation = await Conversation.objects.acreate(owner=alice, model="test:tps=30,words=300")
    url = small_socket_limit_server.url.replace("http", "ws") + f"/ws/chat/{conversation.id}/"
    headers = {"Cookie": f"sessionid={await session_cookie(alice)}", "Origin": small_socket_limit_server.url}

    for _ in range(6):  # twice the limit: leaked slots would lock alice out
        ws = await websockets.connect(url, additional_headers=headers)
        ws.transport.abort()  # the tab is gone before session.ready could be sent
        await wait_for_session_ready(url, headers)


async def wait_for_session_ready(url: str, headers: dict, timeout: float = 5.0) -> None:
    """Open sockets until one gets session.ready (a slot released a moment late is no leak)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with websockets.connect(url, additional_headers=headers) as ws:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            except websockets.ConnectionClosed as closed:
                frame = {"type": "closed", "code": closed.rcvd.code if closed.rcvd else None}
        if frame["type"] == "session.ready":
            return
        assert asyncio.get_running_loop().time() < deadline, f"alice is locked out: {frame}"
        await asyncio.sleep(0.05)
