"""Executing one run: claim it, stream it through the agent library, publish, checkpoint, finish once."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

from agents import Agent, AgentConfigError, Finished, ProviderError, Retrying, RunError, TextDelta, ToolCall, ToolResult
from agents.breaker import CircuitBreaker, breaker_for, closed_breakers
from agents.events import ContextTrimmed, ModelFallback
from agents.models import PROVIDERS, parse_model_id
from chat.db import db_call
from chat.runs import approvals, benchstamps, finish_sql, lifecycle
from chat.runs.approvals import PauseForApproval
from chat.runs.coalesce import DeltaCoalescer
from chat.runs.heartbeat import LocalRun, heartbeat
from chat.runs.publish import publish, publish_delta, publish_end, publish_run_frame
from chat.runs.stop import Watch, stop_signal
from chat.runs.tools import tools_for
from chat.runs.transcript import Transcript
from nous_site.metrics import FIRST_TOKEN, RUN_ERRORS, RUN_SECONDS, provider_of

log = logging.getLogger("nous.runs")


async def execute_run(run_id: str) -> None:
    """Run one queued run to its end. Safe to call twice: only the first claim executes."""
    # Watched for a stop before the claim, so no round trip asks for an earlier one after it.
    watch = stop_signal().watch(run_id)
    try:
        # The providers' breakers are read while the claim runs: no round trip of their own after it.
        closed = asyncio.ensure_future(closed_breakers(PROVIDERS))
        try:
            claimed = await lifecycle.claim(run_id)
        except BaseException:
            closed.cancel()
            raise
        if claimed is None:
            closed.cancel()
            log.info("run %s was not queued any more; nothing to do", run_id)
            return
        await RunExecution(claimed, await _settled(closed), watch).run()
    finally:
        stop_signal().forget(watch)


async def _settled(closed: asyncio.Future[frozenset[str]]) -> frozenset[str]:
    """The breakers read closed; none if the read failed (each call asks the store, as ever)."""
    try:
        return await closed
    except Exception:
        log.exception("reading the breakers failed")
        return frozenset()


def load_factor() -> float:
    """How much to widen the coalescing window: 1 up to NOUS_COALESCE_WIDEN_AT runs streaming in
    this process, then in proportion, up to NOUS_COALESCE_MAX_WIDEN."""
    runs = len(heartbeat().runs)
    return min(settings.NOUS_COALESCE_MAX_WIDEN, max(1.0, runs / settings.NOUS_COALESCE_WIDEN_AT))


class RunExecution:
    """The streaming part of a run, with its stop watcher and heartbeat beside it."""

    def __init__(self, claimed: lifecycle.ClaimedRun, closed_breakers: frozenset[str], watch: Watch) -> None:
        self.claimed = claimed
        self.watch = watch  # for its stop, made before the claim (`execute_run`)
        self.closed_breakers = closed_breakers  # read as the run was claimed
        self.run_id = claimed.run_id
        self.conversation_id = claimed.conversation_id
        self.coalescer = DeltaCoalescer(self._flush, settings.NOUS_COALESCE_CHARS, settings.NOUS_COALESCE_MS, load_factor)
        # A run that waited for an approval goes on numbering and writing after what it streamed.
        self.coalescer.seq, self.coalescer.text = claimed.last_seq, claimed.partial_text
        self.transcript = Transcript(claimed.paused_state)
        self.outcome: tuple[str, Any] | None = None
        self.calls: dict[str, ToolCall] = {}
        self.first_token_at: Any = None
        self.claimed_at = time.monotonic()
        self.retries = 0
        self.fallback_model: str | None = None  # the model answering, once the first one gave up
        self.trimmed_messages = 0

    async def _flush(self, seq: int, text: str, started_at: float) -> None:
        await self._after_started()
        if benchstamps.ENABLED:  # the benchmark's own record, never in the frame
            benchstamps.record(self.run_id, seq, started_at, time.time())
        if seq == 1:
            self.first_token_at = timezone.now()
            FIRST_TOKEN.labels(provider_of(self.claimed.model)).observe(time.monotonic() - self.claimed_at)
        await publish_delta(self.conversation_id, self.run_id, seq, text)

    async def run(self) -> None:
        # `run.started` goes out while the agent starts; the run's other frames wait for it (`_after_started`).
        self.started = asyncio.create_task(self._announce_start())
        local = LocalRun(self.run_id, self.claimed.message_id, lambda: self.coalescer.text)
        heartbeat().register(local)
        streaming = asyncio.create_task(self._stream())
        stop_wait = asyncio.create_task(self._wait_for_stop())
        # The heartbeat sets `must_stop` when the database says so (stop flag, or ended elsewhere).
        checkpoint_stop = asyncio.create_task(local.must_stop.wait())
        tasks = (streaming, stop_wait, checkpoint_stop)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            heartbeat().unregister(self.run_id)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        crash = results[0] if streaming in done and not isinstance(results[0], asyncio.CancelledError) else None
        try:
            await self.coalescer.close()
        except Exception as error:  # e.g. the replay log is gone: still end the run, once
            crash = crash or error
        if isinstance(crash, BaseException):
            log.error("run %s crashed", self.run_id, exc_info=crash)
            self.outcome = ("failed", ProviderError("internal", "The run crashed"))
        if self.outcome is None:
            # Stopped by `run.stop` (signal or flag seen at a checkpoint), or ended by someone else.
            self.outcome = ("stopped", None)
        await self._finish(*self.outcome)

    async def _stream(self) -> None:
        try:
            tools = tools_for(self.claimed.author_id, self.conversation_id, self.claimed.in_room, self.claimed.approval_tools)
            agent = Agent(self.claimed.model, instructions=self.claimed.instructions, model_settings=self.claimed.model_settings,  # type: ignore[arg-type]
                          tools=tools, approver=self._approve, fallback=self.claimed.fallback_models,
                          context_windows=settings.NOUS_CONTEXT_WINDOWS, breaker=self._breaker())
        except AgentConfigError as error:
            self.outcome = ("failed", ProviderError("provider_error", str(error)))
            return
        try:
            if self.claimed.paused_state is not None:
                await self._resolve_pending(agent)
                events = agent.run_stream(self.transcript.messages, message_history=self.claimed.history,
                                          text_streamed=bool(self.claimed.partial_text))
            else:  # the history ends with the user message that triggered this run
                events = agent.run_stream(self.claimed.history)
            async for event in events:
                await self._on_event(event)
        except PauseForApproval:
            self.outcome = ("waiting", self.transcript.paused_state())

    def _breaker(self) -> CircuitBreaker:
        """The model's breaker; read closed with the claim, its first call needs no round trip."""
        breaker = breaker_for(parse_model_id(self.claimed.model)[0])
        return breaker.known_closed() if breaker.name in self.closed_breakers else breaker

    async def _on_event(self, event: Any) -> None:
        match event:
            case TextDelta(text=text):
                self.transcript.on_text(text)
                await self.coalescer.add(text)
            case ToolCall():
                self.transcript.on_call(event)
                self.calls[event.id] = event
                await self._publish_numbered({"type": "run.tool_call", "tool_call": event.to_dict()})
            case ToolResult():
                await self._on_result(self.calls.get(event.tool_call_id), event)
            case Retrying():
                self.retries += 1
            case ModelFallback(to_model=to_model):
                self.fallback_model = to_model
            case ContextTrimmed(dropped_messages=dropped):
                self.trimmed_messages = dropped
            case Finished(result=result):
                self.outcome = ("completed", result.usage.to_dict())
            case RunError(error=error):
                self.outcome = ("failed", error)

    async def _on_result(self, call: Any, result: ToolResult) -> None:
        self.transcript.on_result(result)
        await db_call(lifecycle.store_tool_message)(self.claimed, call, result)
        await self._publish_numbered({
            "type": "run.tool_result", "tool_call_id": result.tool_call_id, "result": result.result,
            "is_error": result.is_error,
        })

    async def _approve(self, call: ToolCall) -> tuple[bool, str]:
        """The agent's approver: the call waits for a human, so the run pauses (it never says yes)."""
        approval = await db_call(approvals.request_approval)(self.run_id, call)
        await self._publish_numbered({"type": "run.approval_required", "tool_call": call.to_dict(),
                                      "expires_at": approval.to_dict()["expires_at"]})
        raise PauseForApproval(call)

    async def _resolve_pending(self, agent: Agent) -> None:
        """The calls the paused turn still had, made as the agent makes them: an approved one runs,
        a rejected (or expired) one is told so, an undecided one pauses the run again (`_approve`)."""
        for pending in self.claimed.paused_state.get("pending", []):  # type: ignore[union-attr]
            call = agent.marked(ToolCall(pending["id"], pending["name"], pending["arguments"]))
            self.calls[call.id] = call
            decision = await db_call(approvals.decision_of)(self.run_id, call)
            if decision is None or decision.status == decision.Status.APPROVED:
                result = await agent.call_tool(call, approved=decision is not None)
            else:
                result = ToolResult(call.id, call.name, approvals.result_of(decision), is_error=True)
            await self._on_result(call, result)

    async def _publish_numbered(self, frame: dict[str, Any]) -> None:
        """A tool frame takes the run's next seq, after the text before it, into the replay log."""
        async def publish_as(seq: int) -> None:
            await self._after_started()
            await publish_run_frame(self.conversation_id, {**frame, "run_id": self.run_id, "seq": seq})

        await self.coalescer.numbered(publish_as)

    async def _announce_start(self) -> None:
        try:
            await publish(self.conversation_id, {"type": "run.started", "run_id": self.run_id, "model": self.claimed.model})
        except Exception:  # the run goes on: its frames are in the replay log all the same
            log.exception("run %s: publishing run.started failed", self.run_id)

    async def _after_started(self) -> None:
        """Wait until `run.started` is out, so that no frame of the run reaches a socket before it
        (without passing a stop's cancellation on to it)."""
        if not self.started.done():
            await asyncio.wait([self.started])

    async def _wait_for_stop(self) -> None:
        """Return when a stop is signalled. If the signal fails, the checkpoint's flag still works."""
        try:
            await stop_signal().wait(self.watch)
        except Exception:
            log.exception("stop signal of run %s failed; relying on the checkpoint", self.run_id)
            await asyncio.Event().wait()

    async def _finish(self, status: str, detail: Any) -> None:
        await self._after_started()
        if status == "waiting":
            paused = await db_call(approvals.pause_run)(self.run_id, self.coalescer.text, self.coalescer.seq, detail)
            from chat.runs import admission  # they hand runs to this module's executor
            from chat.runs.actions import submit_run

            if paused == "queued":  # decided before it had paused: it goes on now, in the slot it holds
                await submit_run(self.conversation_id, self.run_id, self.claimed.author_id, first=True)
            elif paused is not None:
                await admission.release(self.run_id)  # a run waiting for a human holds no slot
            if paused is not None:
                return  # no end: the decision queues it again
            status, detail = "stopped", None  # stopped (or ended elsewhere) while it paused
        usage, error = (detail, None) if status == "completed" else (None, detail.to_dict() if detail else None)
        provider = provider_of(self.claimed.model)
        RUN_SECONDS.labels(provider).observe(time.monotonic() - self.claimed_at)
        if error:
            RUN_ERRORS.labels(provider, error.get("code", "internal")).inc()
        frame = await finish_sql.finish(self.run_id, status, self.coalescer.text, self.coalescer.seq, usage, error,
                                        first_token_at=self.first_token_at, retries=self.retries,
                                        fallback_model=self.fallback_model, trimmed_messages=self.trimmed_messages)
        if frame is None:
            log.warning("run %s had already been ended elsewhere", self.run_id)
            return
        await publish_end(self.conversation_id, frame)

