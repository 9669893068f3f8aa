"""The agent library's side of attachments: which models read images, and the `test:` model's images."""

import pytest

from agents.errors import AgentConfigError, ProviderError
from agents.events import TextDelta
from agents.models import resolve_model
from agents.models.base import ModelRequest
from agents.models.capabilities import accepts_images, text_of

IMAGE = {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="}


@pytest.mark.parametrize("model, expected", [
    ("anthropic:claude-sonnet-4-5", True),
    ("anthropic:claude-3-5-haiku-latest", True),
    ("anthropic:claude-2.1", False),
    ("openai:gpt-4o-mini", True),
    ("openai:gpt-4.1", True),
    ("openai:gpt-3.5-turbo", False),
    ("openai:o3-mini", False),
    ("ollama:llava", False),  # a local server's model reads images only when the deployment says so
    ("test:", True),
    ("test:images=no,tps=0", False),
])
def test_which_models_accept_images(model, expected):
    assert accepts_images(model) is expected


def test_a_deployment_can_name_more_image_models():
    assert accepts_images("ollama:llava", ["ollama:llava"]) and accepts_images("vllm:anything", ["vllm:"])
    assert not accepts_images("ollama:llama3.1", ["ollama:llava"])


def test_text_of_parts_skips_the_images():
    assert text_of([{"type": "text", "text": "a"}, IMAGE, {"type": "text", "text": "b"}]) == "a\n\nb"
    assert text_of("plain") == "plain" and text_of(None) == ""


async def stream_text(model, content) -> str:
    events = [e async for e in model.stream(ModelRequest([{"role": "user", "content": content}]))]
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_the_test_model_says_how_many_images_it_sees_and_answers_the_text_as_before():
    model = resolve_model("test:tps=0,words=6")
    plain = await stream_text(model, "describe")
    assert await stream_text(model, [{"type": "text", "text": "describe"}, IMAGE, IMAGE]) == "I see 2 images. " + plain


async def test_a_test_model_without_images_refuses_them():
    model = resolve_model("test:tps=0,images=no")
    assert await stream_text(model, "text is fine")
    with pytest.raises(ProviderError, match="does not accept images"):
        await stream_text(model, [{"type": "text", "text": "look"}, IMAGE])
    with pytest.raises(AgentConfigError):
        resolve_model("test:images=maybe")
