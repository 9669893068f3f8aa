"""The fallback chain of an `Agent`: its model, then the fallbacks in order, each with its own breaker and window.

A model that fails (after its own retries, or with its breaker open) before anything of the run
was streamed hands over to the next one. Tool rounds: a later round may still switch as long as no
text was streamed in the run (tool calls and results are in the transcript, which any model can
read); a round that already yielded a tool call or text, or a run that streamed text, never
switches. Once switched, the run stays on that model for its later rounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from agents.breaker import CircuitBreaker, breaker_for
from agents.context import answer_reserve, estimate_tokens, fit_messages
from agents.errors import AgentConfigError, ProviderError
from agents.events import ContextTrimmed, ModelEvent, ModelFallback, Retrying, TextDelta, ToolCall
from agents.models import resolve_model
from agents.models.base import Model, ModelRequest
from agents.windows import context_window

if TYPE_CHECKING:
    from agents.agent import Agent


def model_label(model: str | Model) -> str:
    """The model string of a model: as given, or `provider:name`."""
    return model.strip() if isinstance(model, str) else f"{model.provider}:{model.name}"


@dataclass
class Link:
    """One model of the chain. A fallback given as a string is resolved on first use, so a missing
    key for a fallback fails that link (and the chain goes on), not the whole agent."""

    label: str
    spec: str | Model
    breaker: CircuitBreaker | None = None
    model: Model | None = None

    def resolve(self) -> tuple[Model, CircuitBreaker]:
        if self.model is None:
            try:
                self.model = resolve_model(self.spec) if isinstance(self.spec, str) else self.spec
            except AgentConfigError as error:
                raise ProviderError("provider_error", str(error)) from None
        if self.breaker is None:
            self.breaker = breaker_for(self.model.provider)
        return self.model, self.breaker


@dataclass
class ChainRun:
    """The chain's state during one run: which model is answering, and how many of the oldest
    messages its latest request left out."""

    links: list[Link]
    windows: Mapping[str, int]
    position: int = 0
    dropped: int = 0

    @property
    def label(self) -> str:
        return self.links[self.position].label

    async def stream(self, agent: Agent, messages: list[dict[str, Any]], may_switch: bool) -> AsyncIterator[ModelEvent | Retrying | ModelFallback | ContextTrimmed]:
        """One round: stream the current model's response, falling back while nothing was streamed."""
        while True:
            link = self.links[self.position]
            seen = False
            try:
                async for event in self._stream_link(agent, link, messages):
                    seen = seen or isinstance(event, (TextDelta, ToolCall))
                    yield event
                return
            except ProviderError as error:
                if seen or not may_switch or self.position + 1 >= len(self.links):
                    raise
                self.position += 1
                yield ModelFallback(link.label, self.label, error.code)

    async def _stream_link(self, agent: Agent, link: Link, messages: list[dict[str, Any]]) -> AsyncIterator[ModelEvent | Retrying | ContextTrimmed]:
        model, breaker = link.resolve()
        window = context_window(link.label, self.windows, getattr(model, "context_window", None))
        definitions = [t.definition for t in agent.tools.values()]
        fixed = estimate_tokens(agent.instructions) + estimate_tokens(json.dumps([d.__dict__ for d in definitions]))
        budget = window - answer_reserve(window, agent.model_settings.get("max_tokens"))
        for attempt in (1, 2):
            fitted = fit_messages(messages, budget, fixed_tokens=fixed)
            if fitted.dropped != self.dropped:  # the request that answers is the last one sent
                self.dropped = fitted.dropped
                yield ContextTrimmed(fitted.dropped)
            request = ModelRequest(fitted.messages, agent.instructions, agent.model_settings, definitions)
            try:
                async for event in agent.stream_with_retries(request, model, breaker):
                    yield event
                return
            except ProviderError as error:
                # Our estimate fell short of the provider's count: trim harder, once, if that leaves out more.
                budget //= 2
                if error.code != "context_length" or attempt == 2 or fit_messages(messages, budget, fixed_tokens=fixed).dropped <= fitted.dropped:
                    raise
