"""The offline `test:` model: deterministic streamed text derived from the prompt.

Options ride in the model string after `test:`, comma separated, so they survive being stored as
a conversation's model: `test:tps=50,words=120,fail=provider_error,fail_after=10,tools=calculator`.

- `tps`: tokens (words) per second, default 25; 0 streams as fast as possible.
- `words`: answer length in words, default 60 (capped by the `max_tokens` setting).
- `fail`: an error code to raise, after `fail_after` words (default 0), e.g. `provider_error`,
  `rate_limited`, `overloaded`; `fail_times`: fail only the first N calls (default: always).
- `tools`: tool names joined by `+` (`tools=calculator+current_datetime`), all called in one
  response before the answer; the arguments fit each tool's schema (the calculator gets the
  arithmetic found in the prompt, else `6 * 7`). `tool` is the same for one name.
- `tool_rounds`: how many responses in a row call the tools, default 1 (more than the agent's
  round limit makes the run fail with `tool_loop`).
- `window`: a context window in tokens; a request whose prompt (instructions, messages and tool
  definitions, counted as about 4 characters a token, the way real tokenizers run on English) plus
  its answer exceeds it fails as a provider refuses a too-long prompt: `context_length`, not retryable.
- `images`: `yes` (default) or `no`; a model with `images=no` refuses image parts, as a text-only
  provider model does (`agents.models.capabilities.accepts_images`).
The answer after tool calls opens with what the tools returned; an answer to a message with
images opens with "I see N image(s).".
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator

from agents.errors import AgentConfigError, ProviderError
from agents.events import ModelEvent, ResponseEnd, TextDelta, ToolCall, Usage
from agents.models.base import ModelRequest, ToolDefinition
from agents.models.capabilities import image_count, text_of

VOCABULARY = (
    "agents stream answers token by token while the page keeps every word in order and nothing "
    "is lost when the socket drops because each delta carries a sequence number the server keeps "
    "in a replay log so a reload picks up exactly where it left off and several tabs see the same "
    "text the model is deterministic offline and fast enough for tests demos and benchmarks"
).split()

MAX_WORDS = 10_000
MIN_TPS, MAX_TPS = 0.5, 10_000
RETRYABLE_CODES = {"rate_limited", "overloaded", "timeout", "provider_unavailable"}
MAX_TOOL_ROUNDS = 100
ARITHMETIC = re.compile(r"[-+(]*\s*\d[\d.\s]*(?:[-+*/%()]+\s*[\d.\s()]*)+")


def _count_words(messages: list[dict]) -> int:
    return sum(len(text_of(m.get("content")).split()) for m in messages)


@dataclass
class TestModel:
    """A deterministic model for demos, tests and benchmarks."""

    __test__ = False  # not a pytest test class

    tokens_per_second: float = 25.0
    words: int = 60
    fail: str | None = None
    fail_after: int = 0
    fail_times: int | None = None
    tools: tuple[str, ...] = ()
    tool_rounds: int = 1
    window: int | None = None
    accepts_images: bool = True
    provider: str = "test"
    name: str = ""
    supported_settings: frozenset[str] = frozenset({"max_tokens"})

    def __post_init__(self) -> None:
        self.calls = 0

    @classmethod
    def from_name(cls, name: str) -> TestModel:
        """Build from the part of a `test:` model string after the colon."""
        options: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in name.split(","))):
            if part == "default":
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise AgentConfigError(f"Bad test model option {part!r}: expected key=value")
            options[key.strip()] = value.strip()
        try:
            model = cls(
                tokens_per_second=float(options.pop("tps", 25)),
                words=int(options.pop("words", 60)),
                fail=options.pop("fail", None),
                fail_after=int(options.pop("fail_after", 0)),
                fail_times=int(options["fail_times"]) if "fail_times" in options else None,
                tools=tuple(filter(None, (options.pop("tools", "") or options.pop("tool", "")).split("+"))),
                tool_rounds=int(options.pop("tool_rounds", 1)),
                window=int(options.pop("window")) if "window" in options else None,
                accepts_images=_yes_or_no("images", options.pop("images", "yes")),
                name=name,
            )
        except ValueError as exc:
            raise AgentConfigError(f"Bad test model option in {name!r}: {exc}") from None
        options.pop("fail_times", None)
        options.pop("tool", None)
        if options:
            raise AgentConfigError(f"Unknown test model option(s): {', '.join(sorted(options))}")
        # Bounds keep a settings change from pinning a worker or the event loop.
        if not 0 <= model.words <= MAX_WORDS:
            raise AgentConfigError(f"test model: words must be between 0 and {MAX_WORDS}")
        if model.tokens_per_second != 0 and not MIN_TPS <= model.tokens_per_second <= MAX_TPS:
            raise AgentConfigError(f"test model: tps must be 0 (no delay) or between {MIN_TPS} and {MAX_TPS}")
        if model.window is not None and model.window < 1:
            raise AgentConfigError("test model: window must be a positive number of tokens")
        if not 0 <= model.tool_rounds <= MAX_TOOL_ROUNDS:
            raise AgentConfigError(f"test model: tool_rounds must be between 0 and {MAX_TOOL_ROUNDS}")
        return model

    @property
    def context_window(self) -> int | None:
        """The `window` option: what `agents.windows` trims requests to."""
        return self.window

    def _check_window(self, request: ModelRequest) -> None:
        if self.window is None:
            return
        prompt = _prompt_tokens(request)
        answer = self._length(request)
        if prompt + answer > self.window:
            # As Anthropic words it (HTTP 400 invalid_request_error).
            raise ProviderError("context_length", f"prompt is too long: {prompt} tokens + {answer} > {self.window} maximum", False, None, 400)

    def answer_for(self, request: ModelRequest) -> list[str]:
        """The words this model answers a request with: a pure function of the last user message."""
        return list(self._words(request))

    def _length(self, request: ModelRequest) -> int:
        return min(self.words, int(request.settings.get("max_tokens") or self.words))

    def _words(self, request: ModelRequest) -> Iterator[str]:
        """`answer_for`, drawn one word at a time (as `Random.choices` draws them), so that the first
        word of a long answer comes as soon as a short one's: no provider writes a whole answer first."""
        prompt = _last_user_text(request)
        rng = random.Random(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))
        count, size = self._length(request), float(len(VOCABULARY))
        for index in range(count):
            word = VOCABULARY[math.floor(rng.random() * size)]
            if index == 0:
                word = word.capitalize()
            if index == count - 1:
                word += "."
            yield word if index == 0 else " " + word

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream the answer word by word at `tokens_per_second`."""
        self.calls += 1
        input_tokens = _count_words(request.messages) + len(request.instructions.split())
        turn = _since_last_user(request.messages)
        self._check_window(request)
        if self.tools and sum(1 for m in turn if m.get("tool_calls")) < self.tool_rounds:
            prefix = "call_" + hashlib.sha256(repr(request.messages).encode()).hexdigest()[:12]
            definitions = {t.name: t for t in request.tools}
            for n, name in enumerate(self.tools):
                yield ToolCall(f"{prefix}_{n}", name, sample_arguments(definitions.get(name), request))
            yield ResponseEnd(Usage(input_tokens, len(self.tools)), stop_reason="tool_use")
            return
        delay = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
        failing = self.fail and (self.fail_times is None or self.calls <= self.fail_times)
        # The answer's first words (what it says before its own), then the rest as they are drawn.
        rest, length = self._words(request), self._length(request)
        head = [next(rest)] if length else []
        results = [f"{m.get('name')} returned {m.get('content')}." for m in turn if m.get("role") == "tool"]
        if results and head:
            head = [" ".join(results) + " ", head[0].lstrip(), *head[1:]]
        images = image_count(next((m.get("content") for m in reversed(request.messages) if m.get("role") == "user"), ""))
        if images and not self.accepts_images:
            raise ProviderError("provider_error", f"test:{self.name} does not accept images", False)
        if images and head:
            head = [f"I see {images} image{'s' if images > 1 else ''}. ", head[0].lstrip(), *head[1:]]
        words, length = itertools.chain(head, rest), length + max(0, len(head) - 1)
        for index in itertools.count():
            if failing and index == self.fail_after:
                raise ProviderError(str(self.fail), f"test model failure ({self.fail})", self.fail in RETRYABLE_CODES)
            word = next(words, None)
            if word is None:
                break
            # The first word comes at once, the others at the token rate.
            await asyncio.sleep(delay if index else 0)
            yield TextDelta(word)
        yield ResponseEnd(Usage(input_tokens, length))


def _prompt_tokens(request: ModelRequest) -> int:
    texts = [request.instructions, *(text_of(m.get("content")) for m in request.messages)]
    texts.append(json.dumps([t.__dict__ for t in request.tools]) if request.tools else "")
    return sum(-(-len(text) // 4) for text in texts)


def _last_user_text(request: ModelRequest) -> str:
    return next((text_of(m.get("content")) for m in reversed(request.messages) if m.get("role") == "user"), "")


def _yes_or_no(option: str, value: str) -> bool:
    if value not in ("yes", "no"):
        raise ValueError(f"{option} must be yes or no, not {value!r}")
    return value == "yes"


def _since_last_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the last user message: this turn's tool calls and results."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return messages[index + 1:]
    return list(messages)


def sample_arguments(definition: ToolDefinition | None, request: ModelRequest) -> dict[str, Any]:
    """Arguments that fit a tool's schema: its required properties, with the calculator fed the prompt's arithmetic."""
    if definition is None:
        return {}
    properties = definition.parameters.get("properties") or {}
    prompt = _last_user_text(request)
    arguments: dict[str, Any] = {}
    for name in definition.parameters.get("required") or []:
        if definition.name == "calculator" and name == "expression":
            # Only the prompt's start: the pattern backtracks, and a long message must not stall the loop.
            found = max(ARITHMETIC.findall(prompt[:400]), key=len, default="").strip()
            arguments[name] = found or "6 * 7"
        else:
            arguments[name] = _sample(properties.get(name) or {}, prompt)
    return arguments


def _sample(schema: dict[str, Any], prompt: str) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if "anyOf" in schema and kind is None:
        return _sample(next((s for s in schema["anyOf"] if s.get("type") != "null"), {}), prompt)
    samples = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "null": None}
    return samples.get(str(kind), " ".join(prompt.split()[:5]) or "test")
