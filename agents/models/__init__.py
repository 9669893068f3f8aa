"""Model strings (`provider:model_name`) and the factory that turns them into models."""

from __future__ import annotations

import os

from agents.errors import AgentConfigError
from agents.models.base import Model, ModelRequest, ModelSettings, ToolDefinition

__all__ = ["Model", "ModelRequest", "ModelSettings", "ToolDefinition", "parse_model_id", "resolve_model", "PROVIDERS"]

# OpenAI-compatible local servers: the OpenAI provider with another default base URL.
LOCAL_BASE_URLS = {
    "ollama": ("OLLAMA_BASE_URL", "http://localhost:11434/v1"),
    "lmstudio": ("LMSTUDIO_BASE_URL", "http://localhost:1234/v1"),
    "vllm": ("VLLM_BASE_URL", "http://localhost:8000/v1"),
    "custom": ("CUSTOM_BASE_URL", ""),
}
PROVIDERS = ("anthropic", "openai", "test", *LOCAL_BASE_URLS)


def parse_model_id(model: str) -> tuple[str, str]:
    """Split `"provider:model_name"` at the first colon; raise `AgentConfigError` if malformed."""
    if not isinstance(model, str) or ":" not in model:
        raise AgentConfigError(
            f"Malformed model string {model!r}: expected 'provider:model_name', e.g. 'anthropic:claude-sonnet-4-5'"
        )
    provider, name = model.split(":", 1)
    provider = provider.strip().lower()
    if provider not in PROVIDERS:
        raise AgentConfigError(f"Unknown provider {provider!r} in {model!r}; known providers: {', '.join(PROVIDERS)}")
    if provider != "test" and not name.strip():
        raise AgentConfigError(f"Model string {model!r} names no model after the colon")
    return provider, name.strip()


def resolve_model(model: str, *, api_key: str | None = None, base_url: str | None = None) -> Model:
    """Return the model for a model string; keys and URLs come from arguments or the environment."""
    provider, name = parse_model_id(model)
    if provider == "test":
        from agents.models.test import TestModel

        return TestModel.from_name(name)
    if provider == "anthropic":
        from agents.models.anthropic import AnthropicModel

        return AnthropicModel(name, api_key=api_key, base_url=base_url)
    from agents.models.openai import OpenAIModel

    if provider == "openai":
        return OpenAIModel(name, api_key=api_key, base_url=base_url)
    env_name, default_url = LOCAL_BASE_URLS[provider]
    url = base_url or os.getenv(env_name) or default_url
    if not url:
        raise AgentConfigError(f"The {provider!r} provider needs a base_url (argument or {env_name})")
    # Local servers accept any key; the SDK insists on one.
    return OpenAIModel(name, provider=provider, api_key=api_key or os.getenv(f"{provider.upper()}_API_KEY") or "local", base_url=url)


_SUPPORTED_SETTINGS = {
    "anthropic": frozenset({"max_tokens"}),  # the 2.x SDK's messages.create takes no temperature
    "test": frozenset({"max_tokens"}),
}
ALL_SETTINGS = frozenset({"temperature", "max_tokens", "top_p"})


def supported_settings(model: str) -> frozenset[str]:
    """The model settings a model string's provider honours; the others are ignored."""
    provider, _ = parse_model_id(model)
    return _SUPPORTED_SETTINGS.get(provider, ALL_SETTINGS)
