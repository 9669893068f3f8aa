"""A loopback HTTP server that speaks the Anthropic Messages and OpenAI Chat Completions streaming formats.

Tests point the official SDKs at it by `base_url` and script its replies one request at a time:

    def test_x(llm_server):
        llm_server.script(http_error(429, headers={"retry-after": "0"}), text(["Hel", "lo"]))

`POST /v1/messages` answers in Anthropic's SSE events, `POST /v1/chat/completions` in OpenAI's
chunks; one scripted reply renders in either format. The server runs its own event loop in a
thread (so it works from sync and async tests alike), serves connections concurrently with
keep-alive and chunked transfer encoding, and records every request, including whether the
client hung up before the reply was complete.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import pytest

_ids = itertools.count(1)


@dataclass
class Reply:
    """One scripted reply. Build it with `text`, `tool_call(s)`, `http_error`, `stream_error`, `drop`, `hang` or `malformed`."""

    chunks: list[str] = field(default_factory=list)
    delay: float = 0.005
    input_tokens: int = 11
    output_tokens: int = 7
    stop_reason: str | None = None  # default: end_turn/stop, or tool_use/tool_calls with tools
    tools: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments JSON text)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None  # HTTP error body type, or the mid-stream error event's type
    error_message: str = ""
    error_code: str | None = None  # an OpenAI error body's `code` (default: per status)
    error_after: int | None = None  # send a mid-stream error event after this many chunks
    hang: bool = False  # after the chunks, send nothing more and wait for the client to hang up
    hang_before_headers: bool = False  # with `hang`: not even the status line is sent
    drop: bool = False  # after the chunks, close the socket without ending the chunked body
    malformed: str | None = None  # after the chunks, one event whose data is this text (bad JSON or a wrong shape), then the end


def text(chunks: Sequence[str], *, delay: float = 0.005, input_tokens: int = 11, output_tokens: int = 7, stop_reason: str | None = None) -> Reply:
    """Stream `chunks` as text deltas, `delay` seconds apart, then report the usage numbers."""
    return Reply(list(chunks), delay, input_tokens, output_tokens, stop_reason)


def tool_calls(calls: list[tuple[str, Any]], *, text: Sequence[str] = (), delay: float = 0.005, input_tokens: int = 11, output_tokens: int = 7) -> Reply:
    """Stream optional text, then one tool call per `(name, arguments)`; arguments is a dict or raw JSON text."""
    tools = [(f"call_{next(_ids):04d}", name, args if isinstance(args, str) else json.dumps(args)) for name, args in calls]
    return Reply(list(text), delay, input_tokens, output_tokens, None, tools)


def tool_call(name: str, arguments: Any, **kwargs: Any) -> Reply:
    """Stream one tool call (see `tool_calls`)."""
    return tool_calls([(name, arguments)], **kwargs)


def http_error(status: int, *, headers: dict[str, str] | None = None, message: str | None = None, error_type: str | None = None,
               error_code: str | None = None) -> Reply:
    """Answer with an HTTP error status and the provider's JSON error body."""
    return Reply(status=status, headers=dict(headers or {}), error_type=error_type, error_message=message or f"scripted HTTP {status}",
                 error_code=error_code)


def stream_error(chunks: Sequence[str], *, error_type: str = "overloaded_error", message: str = "Overloaded", delay: float = 0.005) -> Reply:
    """Stream `chunks` as text, then a mid-stream error event of `error_type`, then end the stream."""
    return Reply(list(chunks), delay, error_type=error_type, error_message=message, error_after=len(chunks))


def hang(chunks: Sequence[str] = (), *, delay: float = 0.005, before_headers: bool = False) -> Reply:
    """Start a stream, send `chunks`, then wait forever (until the client disconnects); or hang before any headers."""
    return Reply(list(chunks), delay, hang=True, hang_before_headers=before_headers)


def drop(chunks: Sequence[str], *, delay: float = 0.005) -> Reply:
    """Stream `chunks` as text, then close the connection abruptly, mid-body."""
    return Reply(list(chunks), delay, drop=True)


def malformed(chunks: Sequence[str] = (), *, data: str = '{"type": "content_block_delta", "delta": ', delay: float = 0.005) -> Reply:
    """Stream `chunks` as text, then one event whose data is `data` (by default JSON cut short), then end the body."""
    return Reply(list(chunks), delay, malformed=data)


