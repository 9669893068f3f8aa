"""Turn what a provider SDK raises (HTTP statuses, mid-stream error events, transport failures) into `ProviderError`."""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from typing import Any, Mapping

from agents.errors import ProviderError

log = logging.getLogger("nous.agents")

# Error types (Anthropic's `error.type`, OpenAI-compatible `error.type`/`error.code`) -> (our code, retryable).
ERROR_TYPES: dict[str, tuple[str, bool]] = {
    "overloaded_error": ("overloaded", True),
    "overloaded": ("overloaded", True),
    "rate_limit_error": ("rate_limited", True),
    "rate_limit_exceeded": ("rate_limited", True),
    "requests": ("rate_limited", True),
    "tokens": ("rate_limited", True),
    "timeout_error": ("timeout", True),
    "timeout": ("timeout", True),
    "api_error": ("provider_error", True),
    "server_error": ("provider_error", True),
    "internal_error": ("provider_error", True),
    "invalid_request_error": ("provider_error", False),
    "authentication_error": ("provider_error", False),
    "permission_error": ("provider_error", False),
    "not_found_error": ("provider_error", False),
    "request_too_large": ("provider_error", False),
    "billing_error": ("provider_error", False),
    "insufficient_quota": ("provider_error", False),
    "BadRequestError": ("provider_error", False),
    "context_length_exceeded": ("context_length", False),
}
# How the providers word a prompt over the model's context window (Anthropic says it in the message only).
TOO_LONG_PHRASES = ("prompt is too long", "context_length_exceeded", "maximum context length", "exceed context limit")


def is_too_long(status: int, message: str, error_code: str | None) -> bool:
    """Whether an HTTP 400 says the prompt does not fit the model's context window."""
    return status == 400 and (error_code == "context_length_exceeded" or any(p in message.lower() for p in TOO_LONG_PHRASES))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait per `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None if absent or unreadable."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def provider_message(body: object, fallback: str) -> str:
    """The human-readable message in an error body (`{"error": {"message"}}`, `{"message"}` or text)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str) and inner["message"]:
            return inner["message"]
        if isinstance(inner, str) and inner:
            return inner
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


def status_error(
    label: str, status: int, message: str, *, headers: Mapping[str, str] | None = None, error_type: str | None = None,
    error_code: str | None = None,
) -> ProviderError:
    """The `ProviderError` for an HTTP error status (`label` names the provider in the message)."""
    retry_after = parse_retry_after(headers)
    if is_too_long(status, message, error_code):
        return ProviderError("context_length", f"{label}: the conversation is too long for the model: {message}", False, None, status)
    if status in (401, 403):
        return ProviderError("provider_error", f"{label} refused the API key (HTTP {status}): {message}", False, None, status)
    if status == 429:
        code, retryable, text = "rate_limited", True, f"{label} rate limit reached (HTTP 429): {message}"
    elif status == 529 or error_type == "overloaded_error":
        code, retryable, text = "overloaded", True, f"{label} is overloaded (HTTP {status}): {message}"
    elif status == 408:
        code, retryable, text = "timeout", True, f"{label} timed out (HTTP 408): {message}"
    elif status >= 500:
        code, retryable, text = "provider_error", True, f"{label} failed (HTTP {status}): {message}"
    else:
        code, retryable, text = "provider_error", False, f"{label} rejected the request (HTTP {status}): {message}"
    should_retry = (headers or {}).get("x-should-retry")
    if should_retry in ("true", "false") and code == "provider_error":
        retryable = should_retry == "true"
    return ProviderError(code, text, retryable, retry_after, status)


def event_error(label: str, error_type: object, message: str, code: object = None) -> ProviderError:
    """The `ProviderError` for an error event sent inside a stream that had started with HTTP 200."""
    status = code if isinstance(code, int) else int(code) if isinstance(code, str) and code.isdigit() else None
    if status is not None and status >= 400:
        return status_error(label, status, message, error_type=str(error_type or ""))
    for key in (error_type, code):
        if isinstance(key, str) and key in ERROR_TYPES:
            ours, retryable = ERROR_TYPES[key]
            break
    else:  # an unknown failure the server reported while generating: most likely on its side
        ours, retryable = "provider_error", True
    kind = f" ({error_type})" if error_type else ""
    return ProviderError(ours, f"{label} reported an error mid-stream{kind}: {message}", retryable)


def transport_error(label: str, exc: BaseException) -> ProviderError | None:
    """The `ProviderError` for a timeout or connection failure the SDK did not wrap, else None."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - both SDKs depend on it
        return None
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError("timeout", f"{label} timed out: {type(exc).__name__}", True)
    if isinstance(exc, (httpx2.RequestError, ssl.SSLError, ConnectionError)) or type(exc).__name__ == "EndOfStream":
        return ProviderError("provider_error", f"Connection to {label} failed: {type(exc).__name__}: {exc}", True)
    return None


# What parsing a chunk that is not JSON, or not shaped as documented, raises in the SDK or in our reader.
MALFORMED_CHUNK_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def malformed_chunk_error(label: str, exc: BaseException) -> ProviderError | None:
    """The `ProviderError` for a stream chunk the provider got wrong (the provider's fault, not ours), else None."""
    if not isinstance(exc, MALFORMED_CHUNK_ERRORS):
        return None
    error = ProviderError("provider_error", f"{label} sent a malformed stream chunk ({type(exc).__name__}: {str(exc)[:200]})", True)
    log.warning("%s", error.message)  # no traceback: the fault is in the provider's bytes, not in our code
    return error


def headers_of(exc: Any) -> Mapping[str, str] | None:
    """The response headers an SDK status error carries, if any."""
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)
