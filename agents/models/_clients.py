"""SDK clients shared per event loop, keyed by class, API key and base URL.

Pooled connections belong to the loop that opened them, and a new client per request would pay
for a fresh TLS context and connection each time. The SDK's own retries are off: `Agent` retries.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, TypeVar

Client = TypeVar("Client")
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, str, str | None], Any]] = weakref.WeakKeyDictionary()


def shared_client(client_class: type[Client], api_key: str, base_url: str | None) -> Client:
    """The running loop's client of `client_class` for this key and URL, created on first use."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (client_class, api_key, base_url)
    if key not in per_loop:
        per_loop[key] = client_class(api_key=api_key, base_url=base_url, max_retries=0)  # type: ignore[call-arg]
    return per_loop[key]


def request_timeout(connect_secs: float, read_secs: float) -> Any:
    """The SDK `timeout` of one request: `read_secs` is the longest silence between two chunks of a stream."""
    import httpx2

    return httpx2.Timeout(read_secs, connect=connect_secs)
