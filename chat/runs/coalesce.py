"""Delta coalescing at the source: flush at COALESCE_CHARS or COALESCE_MS, whichever comes first."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable


class DeltaCoalescer:
    """Buffers streamed text and hands it to `flush_to(seq, text, started_at)` in numbered chunks
    (seq from 1); `started_at` is the wall-clock time the chunk's first text arrived."""

    def __init__(
        self,
        flush_to: Callable[[int, str, float], Awaitable[None]],
        max_chars: int = 50,
        max_delay_ms: int = 100,
        widen: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self.flush_to = flush_to
        self.base_chars = max_chars
        self.base_delay = max_delay_ms / 1000
        # Under load the window widens by this factor (>= 1), so deltas/s stay below the knee.
        self.widen = widen
        self.buffer = ""
        self.limit = float(max_chars)  # the size that flushes the current chunk
        self.started_at = 0.0
        self.seq = 0
        self.text = ""  # everything flushed so far: exactly the concatenated deltas
        self._timer: asyncio.TimerHandle | None = None
        self._pending: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(self, text: str) -> None:
        text = text.replace("\x00", "")  # no database stores it, and the replay log marks frames with it
        if not self.buffer:
            # A new chunk: its window is set now (the load is looked up once per chunk, not per token).
            self.started_at = time.time()
            widen = self.widen()
            self.limit = self.base_chars * widen
            if self.seq and text:
                self._timer = asyncio.get_running_loop().call_later(self.base_delay * widen, self._on_timer)
        self.buffer += text
        # The first text of a run goes out at once: time to first token is what users feel.
        if self.seq == 0 or len(self.buffer) >= self.limit:
            await self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._pending = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Publish whatever is buffered now."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self.buffer:
                return
            chunk, self.buffer = self.buffer, ""
            self.seq += 1
            self.text += chunk
            # A stop must not cut a publish in half: the stored text would then hold a chunk the
            # replay log lacks. Finish this one, then let the cancellation through.
            publishing = asyncio.ensure_future(self.flush_to(self.seq, chunk, self.started_at))
            try:
                await asyncio.shield(publishing)
            except asyncio.CancelledError:
                await publishing
                raise

    async def numbered(self, publish: Callable[[int], Awaitable[None]]) -> None:
        """Flush the text, then `publish(seq)` a non-text run frame under the next seq, in order."""
        await self.flush()
        async with self._lock:
            self.seq += 1
            publishing = asyncio.ensure_future(publish(self.seq))
            try:
                await asyncio.shield(publishing)
            except asyncio.CancelledError:
                await publishing
                raise

    async def close(self) -> None:
        """Flush the rest and wait for a timer flush in flight."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        await self.flush()