@dataclass
class RecordedRequest:
    """A request the server received; `disconnected` is set if the client hung up mid-reply."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    completed: bool = False
    disconnected: bool = False


ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                         413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
OPENAI_ERROR_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                      403: ("invalid_request_error", "unsupported_country_region_territory"), 404: ("invalid_request_error", "model_not_found"),
                      429: ("requests", "rate_limit_exceeded")}


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()


def anthropic_events(reply: Reply, model: str) -> Iterator[bytes]:
    """The SSE events of `reply` in the Anthropic Messages streaming format."""
    usage = {"input_tokens": reply.input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    message = {"id": f"msg_{next(_ids):08d}", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": usage}
    yield _sse({"type": "message_start", "message": message}, "message_start")
    index = 0
    if reply.chunks or not reply.tools:
        yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
        yield _sse({"type": "ping"}, "ping")
        for n, chunk in enumerate(reply.chunks):
            if reply.error_after == n:
                break
            yield _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}, "content_block_delta")
        if reply.malformed is not None:
            yield f"event: content_block_delta\ndata: {reply.malformed}\n\n".encode()
            return
        if reply.error_after is not None or reply.hang or reply.drop:
            return
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        index = 1
    for call_id, name, arguments in reply.tools:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        yield _sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
        for piece in [""] + _pieces(arguments):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        index += 1
    stop = reply.stop_reason or ("tool_use" if reply.tools else "end_turn")
    delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": reply.output_tokens}}
    yield _sse(delta, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


def anthropic_error_event(reply: Reply) -> bytes:
    return _sse({"type": "error", "error": {"type": reply.error_type, "message": reply.error_message}}, "error")


def openai_events(reply: Reply, model: str) -> Iterator[bytes]:
    """The SSE chunks of `reply` in the OpenAI Chat Completions streaming format (with include_usage)."""
    base = {"id": f"chatcmpl-{next(_ids):08d}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "service_tier": "default", "system_fingerprint": "fp_loopback"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice], "usage": None})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for n, piece in enumerate(reply.chunks):
        if reply.error_after == n:
            break
        yield chunk({"content": piece})
    if reply.malformed is not None:
        yield f"data: {reply.malformed}\n\n".encode()
        return
    if reply.error_after is not None or reply.hang or reply.drop:
        return
    for index, (call_id, name, arguments) in enumerate(reply.tools):
        head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        yield chunk({"tool_calls": [head]})
        for piece in _pieces(arguments):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, reply.stop_reason or ("tool_calls" if reply.tools else "stop"))
    usage = {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
             "total_tokens": reply.input_tokens + reply.output_tokens}
    yield _sse({**base, "choices": [], "usage": usage})
    yield _sse("[DONE]")


def openai_error_event(reply: Reply) -> bytes:
    return _sse({"error": {"message": reply.error_message, "type": reply.error_type, "param": None, "code": None}})


def _pieces(arguments: str, size: int = 7) -> list[str]:
    return [arguments[i:i + size] for i in range(0, len(arguments), size)] or [""]


def error_body(path: str, reply: Reply) -> dict[str, Any]:
    """The JSON body of an HTTP error, as each API words it."""
    if path.endswith("/messages"):
        kind = reply.error_type or ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": reply.error_message}, "request_id": f"req_{next(_ids):08d}"}
    kind, code = OPENAI_ERROR_TYPES.get(reply.status, ("server_error", None))
    return {"error": {"message": reply.error_message, "type": reply.error_type or kind, "param": None, "code": reply.error_code or code}}


class LoopbackLLM:
    """The server: `script(...)` queues replies, `requests` records what arrived, `base_url` is where it listens."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default: Reply | None = None  # used when the script is exhausted
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="loopback-llm", daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> LoopbackLLM:
        """Queue replies; each request takes the next one."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def bodies(self) -> list[Any]:
        """The JSON bodies of the requests so far."""
        return [r.body for r in self.requests]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
        """Poll `predicate` from an async test until it holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LoopbackLLM:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("loopback server did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    # -- HTTP ----------------------------------------------------------------------------------

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else self.default

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client hung up, or the server is stopping: end this connection quietly
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request on a connection; return whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest(method, path, headers, body)
        self.requests.append(record)
        if path not in ("/v1/messages", "/v1/chat/completions") or method != "POST":
            reply: Reply | None = Reply(status=404, error_message=f"no route {method} {path}")
        else:
            reply = self._next_reply()
        if reply is None:
            reply = Reply(status=400, error_message="loopback server: no scripted reply left")
        if reply.status != 200:
            payload = json.dumps(error_body(path, reply)).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(f"HTTP/1.1 {reply.status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
                         f"{extra}\r\n".encode() + payload)
            await writer.drain()
            record.completed = True
            return True
        # Stream the reply while watching the socket: EOF before the end means the client hung up.
        streaming = asyncio.ensure_future(self._stream(path, body, reply, writer))
        watching = asyncio.ensure_future(reader.read(1))
        done, _ = await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finished = streaming in done and streaming.exception() is None
        for task in (streaming, watching):
            task.cancel()
        await asyncio.gather(streaming, watching, return_exceptions=True)
        if finished and not (watching.done() and not watching.cancelled()):
            record.completed = True
            return True
        record.disconnected = True
        return False

    async def _stream(self, path: str, body: Any, reply: Reply, writer: asyncio.StreamWriter) -> None:
        if reply.hang_before_headers:
            await asyncio.Event().wait()
        anthropic = path.endswith("/messages")
        model = body.get("model", "?") if isinstance(body, dict) else "?"
        request_id = ("request-id: req_" if anthropic else "x-request-id: req_") + f"{next(_ids):08d}"
        writer.write(("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
                      f"transfer-encoding: chunked\r\n{request_id}\r\n\r\n").encode())
        events = list(anthropic_events(reply, model) if anthropic else openai_events(reply, model))
        if reply.error_after is not None:
            events.append(anthropic_error_event(reply) if anthropic else openai_error_event(reply))
        for n, event in enumerate(events):
            if n and reply.delay:
                await asyncio.sleep(reply.delay)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        if reply.hang:
            await asyncio.Event().wait()
        if reply.drop:
            writer.transport.abort()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


class RecordingSleep:
    """A stand-in for `asyncio.sleep` to pass as `Agent(sleep=...)`: records the delays, does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def llm_server() -> Iterator[LoopbackLLM]:
    """A running loopback LLM server, stopped after the test."""
    server = LoopbackLLM().start()
    try:
        yield server
    finally:
        server.stop()
