"""OpenAI Chat Completions model (also for OpenAI-compatible local servers), streamed through the official `openai` SDK."""

from __future__ import annotations

import json
import os
from typing import Any, AsyncIterator

import openai

from agents import config
from agents.errors import AgentConfigError, ProviderError
from agents.events import ModelEvent, ResponseEnd, TextDelta, Usage
from agents.models._clients import request_timeout, shared_client
from agents.models._sdk_errors import event_error, headers_of, malformed_chunk_error, provider_message, status_error, transport_error
from agents.models.base import ModelRequest, check_request_allowed, parse_tool_call

LABELS = {"openai": "OpenAI", "ollama": "Ollama", "lmstudio": "LM Studio", "vllm": "vLLM"}

class OpenAIModel:
    """A chat model behind the Chat Completions API: `stream` yields text deltas, tool calls, then one `ResponseEnd`.

    `provider` is "openai" or the name of an OpenAI-compatible server (ollama, lmstudio, vllm,
    custom). The SDK's own retries are off (`max_retries=0`): `Agent` retries.
    """

    supported_settings: frozenset[str] = frozenset({"temperature", "max_tokens", "top_p"})

    def __init__(
        self,
        name: str,
        *,
        provider: str = "openai",
        api_key: str | None = None,
        base_url: str | None = None,
        connect_timeout_secs: float | None = None,
        read_timeout_secs: float | None = None,
    ) -> None:
        self.name = name
        self.connect_timeout_secs = connect_timeout_secs or config.connect_timeout_secs()
        self.read_timeout_secs = read_timeout_secs or config.read_timeout_secs()
        self.provider = provider
        self.label = LABELS.get(provider, provider)
        key = api_key or os.getenv("OPENAI_API_KEY")
        if not key:
            raise AgentConfigError(f"No {self.label} API key: pass api_key or set the OPENAI_API_KEY environment variable")
        self._api_key = key
        self.base_url = base_url or os.getenv("OPENAI_BASE_URL") or None

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r}, provider={self.provider!r}, base_url={self.base_url!r})"

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for `request`."""
        messages = to_openai_messages(request.messages)
        if request.instructions:
            messages.insert(0, {"role": "system", "content": request.instructions})
        params: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        settings = request.settings
        for name in ("temperature", "top_p"):
            if settings.get(name) is not None:
                params[name] = settings[name]  # type: ignore[literal-required]
        if settings.get("max_tokens"):
            # OpenAI deprecated max_tokens (reasoning models reject it); local servers know only max_tokens.
            params["max_completion_tokens" if self.provider == "openai" else "max_tokens"] = int(settings["max_tokens"])
        if request.tools:
            params["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools
            ]
        return params

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one response; raise `ProviderError` on failure. Closing the iteration closes the HTTP response."""
        check_request_allowed(self.base_url)
        params = self.request_params(request)
        usage = Usage()
        finish_reason: str | None = None
        calls: dict[int, dict[str, Any]] = {}
        try:
            async with await shared_client(openai.AsyncOpenAI, self._api_key, self.base_url).chat.completions.create(
                **params, timeout=request_timeout(self.connect_timeout_secs, self.read_timeout_secs)
            ) as chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    for choice in chunk.choices or []:
                        if choice.index:  # we ask for one choice
                            continue
                        delta = choice.delta
                        if delta is not None and delta.content:
                            yield TextDelta(delta.content)
                        for position, part in enumerate((delta.tool_calls if delta is not None else None) or []):
                            index = part.index if isinstance(getattr(part, "index", None), int) else position
                            call = calls.setdefault(index, {"id": "", "name": "", "arguments": []})
                            call["id"] = part.id or call["id"]
                            if part.function is not None:
                                call["name"] = part.function.name or call["name"]
                                call["arguments"].append(part.function.arguments or "")
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
        except ProviderError:
            raise
        except Exception as exc:
            error = self.to_provider_error(exc) or malformed_chunk_error(self.label, exc)
            if error is None:
                raise
            raise error from exc
        if finish_reason is None:
            raise ProviderError("provider_error", f"The {self.label} stream ended without a finish_reason", retryable=True)
        for index in sorted(calls):
            call = calls[index]
            yield parse_tool_call(call["id"] or f"call_{index}", call["name"], "".join(call["arguments"]))
        yield ResponseEnd(usage, finish_reason)

    def to_provider_error(self, exc: BaseException) -> ProviderError | None:
        """Map an exception of the OpenAI SDK (or its HTTP layer) to a `ProviderError`; None if it is none of those."""
        label = self.label
        if isinstance(exc, openai.APIStatusError):
            message = provider_message(exc.body, str(exc))
            return status_error(label, exc.status_code, message, headers=headers_of(exc), error_type=exc.type, error_code=exc.code)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError("timeout", f"{label} request timed out", True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            return ProviderError("provider_error", f"Could not connect to {label}: {type(cause).__name__ if cause else exc}", True)
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderError("provider_error", f"{label} sent an unexpected response: {exc}", False, None, exc.status_code)
        if isinstance(exc, openai.APIError):  # a `data: {"error": ...}` chunk inside a 200 stream
            body = exc.body if isinstance(exc.body, dict) else {}
            return event_error(label, body.get("type") or exc.type, exc.message, body.get("code"))
        return transport_error(label, exc)


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our message dicts -> Chat Completions messages (tool results as `role: tool`)."""
    result: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "tool":
            result.append({"role": "tool", "tool_call_id": message["tool_call_id"], "content": str(content or "")})
        elif role == "assistant":
            out: dict[str, Any] = {"role": "assistant", "content": content if content else None}
            if message.get("tool_calls"):
                out["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
                    for c in message["tool_calls"]
                ]
            elif out["content"] is None:
                out["content"] = ""
            result.append(out)
        elif isinstance(content, list):  # parts: images as `image_url` parts with a data URL
            result.append({"role": "user", "content": [_openai_part(part) for part in content]})
        else:
            result.append({"role": role if role in ("system", "developer") else "user", "content": content if content is not None else ""})
    return result


def _openai_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image":
        return {"type": "image_url", "image_url": {"url": f"data:{part['media_type']};base64,{part['data']}"}}
    return dict(part)
