"""What a model accepts besides text, by model string: for now, whether it reads images."""

from __future__ import annotations

from typing import Any, Iterable

from agents.models import parse_model_id

# Name prefixes of models that read images, per provider; a local server's model is asked for by
# name only (`NOUS_IMAGE_MODELS`), since whether it reads images depends on what was loaded.
IMAGE_MODEL_PREFIXES: dict[str, tuple[str, ...]] = {
    "anthropic": ("claude-3", "claude-sonnet-4", "claude-opus-4", "claude-haiku-4", "claude-sonnet", "claude-opus", "claude-haiku"),
    "openai": ("gpt-4o", "gpt-4.1", "gpt-4-turbo", "gpt-5", "chatgpt-4o", "o1", "o3", "o4"),
}
# Exceptions to the prefixes above: text-only models whose names share a prefix with one that reads images.
TEXT_ONLY_MODELS = ("o1-mini", "o3-mini", "gpt-4o-audio", "gpt-4o-realtime")


def accepts_images(model: str, extra: Iterable[str] = ()) -> bool:
    """True if `model` (a `provider:name` string) reads image parts; `extra` adds model strings or `provider:`s."""
    provider, name = parse_model_id(model)
    extra = [e.strip() for e in extra]
    if model.strip() in extra or f"{provider}:" in extra:
        return True
    if provider == "test":
        return "images=no" not in name.replace(" ", "").split(",")
    if any(name.startswith(text_only) for text_only in TEXT_ONLY_MODELS):
        return False
    return name.startswith(IMAGE_MODEL_PREFIXES.get(provider, ()))


def text_of(content: Any) -> str:
    """The text of a message's content, a string or a list of parts (`{"type": "text", "text"}`, images skipped)."""
    if isinstance(content, list):
        return "\n\n".join(str(part.get("text") or "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return "" if content is None else str(content)


def image_count(content: Any) -> int:
    """How many image parts a message's content holds."""
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image")
