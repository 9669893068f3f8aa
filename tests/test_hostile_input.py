"""Inputs found by a hostile review: each answered cleanly, under the test app and a real Daphne."""

import asyncio
import json

import pytest
import websockets

from chat.models import AgentRun, Conversation, Message
from tests.chat_helpers import send_frame
from tests.conftest import open_socket, session_cookie
from tests.live_server import SECRET, start_server, stop_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

# About 200 KB, nested 100,000 levels: over the frame limit, and deeper than any JSON parser recurses.
DEEP_AND_LONG = '{"type":"message.send","client_id":"deep","content":' + "[" * 100_000 + "]" * 100_000 + "}"
# Under the frame limit but still deeper than the parser recurses.
DEEP = '{"type":"ping","x":' + "[" * 20_000 + "]" * 20_000 + "}"


async def test_a_deeply_nested_oversized_frame_is_refused_and_never_parsed(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.communicator.send_to(text_data=DEEP_AND_LONG)
    error = await socket.recv()
    assert error["type"] == "error" and error["code"] == "too_long" and error["ref"] is None
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_a_deeply_nested_frame_under_the_limit_is_a_bad_request(alice, conversation, sockets):
    socket = await sockets.open(alice, conversation)
    await socket.communicator.send_to(text_data=DEEP)
    assert (await socket.recv())["code"] == "bad_request"
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"


@pytest.mark.parametrize(
    "content",
    ["nul \x00 byte", "lone \ud800 surrogate", "\udfff"],
    ids=["nul", "lone-high-surrogate", "lone-low-surrogate"],
)
async def test_text_no_database_can_store_is_refused_before_anything_is_stored(alice, conversation, sockets, content):
    socket = await sockets.open(alice, conversation)
    # json.dumps escapes the surrogate as \ud800, as a hostile client would send it.
    await socket.communicator.send_to(text_data=json.dumps(send_frame(content, "odd-1")))
    error = await socket.recv()
    assert error["code"] == "bad_request" and error["ref"] == "odd-1"
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert not await AgentRun.objects.filter(conversation=conversation).aexists()


@pytest.mark.parametrize("path", ["/ws/chat/999999999/", "/ws/chat/", "/ws/chat/x/y/", "/ws/nothing-here/", "/"])
async def test_a_socket_path_we_do_not_serve_is_refused_with_4404(alice, path):
    socket, connected, _ = await open_socket(alice, path)
    assert connected  # accepted, then closed, so that a browser sees the code
    assert (await socket.communicator.receive_output(2))["code"] == 4404


def test_a_page_id_that_cannot_exist_is_a_404_page(client, alice):
    client.force_login(alice)
    assert client.get("/chat/not-a-uuid/").status_code == 404
    assert client.post("/chat/999999999/rename/", {"title": "x"}).status_code == 404
    assert client.get("/no/such/page/").status_code == 404


@pytest.fixture(scope="module")
def live_daphne(django_db_setup, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("daphne") / "daphne.log", kind="daphne")
    yield server
    stop_server(server)


async def test_under_daphne_neither_input_breaks_the_socket_or_logs_a_traceback(alice, settings, live_daphne):
    settings.SECRET_KEY = SECRET  # the session must verify in the server process
    conversation = await Conversation.objects.acreate(owner=alice, model="test:")
    base = live_daphne.url.replace("http", "ws")
    headers = {"Cookie": f"sessionid={await session_cookie(alice)}", "Origin": live_daphne.url}

    async with websockets.connect(f"{base}/ws/chat/{conversation.id}/", additional_headers=headers,
                                  max_size=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "session.ready"
        await ws.send(DEEP_AND_LONG)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == "too_long"
        await ws.send(DEEP)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == "bad_request"
        await ws.send('{"type": "ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"

    async with websockets.connect(f"{base}/ws/chat/999999999/", additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == 4404

    log_text = live_daphne.log_tail(100_000)
    assert "Traceback" not in log_text and " 500 " not in log_text, log_text
