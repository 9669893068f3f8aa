"""Anthropic Messages API model, streamed through the official `anthropic` SDK."""

from __future__ import annotations

import os
from typing import Any, AsyncIterator

import anthropic

from agents import config
from agents.errors import AgentConfigError, ProviderError
from agents.events import ModelEvent, ResponseEnd, TextDelta, Usage
from agents.models._clients import request_timeout, shared_client
from agents.models._sdk_errors import event_error, headers_of, malformed_chunk_error, provider_message, status_error, transport_error
from agents.models.base import ModelRequest, check_request_allowed, parse_tool_call

DEFAULT_MAX_TOKENS = 4096
LABEL = "Anthropic"

class AnthropicModel:
    """A Claude model: `stream` yields text deltas, complete tool calls, then one `ResponseEnd`.

    The SDK's own retries are off (`max_retries=0`): `Agent` retries, with its circuit breaker.
    The SDK's `messages.create` takes no temperature or top_p, so only `max_tokens` is supported.
    """

    provider = "anthropic"
    supported_settings: frozenset[str] = frozenset({"max_tokens"})

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        connect_timeout_secs: float | None = None,
        read_timeout_secs: float | None = None,
    ) -> None:
        self.name = name
        self.connect_timeout_secs = connect_timeout_secs or config.connect_timeout_secs()
        self.read_timeout_secs = read_timeout_secs or config.read_timeout_secs()
        key = api_key or os.getenv("ANTHROPIC_API_KEY")
        if not key:
            raise AgentConfigError("No Anthropic API key: pass api_key or set the ANTHROPIC_API_KEY environment variable")
        self._api_key = key
        self.base_url = base_url or os.getenv("ANTHROPIC_BASE_URL") or None

    def __repr__(self) -> str:
        return f"AnthropicModel({self.name!r}, base_url={self.base_url!r})"

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for `request` (without `stream`)."""
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": self.name,
            "max_tokens": int(request.settings.get("max_tokens") or DEFAULT_MAX_TOKENS),
            "messages": messages,
        }
        system_text = "\n\n".join(s for s in (request.instructions, *system) if s)
        if system_text:
            params["system"] = system_text
        if request.tools:
            params["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools]
        return params

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one response; raise `ProviderError` on failure. Closing the iteration closes the HTTP response."""
        check_request_allowed(self.base_url)
        params = self.request_params(request)
        input_tokens = output_tokens = 0
        stop_reason = "end_turn"
        finished = False
        tools: dict[int, dict[str, Any]] = {}
        try:
            async with await shared_client(anthropic.AsyncAnthropic, self._api_key, self.base_url).messages.create(
                **params, stream=True, timeout=request_timeout(self.connect_timeout_secs, self.read_timeout_secs)
            ) as events:
                async for event in events:
                    if event.type == "message_start":
                        usage = event.message.usage
                        input_tokens = _input_tokens(usage) or input_tokens
                        output_tokens = usage.output_tokens or output_tokens
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            tools[event.index] = {"id": block.id, "name": block.name, "json": []}
                        elif block.type == "text" and block.text:
                            yield TextDelta(block.text)
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            yield TextDelta(delta.text)
                        elif delta.type == "input_json_delta" and event.index in tools:
                            tools[event.index]["json"].append(delta.partial_json)
                    elif event.type == "content_block_stop" and event.index in tools:
                        tool = tools.pop(event.index)
                        yield parse_tool_call(tool["id"], tool["name"], "".join(tool["json"]))
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens or output_tokens
                        input_tokens = _input_tokens(event.usage) or input_tokens
                    elif event.type == "message_stop":
                        finished = True
        except ProviderError:
            raise
        except Exception as exc:
            error = to_provider_error(exc) or malformed_chunk_error(LABEL, exc)
            if error is None:
                raise
            raise error from exc
        if not finished:
            raise ProviderError("provider_error", f"The {LABEL} stream ended before message_stop", retryable=True)
        yield ResponseEnd(Usage(input_tokens, output_tokens), stop_reason)


def _input_tokens(usage: Any) -> int:
    """Input tokens including cache reads and writes (all billed as input)."""
    fields = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(getattr(usage, f, None) or 0 for f in fields)


def to_anthropic_messages(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Our message dicts -> (system texts, Anthropic messages of content blocks, consecutive roles merged)."""
    system: list[str] = []
    result: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            system.append(str(content or ""))
            continue
        if role == "tool":
            result_block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": str(content or "")}
            if message.get("is_error"):
                result_block["is_error"] = True
            role, blocks = "user", [result_block]
        else:
            role = "assistant" if role == "assistant" else "user"
            blocks = _content_blocks(content)
            for call in message.get("tool_calls") or []:
                blocks.append({"type": "tool_use", "id": call["id"], "name": call["name"], "input": call.get("arguments") or {}})
        if not blocks:
            continue
        if result and result[-1]["role"] == role:
            result[-1]["content"].extend(blocks)
        else:
            result.append({"role": role, "content": blocks})
    for message in result:  # tool results must open a user message
        message["content"].sort(key=lambda block: block.get("type") != "tool_result")
    return system, result


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):  # parts: our images become base64 image blocks, the rest is passed on
        return [_image_block(part) if part.get("type") == "image" else dict(part) for part in content]
    text = "" if content is None else str(content)
    return [{"type": "text", "text": text}] if text else []


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": part["media_type"], "data": part["data"]}}


def to_provider_error(exc: BaseException) -> ProviderError | None:
    """Map an exception of the Anthropic SDK (or its HTTP layer) to a `ProviderError`; None if it is none of those."""
    if isinstance(exc, anthropic.APIStatusError):
        message = exc.api_message or provider_message(exc.body, str(exc))
        if exc.status_code < 400:  # an `event: error` inside a 200 stream: the SDK keeps the 200 status
            return event_error(LABEL, exc.type, message)
        return status_error(LABEL, exc.status_code, message, headers=headers_of(exc), error_type=exc.type)
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("timeout", f"{LABEL} request timed out", True)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__
        return ProviderError("provider_error", f"Could not connect to {LABEL}: {type(cause).__name__ if cause else exc}", True)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ProviderError("provider_error", f"{LABEL} sent an unexpected response: {exc}", False, None, exc.status_code)
    if isinstance(exc, anthropic.APIError):
        return ProviderError("provider_error", f"{LABEL} error: {exc}", True)
    return transport_error(LABEL, exc)
