"""What the real Anthropic and OpenAI SDKs send for a message with attachments, end to end: a
chat socket, the run pipeline (a Celery worker in production mode), the SDK, and the loopback
server (tests/loopback_llm.py), which records the request bodies."""

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message
from chat.uploads import store_upload
from tests.attachment_files import PNG, PNG_B64
from tests.chat_helpers import send_frame
from tests.conftest import PRODUCTION
from tests.loopback_llm import llm_server as llm_server  # the fixture
from tests.loopback_llm import text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs"),
              pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")]
PROMPT = "Compare the file and the picture"
PROMPT_SEEN = PROMPT + "\n\nAttached file data.csv:\n```\nname,size\ncat,3\n```"


@pytest.fixture
def providers_on_loopback(llm_server, monkeypatch, runs):
    """Both providers' SDKs aimed at the loopback server, in this process and in the worker's."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url + "/v1")
    if PRODUCTION:  # the worker reads its environment when it starts
        runs.stop()
        runs.start()
    yield llm_server
    if PRODUCTION:
        runs.stop()  # the next test's `runs` starts it again, without these variables


def anthropic_turn(prompt: str) -> dict:
    return {"role": "user", "content": [
        {"type": "text", "text": prompt},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
    ]}


def openai_turn(prompt: str) -> dict:
    return {"role": "user", "content": [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]}


CASES = {
    "anthropic": ("anthropic:claude-sonnet-4-5", anthropic_turn,
                  lambda text: {"role": "assistant", "content": [{"type": "text", "text": text}]},
                  lambda text: {"role": "user", "content": [{"type": "text", "text": text}]}),
    "openai": ("openai:gpt-4o", openai_turn,
               lambda text: {"role": "assistant", "content": text},
               lambda text: {"role": "user", "content": text}),
}


@sync_to_async
def upload_both(user, conversation) -> list[str]:
    return [str(store_upload(user, conversation.id, name, data).id)
            for name, data in (("data.csv", b"name,size\ncat,3\n"), ("cat.png", PNG))]


@pytest.mark.parametrize("provider", CASES)
async def test_the_provider_gets_text_inline_and_the_image_as_its_image_block(alice, sockets, providers_on_loopback, provider):
    model, user_turn, assistant_turn, plain_user_turn = CASES[provider]
    server = providers_on_loopback
    server.script(text(["I see ", "a cat."]), text(["Yes."]))
    conversation = await Conversation.objects.acreate(owner=alice, model=model)
    ids = await upload_both(alice, conversation)
    socket = await sockets.open(alice, conversation)
    await socket.send({**send_frame(PROMPT, "c-1"), "attachments": ids})
    completed, _ = await socket.recv_until("run.completed", "run.failed", timeout=20)
    assert completed["type"] == "run.completed" and completed["message"]["content"] == "I see a cat."
    assert server.bodies()[0]["messages"] == [user_turn(PROMPT_SEEN)]
    # The next turn still carries the earlier message's files: they are part of the history.
    await socket.send(send_frame("And now?", "c-2"))
    completed, _ = await socket.recv_until("run.completed", "run.failed", timeout=20)
    assert completed["type"] == "run.completed"
    assert server.bodies()[1]["messages"] == [user_turn(PROMPT_SEEN), assistant_turn("I see a cat."), plain_user_turn("And now?")]


async def test_an_image_for_a_text_only_provider_model_is_refused_before_any_request(alice, sockets, providers_on_loopback):
    conversation = await Conversation.objects.acreate(owner=alice, model="openai:gpt-3.5-turbo")
    ids = await upload_both(alice, conversation)
    socket = await sockets.open(alice, conversation)
    await socket.send({**send_frame(PROMPT, "c-1"), "attachments": ids})
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "c-1")
    assert error["message"] == "openai:gpt-3.5-turbo does not accept images"
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert providers_on_loopback.requests == []
