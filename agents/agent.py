"""`Agent`: a model, instructions, settings and tools, run as a stream of typed events."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

from agents import config
from agents.breaker import CircuitBreaker, breaker_for
from agents.chain import ChainRun, Link, model_label
from agents.errors import ProviderError
from agents.events import (
    AgentEvent,
    ContextTrimmed,
    Finished,
    ModelEvent,
    ModelFallback,
    ResponseEnd,
    Retrying,
    RunError,
    RunResult,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from agents.models import resolve_model
from agents.models.base import Model, ModelRequest, ModelSettings
from agents.retries import RetryPolicy
from agents.tools import Approver, Tool, ToolArgumentsError, as_tools

log = logging.getLogger("nous.agents")


class Agent:
    """Run a model with instructions, settings and tools.

    `run_stream` yields `TextDelta`, `ToolCall`, `ToolResult`, then one `Finished` or `RunError`.
    Failed model calls are retried per `retry` (never once text has been streamed), and each
    provider has a circuit breaker. Message history goes in and out as plain dicts.

    The tool loop: the model's tool calls of one response (a round) run in order, each result goes
    back to the model, and the model is called again, until it answers without tool calls. After
    `max_tool_rounds` rounds a response that still asks for tools ends the run with `tool_loop`.
    A tool that raises, or arguments that do not fit it, become an error result for the model.

    `fallback` models are tried in order when the model fails before any text was streamed
    (`ModelFallback` says so; see `agents.chain`). Each request is trimmed from the oldest turns to
    the model's context window (`agents.windows`, overridden by `context_windows`): `ContextTrimmed`.
    """

    def __init__(
        self,
        model: str | Model,
        *,
        instructions: str = "",
        model_settings: ModelSettings | None = None,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        retry: RetryPolicy | None = None,
        approver: Approver | None = None,
        max_tool_rounds: int | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        fallback: Iterable[str | Model] = (),
        context_windows: Mapping[str, int] | None = None,
    ) -> None:
        self.model: Model = resolve_model(model) if isinstance(model, str) else model
        self.instructions = instructions
        self.model_settings: ModelSettings = model_settings or {}
        self.tools = as_tools(tools)
        self.retry = retry or RetryPolicy()
        self.approver = approver
        self.max_tool_rounds = config.max_tool_rounds() if max_tool_rounds is None else max_tool_rounds
        self.breaker = breaker or breaker_for(self.model.provider)
        self._sleep = sleep
        self.links = [Link(model_label(model), self.model, self.breaker, self.model)]
        self.links += [Link(model_label(m), m) for m in fallback]
        self.context_windows = dict(context_windows or {})

    async def run(self, prompt: str | list[dict[str, Any]], *, message_history: list[dict[str, Any]] | None = None) -> RunResult:
        """Run to the end and return the result; raise `ProviderError` if the run failed."""
        async for event in self.run_stream(prompt, message_history=message_history):
            if isinstance(event, Finished):
                return event.result
            if isinstance(event, RunError):
                raise event.error
        raise ProviderError("internal", "the run ended without a result")

    async def run_stream(
        self, prompt: str | list[dict[str, Any]], *, message_history: list[dict[str, Any]] | None = None,
        text_streamed: bool = False,
    ) -> AsyncIterator[AgentEvent]:
        """Stream one run: the prompt (or messages) after `message_history`.

        `text_streamed`: this run already streamed text before (it goes on after a pause), so it never falls back.
        """
        new_messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        messages = list(message_history or []) + new_messages
        usage = Usage()
        output = ""
        chain = ChainRun(self.links, self.context_windows)
        for round_number in itertools.count():
            text, calls = "", []
            try:
                async for event in chain.stream(self, messages, may_switch=not (output or text_streamed)):
                    if isinstance(event, TextDelta):
                        text += event.text
                        yield event
                    elif isinstance(event, ToolCall):
                        event = self.marked(event)
                        calls.append(event)
                        yield event
                    elif isinstance(event, ResponseEnd):
                        usage = usage + event.usage
                    elif isinstance(event, (Retrying, ModelFallback, ContextTrimmed)):
                        yield event
            except ProviderError as error:
                yield RunError(error, output + text)
                return
            except Exception as error:  # a bug in a provider must still end the run cleanly
                log.exception("model %s crashed", chain.label)  # the current link: may be a fallback
                yield RunError(ProviderError("internal", f"{type(error).__name__}: {error}"), output + text)
                return
            output += text
            assistant: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                assistant["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
            messages.append(assistant)
            new_messages.append(assistant)
            if not calls:
                yield Finished(RunResult(output, usage, new_messages, chain.label, chain.dropped))
                return
            if round_number >= self.max_tool_rounds:
                message = f"The model was still calling tools after {self.max_tool_rounds} rounds"
                yield RunError(ProviderError("tool_loop", message), output)
                return
            for call in calls:
                result = await self.call_tool(call)
                yield result
                tool_message = {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result.result, "is_error": result.is_error}
                messages.append(tool_message)
                new_messages.append(tool_message)

    async def stream_with_retries(self, request: ModelRequest, model: Model, breaker: CircuitBreaker
                                  ) -> AsyncIterator[ModelEvent | Retrying]:
        """One response of `model` (one link of the fallback chain), retried per `self.retry` behind `breaker`."""
        attempt = 0
        while True:
            attempt += 1
            trial = await breaker.before_call()
            streamed = False
            try:
                async for event in model.stream(request):
                    streamed = streamed or not isinstance(event, ResponseEnd)
                    yield event
            except ProviderError as error:
                await breaker.record_failure(error, trial)
                # Never retry once the user has seen output: a second answer would be appended.
                if streamed or not error.retryable or attempt >= self.retry.max_attempts:
                    raise
                if error.retry_after is not None and error.retry_after > self.retry.max_retry_after_secs:
                    # Waiting less than the provider asked would be refused again; say when to come back.
                    raise
                delay = self.retry.delay(attempt, error.retry_after)
                log.info("%s: %s, retry %d in %.2f s", model_label(model), error, attempt, delay)
                yield Retrying(attempt, error.code, delay)
                await self._sleep(delay)
                continue
            except BaseException:
                # Cancelled (a stop) or a bug: says nothing about the provider, but a half-open
                # trial must be released or the breaker would refuse every later call.
                await breaker.record_abandoned(trial)
                raise
            await breaker.record_success(trial)
            return

    def marked(self, call: ToolCall) -> ToolCall:
        """`call` with `needs_approval` set from its tool, as the run loop yields it."""
        tool = self.tools.get(call.name)
        return dataclasses.replace(call, needs_approval=bool(tool and tool.needs_approval))

    async def call_tool(self, call: ToolCall, *, approved: bool = False) -> ToolResult:
        """Make one tool call as the run loop does and return what the model is told.

        An unknown tool, arguments that are not a JSON object or do not fit, a rejection and a tool
        that raises each become an error result. A sensitive tool asks the approver first, unless
        `approved`: a human already said yes to this very call (a run going on after a pause).
        """
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(call.id, call.name, f"Unknown tool {call.name!r}", is_error=True)
        if call.invalid_arguments is not None:
            text = f"The arguments of {call.name!r} are not a JSON object: {call.invalid_arguments[:200]!r}; the tool did not run"
            return ToolResult(call.id, call.name, text, is_error=True)
        if tool.needs_approval and not approved:
            if self.approver is None:
                return ToolResult(call.id, call.name, "Rejected: no one can approve this tool here", is_error=True)
            said_yes, reason = await self.approver(call)
            if not said_yes:
                return ToolResult(call.id, call.name, f"Rejected by the user{': ' + reason if reason else ''}", is_error=True)
        try:
            return ToolResult(call.id, call.name, await tool.call(call.arguments))
        except ToolArgumentsError as error:
            return ToolResult(call.id, call.name, str(error), is_error=True)
        except Exception as error:  # the model is told, and may try again or answer without it
            log.info("tool %s raised %s: %s", call.name, type(error).__name__, error)
            return ToolResult(call.id, call.name, f"The tool raised {type(error).__name__}: {error}", is_error=True)
