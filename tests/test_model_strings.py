"""Model strings: `parse_model_id` and `resolve_model`."""

from __future__ import annotations

import pytest

from agents.errors import AgentConfigError
from agents.models import PROVIDERS, parse_model_id, resolve_model
from agents.models.anthropic import AnthropicModel
from agents.models.openai import OpenAIModel


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_BASE_URL",
                 "OLLAMA_API_KEY", "CUSTOM_BASE_URL", "CUSTOM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("model", "expected"), [
    ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
    ("openai:gpt-4o", ("openai", "gpt-4o")),
    ("ollama:llama3", ("ollama", "llama3")),
    ("ollama:llama3.1:8b", ("ollama", "llama3.1:8b")),  # split at the first colon only
    (" Anthropic :claude-haiku ", ("anthropic", "claude-haiku")),
])
def test_parse_model_id(model, expected):
    assert parse_model_id(model) == expected


def test_resolve_anthropic():
    model = resolve_model("anthropic:claude-sonnet-4-5", api_key="k")
    assert isinstance(model, AnthropicModel)
    assert (model.provider, model.name, model.supported_settings) == ("anthropic", "claude-sonnet-4-5", frozenset({"max_tokens"}))


def test_resolve_openai():
    model = resolve_model("openai:gpt-4o", api_key="k")
    assert isinstance(model, OpenAIModel)
    assert (model.provider, model.name, model.base_url) == ("openai", "gpt-4o", None)
    assert model.supported_settings == frozenset({"temperature", "max_tokens", "top_p"})


def test_resolve_openai_without_key_is_a_config_error():
    with pytest.raises(AgentConfigError, match="OPENAI_API_KEY"):
        resolve_model("openai:gpt-4o")
    with pytest.raises(AgentConfigError, match="ANTHROPIC_API_KEY"):
        resolve_model("anthropic:claude-sonnet-4-5")


def test_resolve_ollama_uses_the_default_base_url_and_needs_no_key():
    model = resolve_model("ollama:llama3")
    assert isinstance(model, OpenAIModel)
    assert (model.provider, model.name, model.base_url) == ("ollama", "llama3", "http://localhost:11434/v1")


def test_resolve_local_base_url_from_argument_or_environment(monkeypatch):
    assert resolve_model("ollama:llama3", base_url="http://127.0.0.1:9/v1").base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:8/v1")
    assert resolve_model("ollama:llama3").base_url == "http://127.0.0.1:8/v1"
    assert resolve_model("lmstudio:qwen").base_url == "http://localhost:1234/v1"
    assert resolve_model("vllm:mistral").base_url == "http://localhost:8000/v1"


def test_custom_needs_a_base_url(monkeypatch):
    with pytest.raises(AgentConfigError, match="base_url"):
        resolve_model("custom:x")
    assert resolve_model("custom:x", base_url="http://127.0.0.1:5/v1").provider == "custom"
    monkeypatch.setenv("CUSTOM_BASE_URL", "http://127.0.0.1:6/v1")
    assert resolve_model("custom:x").base_url == "http://127.0.0.1:6/v1"


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(AgentConfigError) as caught:
        resolve_model("mistral:large")
    message = str(caught.value)
    assert "mistral" in message and all(provider in message for provider in PROVIDERS)


@pytest.mark.parametrize("model", ["gpt-4", "", "anthropic:", "openai:  ", ":gpt-4o", None])
def test_malformed_model_strings(model):
    with pytest.raises(AgentConfigError):
        resolve_model(model, api_key="k")
