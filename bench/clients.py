"""Real websocket clients speaking PROTOCOL.md, in processes of their own (asyncio + `websockets`).

bench/pool.py runs them in client processes driven over pipes. Every client checks what it
receives: each run's deltas arrive once, with seq 1, 2, 3 ... and no gap; the terminal frame's
stored text equals the received text; a completed answer equals what the deterministic `test:`
model produces for the prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from functools import lru_cache
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

MAX_ERRORS = 40  # kept per client process; the count is always exact
# After run.stop, a socket that stays silent QUIET seconds without the terminal frame has lost it
# (a socket's frames come in order, so a backlog still draining is never silent that long); one
# still draining DRAIN_CAP seconds after run.stop is overloaded. Either way the client then asks on
# a new socket with run.resume, which must answer within PROBE_WAIT.
QUIET = 8.0
DRAIN_CAP = 25.0
PROBE_WAIT = 8.0


@lru_cache(maxsize=4096)
def expected_answer(model: str, prompt: str) -> str | None:
    """What the deterministic test model answers to `prompt` (None for another provider)."""
    if not model.startswith("test:"):
        return None
    from agents.models.base import ModelRequest
    from agents.models.test import TestModel

    words = TestModel.from_name(model[5:]).answer_for(ModelRequest(messages=[{"role": "user", "content": prompt}]))
    return "".join(words)


class Stats:
    """What one client process measured in one `chat` job."""

    def __init__(self) -> None:
        # [run_id, seq, receive time] of each delta in the window; the driver joins them with the
        # servers' t_emit/t_flush (bench/stamps.py): the frames carry no timestamps.
        self.received: list[list[Any]] = []
        self.sends: list[list[Any]] = []  # [run_id, message.send time] of each run that got a delta
        self.first_delta: list[float] = []  # ms: message.send - first run.delta received
        self.to_created: list[float] = []  # ms: message.send - message.created (stored, answered directly)
        self.to_started: list[float] = []  # ms: message.send - run.started (a worker claimed the run)
        self.deltas_window = 0
        self.deltas_total = 0
        self.reconnects = 0
        self.resume_dups = 0  # after a reconnect: deltas received twice (replay overlapping live), dropped
        self.resume_ahead = 0  # after a reconnect: live deltas ahead of the replay, held until it caught up
        self.late_ends = 0  # runs whose end was fetched with run.resume because the live socket was still draining
        self.stopped_by_client = 0  # runs still going at the end of the phase, stopped with run.stop
        self.runs: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.error_count = 0
        self.late: list[str] = []
        self.late_count = 0

    def error(self, text: str, liveness: bool = False) -> None:
        if liveness:
            self.late_count += 1
            if len(self.late) < MAX_ERRORS:
                self.late.append(text)
            return
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)


class Run:
    """One message.send and the run it starts, as this client saw it."""

    def __init__(self, model: str, prompt: str) -> None:
        self.model, self.prompt = model, prompt
        self.client_id = uuid.uuid4().hex
        self.run_id: str | None = None
        self.t_send = 0.0
        self.t_first: float | None = None
        self.last = 0
        self.parts: list[str] = []
        self.status: str | None = None
        self.errors: list[str] = []
        self.late: list[str] = []
        self.reconnects = 0
        self.dropped = False
        self.stop_sent = False
        self.stop_sent_at = 0.0
        self.probe: str | None = None  # why the client asked on a new socket: "quiet" or "cap"
        self.probe_at = 0.0
        self.pending: dict[int, str] = {}  # deltas received ahead of a gap (after a reconnect only)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def fail(self, what: str, liveness: bool = False) -> None:
        """Record a problem. `liveness`: something did not arrive in time (overload), as opposed to
        integrity (a gap, a duplicate, a text that differs): a load level reports those apart."""
        (self.late if liveness else self.errors).append(f"run {self.run_id} ({self.prompt!r}): {what}")

    def end(self, frame: dict[str, Any]) -> None:
        self.status = frame["type"].split(".", 1)[1]
        if self.status == "stopped" and not self.stop_sent:
            self.fail("run.stopped, but this client sent no run.stop")
        text = self.text
        if frame.get("seq") is not None and frame["seq"] != self.last:
            self.fail(f"{frame['type']} says last seq {frame['seq']}, received {self.last} (held ahead: {sorted(self.pending)})")
        stored = (frame.get("partial") if self.status == "failed" else frame.get("message")) or {}
        if "content" in stored and stored["content"] != text:
            self.fail(f"stored text ({len(stored['content'])} chars) != received text ({len(text)} chars)")
        expected = expected_answer(self.model, self.prompt)
        if expected is not None:
            if self.status == "completed" and text != expected:
                self.fail(f"completed text ({len(text)} chars) != the model's answer ({len(expected)} chars)")
            elif not expected.startswith(text):
                self.fail("received text is not a prefix of the model's answer")

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "sha1": hashlib.sha1(self.text.encode()).hexdigest(),
                "chars": len(self.text), "seq": self.last, "reconnects": self.reconnects, "errors": self.errors, "late": self.late}


class Conn:
    """One socket on one conversation; reconnects (and resumes its run) when the socket dies."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ws = None
        self.ready: dict[str, Any] | None = None

    async def open(self, timeout: float = 30.0) -> None:
        s = self.spec
        self.ws = await connect(
            f"{s['url']}/ws/chat/{s['conv']}/", origin=s["origin"], additional_headers={"Cookie": f"sessionid={s['cookie']}"},
            compression=None, proxy=None, ping_interval=None, open_timeout=timeout, close_timeout=2, max_size=2**20,
        )
        try:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        except ConnectionClosed as closed:
            raise RuntimeError(f"closed before session.ready: {closed.rcvd.code if closed.rcvd else 'no close frame'}") from None
        if frame.get("type") != "session.ready":
            raise RuntimeError(f"first frame was {frame.get('type')!r}, not session.ready")
        self.ready = frame

    # --- one conversation's loop of runs -----------------------------------------------------

    async def chat(self, job: dict[str, Any], stats: Stats, index: int, count: int) -> None:
        start = job["start_at"] + job["stagger"] * index / max(1, count)
        drop = job.get("drop_fraction", 0) and random.random() < job["drop_fraction"]
        for r in range(job["max_runs"]):
            at = start + r * job["period"]
            if max(at, time.time()) >= job["deadline"]:
                return
            if at > time.time():
                await asyncio.sleep(at - time.time())
            run = Run(self.spec["model"], f"bench {self.spec['conv'][:8]} {r} {uuid.uuid4().hex[:6]}")
            await self.follow(run, job, stats, drop_after=job.get("drop_after") if drop and r == 0 else None)
            stats.runs.append(run.summary())
            for e in run.errors:
                stats.error(e)
            for e in run.late:
                stats.error(e, liveness=True)
            if run.status not in ("completed", "failed", "stopped"):
                return  # the socket is lost; the driver reports it

    async def follow(self, run: Run, job: dict[str, Any], stats: Stats, drop_after: int | None) -> None:
        """Send, then read frames until the run's terminal frame, surviving dropped sockets.

        A run still going `drain` seconds after the deadline (or `run_timeout` after its send) is
        stopped with run.stop, so an overloaded stack ends its phase with every run accounted for:
        it must then end `stopped`, with the stored partial text equal to the received one.
        """
        run.t_send = time.time()
        try:
            await self.ws.send(json.dumps({"type": "message.send", "content": run.prompt, "client_id": run.client_id}))
        except ConnectionClosed:
            await self.reconnect(run, job, stats)
        stop_at = min(job["deadline"] + job["drain"], run.t_send + job["run_timeout"])
        last_rx = time.time()
        while run.status is None:
            now = time.time()
            if not run.stop_sent and now >= stop_at:
                run.stop_sent, run.stop_sent_at = True, now
                stats.stopped_by_client += 1
                try:
                    await self.ws.send(json.dumps({"type": "run.stop", **({"run_id": run.run_id} if run.run_id else {})}))
                except ConnectionClosed:
                    pass
            if run.stop_sent and not run.probe:
                quiet = now - max(last_rx, run.stop_sent_at) >= QUIET
                if quiet or now - run.stop_sent_at >= DRAIN_CAP:
                    # No terminal frame yet: ask on a new socket, to tell a lost frame from a backlog.
                    run.probe, run.probe_at = ("quiet" if quiet else "cap"), now
                    await self.ws.close()
                    await self.reconnect(run, job, stats)
                    continue
            if run.probe and now >= run.probe_at + PROBE_WAIT:
                run.fail(f"no terminal frame on the live socket after run.stop, nor {PROBE_WAIT:.0f} s after run.resume on a new socket "
                         f"(last seq {run.last})", liveness=True)
                run.status = "timeout"
                return
            if not run.stop_sent:
                wake = stop_at
            elif not run.probe:
                wake = min(max(last_rx, run.stop_sent_at) + QUIET, run.stop_sent_at + DRAIN_CAP)
            else:
                wake = run.probe_at + PROBE_WAIT
            try:
                raw = await asyncio.wait_for(self.ws.recv(), max(0.01, wake - now))
            except TimeoutError:
                continue
            except ConnectionClosed:
                await self.reconnect(run, job, stats)
                continue
            last_rx = time.time()
            self.handle(json.loads(raw), run, time.time(), job, stats)
            if drop_after is not None and not run.dropped and run.last >= drop_after and run.status is None:
                run.dropped = True
                self.ws.transport.abort()  # a network drop: no close handshake
                await asyncio.sleep(random.uniform(*job["drop_pause"]))
                await self.reconnect(run, job, stats)

    def handle(self, frame: dict[str, Any], run: Run, now: float, job: dict[str, Any], stats: Stats) -> None:
        kind = frame.get("type")
        if kind == "run.delta":
            if run.run_id is None:
                run.run_id = frame["run_id"]
            elif frame["run_id"] != run.run_id:
                return run.fail(f"delta of another run {frame['run_id']}")
            seq, text = frame["seq"], frame["text"]
            if seq <= run.last:
                if run.parts[seq - 1] != text:
                    return run.fail(f"delta seq {seq} arrived twice with different text")
                if not run.reconnects:
                    return run.fail(f"duplicate delta seq {seq} (have 1..{run.last}) on a socket that never reconnected")
                stats.resume_dups += 1  # the overlap of a run.resume replay with live deltas: dropped by seq
                return None
            if seq > run.last + 1:
                if not run.reconnects:
                    return run.fail(f"gap: delta seq {seq} after {run.last} on a socket that never reconnected")
                run.pending[seq] = text  # live, ahead of the run.resume replay: held until the replay catches up
                stats.resume_ahead += 1
                return None
            self._append(run, seq, text)
            stats.deltas_total += 1
            if run.t_first is None:
                run.t_first = now
                stats.first_delta.append((now - run.t_send) * 1000)
                stats.sends.append([run.run_id, run.t_send])
            if run.reconnects == 0 and job["warm_from"] <= now <= job["deadline"]:
                stats.deltas_window += 1
                stats.received.append([run.run_id, seq, now])
        elif kind == "message.created":
            if frame["message"].get("client_id") == run.client_id and run.reconnects == 0:
                stats.to_created.append((now - run.t_send) * 1000)
        elif kind in ("run.queued", "run.started", "run.tool_call", "run.tool_result"):
            if kind == "run.started" and run.reconnects == 0:
                stats.to_started.append((now - run.t_send) * 1000)
            if run.run_id is None:
                run.run_id = frame["run_id"]
            elif frame["run_id"] != run.run_id:
                run.fail(f"{kind} of another run {frame['run_id']}")
        elif kind in ("run.completed", "run.failed", "run.stopped"):
            if run.run_id is not None and frame["run_id"] != run.run_id:
                return run.fail(f"{kind} of another run {frame['run_id']}")
            run.run_id = frame["run_id"]
            if run.probe == "quiet":
                run.fail(f"{kind} lost: the live socket was silent {QUIET:.0f} s after run.stop and its last frame; "
                         "run.resume on a new socket returned it", liveness=True)
            elif run.probe == "cap":
                stats.late_ends += 1  # overload, not loss: the live socket was still draining its backlog
            run.end(frame)
        elif kind == "error":
            if run.stop_sent and frame.get("code") == "not_found":
                return  # the run ended while run.stop was on its way; its terminal frame comes anyway
            run.fail(f"error frame {frame.get('code')}: {frame.get('message')}")
            if frame.get("ref") == run.client_id:
                run.status = "refused"

    @staticmethod
    def _append(run: Run, seq: int, text: str) -> None:
        while True:
            held = run.pending.pop(seq, None)
            if held is not None and held != text:
                run.fail(f"delta seq {seq}: the replayed text differs from the live one")
            run.parts.append(text)
            run.last = seq
            seq += 1
            if seq not in run.pending:
                return
            text = run.pending[seq]

    async def reconnect(self, run: Run, job: dict[str, Any], stats: Stats) -> None:
        """Open the socket again, then ask for the rest of the run with run.resume(after_seq=last seq)."""
        run.reconnects += 1
        stats.reconnects += 1
        give_up = time.time() + job["reconnect_timeout"]
        while True:
            try:
                await self.open(timeout=5)
                break
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, RuntimeError) as error:
                if time.time() > give_up:
                    run.fail(f"could not reconnect within {job['reconnect_timeout']} s: {error!r}", liveness=True)
                    run.status = "lost"
                    return
                await asyncio.sleep(0.2)
        active = self.ready.get("active_run")
        if run.run_id is None:
            # The socket died before the run id arrived: find the run from the snapshot.
            messages = self.ready.get("messages") or []
            mine = [i for i, m in enumerate(messages) if m.get("client_id") == run.client_id]
            if not mine:  # never stored: send it again; the same client_id cannot store it twice
                await self.ws.send(json.dumps({"type": "message.send", "content": run.prompt, "client_id": run.client_id}))
                return
            later = [m["run_id"] for m in messages[mine[0] + 1 :] if m.get("run_id")]
            run.run_id = active["run_id"] if active else (later[0] if later else None)
            if run.run_id is None:
                run.fail("the resent message has no run")
                run.status = "lost"
                return
        if active and active["run_id"] == run.run_id:
            have, snap = run.text, active.get("content") or ""
            if not (snap.startswith(have) if active["seq"] >= run.last else have.startswith(snap)):
                run.fail(f"session.ready snapshot (seq {active['seq']}) disagrees with the received text (seq {run.last})")
        await self.ws.send(json.dumps({"type": "run.resume", "run_id": run.run_id, "after_seq": run.last}))
