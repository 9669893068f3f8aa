"""The Nous agent library: model strings, providers, streaming events, tools, retries, breaker.

Framework-free: nothing here imports Django.
"""

from agents.agent import Agent
from agents.breaker import BreakerStore, CircuitBreaker, MemoryBreakerStore, breaker_for, breaker_states, set_breaker_store
from agents.errors import AgentConfigError, ProviderError
from agents.events import (
    AgentEvent,
    ContextTrimmed,
    Finished,
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
from agents.models import parse_model_id, resolve_model
from agents.models.base import ModelRequest, ModelSettings, ToolDefinition
from agents.retries import RetryPolicy
from agents.tools import Tool, tool

__all__ = [
    "Agent", "AgentConfigError", "AgentEvent", "BreakerStore", "CircuitBreaker", "ContextTrimmed", "Finished",
    "MemoryBreakerStore", "ModelFallback", "ModelRequest", "ModelSettings",
    "ProviderError", "ResponseEnd", "Retrying", "RetryPolicy", "RunError", "RunResult", "TextDelta", "Tool", "ToolCall",
    "ToolDefinition", "ToolResult", "Usage", "breaker_for", "breaker_states", "parse_model_id", "resolve_model", "set_breaker_store", "tool",
]
