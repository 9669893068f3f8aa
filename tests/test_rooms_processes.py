"""A room across two real ASGI processes on Redis: messages, presence, typing and the AI's stream
cross processes, and a process killed without a goodbye leaves no ghost on the other."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid

import pytest
import websockets
from asgiref.sync import sync_to_async

from rooms.models import create_room
from tests.conftest import PRODUCTION, session_cookie, skip_or_fail
from tests.live_server import SECRET, start_server, stop_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]
LEASE_SECS = 3


@pytest.fixture
def two_servers(django_db_setup, tmp_path):
    if not PRODUCTION:
        skip_or_fail("needs REDIS_URL: two processes share a room only through Redis")
    env = {"NOUS_PRESENCE_TTL_SECS": str(LEASE_SECS)}
    servers = [start_server(tmp_path / f"uvicorn-{i}.log", extra_env=env) for i in range(2)]
    yield servers
    for server in servers:
        stop_server(server)


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.frames: list[dict] = []

    async def recv_until(self, check, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                if check(frame):
                    return frame


async def join(server, user, room) -> Client:
    headers = {"Cookie": f"sessionid={await session_cookie(user)}", "Origin": server.url}
    ws = await websockets.connect(server.url.replace("http", "ws") + f"/ws/rooms/{room.slug}/", additional_headers=headers)
    client = Client(ws)
    await client.recv_until(lambda f: f["type"] == "session.ready")
    return client


def of_type(kind, **fields):
    return lambda f: f["type"] == kind and all(f.get(k) == v for k, v in fields.items())


async def test_a_room_spans_two_processes_and_a_killed_one_leaves_no_ghost(alice, bob, settings, two_servers):
    settings.SECRET_KEY = SECRET  # the sessions must verify in the server processes
    first, second = two_servers
    room = await sync_to_async(create_room)(alice, "Across", model="test:tps=50,words=30")
    a = await join(first, alice, room)
    b = await join(second, bob, room)
    assert (await a.recv_until(of_type("presence")))["participants"] == ["alice", "bob"]

    await b.ws.send(json.dumps({"type": "message.send", "content": "hello from the other process", "client_id": str(uuid.uuid4())}))
    assert (await a.recv_until(of_type("message.created")))["message"]["author"] == "bob"

    await a.ws.send(json.dumps({"type": "typing", "typing": True}))
    assert (await b.recv_until(of_type("typing")))["user"] == "alice"

    await a.ws.send(json.dumps({"type": "message.send", "content": "@ai say something", "client_id": str(uuid.uuid4())}))
    texts = []
    for client in (a, b):
        completed = await client.recv_until(of_type("run.completed"), timeout=20)
        deltas = [f for f in client.frames if f["type"] == "run.delta" and f["run_id"] == completed["run_id"]]
        assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
        assert "".join(d["text"] for d in deltas) == completed["message"]["content"]
        texts.append(completed["message"]["content"])
    assert texts[0] == texts[1] != ""

    # The first process dies without closing anything: bob must see alice leave within a lease.
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(5)
    gone = await b.recv_until(lambda f: f["type"] == "presence" and f["participants"] == ["bob"], timeout=LEASE_SECS * 3)
    assert gone["participants"] == ["bob"]
    await b.ws.close()


@pytest.fixture
def one_server(django_db_setup, tmp_path):
    server = start_server(tmp_path / "uvicorn.log")
    yield server
    stop_server(server)


async def test_a_tab_that_vanishes_without_a_close_frame_leaves_the_room(alice, bob, settings, one_server):
    settings.SECRET_KEY = SECRET
    room = await sync_to_async(create_room)(alice, "Vanishing", model="test:")
    a = await join(one_server, alice, room)
    b = await join(one_server, bob, room)
    assert (await a.recv_until(of_type("presence")))["participants"] == ["alice", "bob"]
    b.ws.transport.abort()  # the laptop lid closes: no close frame, the TCP connection just goes
    gone = await a.recv_until(lambda f: f["type"] == "presence" and f["participants"] == ["alice"], timeout=LEASE_SECS * 10)
    assert gone["participants"] == ["alice"]
    await a.ws.close()
