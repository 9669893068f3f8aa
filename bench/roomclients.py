"""Room members: one socket per bench user on `/ws/rooms/<slug>/`, read by a task of its own.

A member reads every frame PROTOCOL.md lists for a room and records what the room scenarios
measure: when each `message.created` of the current phase arrived (the sender writes its send time
and the message's index into the text, so no clock but the machine's is needed), the `run.*`
frames of the AI's answer (gapless seq, the terminal frame, the stored text), and how many
`typing` and `presence` frames came. `typing` and `presence` frames are counted without decoding
their JSON: during the joins of a 500-member room every join sends every member the whole
participant list.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
import uuid
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

MAX_ERRORS = 40
# The text of a bench message: no "@ai" and no "?", so the room's AI stays quiet (rooms/ai.py).
CONTENT = re.compile(r"^(?:@ai )?bench room (\S+) msg (\d+) sent (\d+\.\d+)")


def content(tag: str, index: int, ai: bool = False) -> str:
    return f"{'@ai ' if ai else ''}bench room {tag} msg {index} sent {time.time():.6f}"


class RunSeen:
    """One AI run as one member saw it."""

    def __init__(self) -> None:
        self.last = 0
        self.parts: list[str] = []
        self.status: str | None = None
        self.errors: list[str] = []
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.started = False
        self.t_started: float | None = None  # run.started received

    def summary(self) -> dict[str, Any]:
        text = "".join(self.parts)
        return {"status": self.status, "seq": self.last, "chars": len(text), "sha1": hashlib.sha1(text.encode()).hexdigest(),
                "t_first": self.t_first, "t_last": self.t_last, "started": self.started}


class RoomConn:
    """One member's socket and what it received."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.index: int = spec["index"]
        self.ws = None
        self.reader: asyncio.Task[None] | None = None
        self.participants = 0  # the size of the last participant list it got
        self.presence_raw: str | None = None  # the last presence frame, decoded only when asked
        self.presence_frames = 0
        self.presence_at = 0.0
        self.typing_frames = 0
        self.typing_times: list[float] = []  # receive times of typing frames, while `count_typing`
        self.count_typing = False
        self.tag: str | None = None  # the phase whose messages are recorded
        self.got: list[tuple[int, float, float]] = []  # (index, send time, receive time) of this phase's messages
        self.runs: dict[str, RunSeen] = {}
        self.received: list[list[Any]] = []  # [run_id, seq, receive time] per delta (joined with bench/stamps.py)
        self.other: dict[str, int] = {}
        self.errors: list[str] = []
        self.closed: str | None = None

    async def open(self, timeout: float = 30.0) -> None:
        s = self.spec
        self.ws = await connect(
            f"{s['url']}/ws/rooms/{s['slug']}/", origin=s["origin"], additional_headers={"Cookie": f"sessionid={s['cookie']}"},
            compression=None, proxy=None, ping_interval=None, open_timeout=timeout, close_timeout=2, max_size=2**22,
        )
        try:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        except ConnectionClosed as closed:
            raise RuntimeError(f"closed before session.ready: {closed.rcvd.code if closed.rcvd else 'no close frame'}") from None
        if frame.get("type") != "session.ready":
            raise RuntimeError(f"first frame was {frame.get('type')!r}, not session.ready")
        self.participants = len(frame.get("participants") or [])
        self.reader = asyncio.create_task(self._read())

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"member {self.index}: {text}")

    async def _read(self) -> None:
        ws = self.ws
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as closed:
                self.closed = str(closed.rcvd.code if closed.rcvd else "no close frame")
                return
            now = time.time()
            head = raw[:24]
            if head.startswith('{"type": "typing"'):
                self.typing_frames += 1
                if self.count_typing:
                    self.typing_times.append(now)
                continue
            if head.startswith('{"type": "presence"'):
                self.presence_frames += 1
                self.presence_raw, self.presence_at = raw, now
                continue
            try:
                self.handle(json.loads(raw), now)
            except Exception as error:  # noqa: BLE001 - a frame this client cannot read is a finding
                self.error(f"could not handle {raw[:80]!r}: {error!r}")

    def handle(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        if kind == "message.created":
            m = CONTENT.match(frame["message"].get("content") or "")
            if m and m.group(1) == self.tag:
                self.got.append((int(m.group(2)), float(m.group(3)), now))
            elif frame["message"].get("role") == "user" and not m:
                self.error(f"message.created of a message no bench member sent: {frame['message'].get('content')!r:.60}")
        elif kind == "run.delta":
            run = self.runs.setdefault(frame["run_id"], RunSeen())
            seq = frame["seq"]
            if seq != run.last + 1:
                run.errors.append(f"run {frame['run_id']}: delta seq {seq} after {run.last} ({'duplicate' if seq <= run.last else 'gap'})")
                if seq <= run.last:
                    return
            run.parts.append(frame["text"])
            run.last = seq
            run.t_first = run.t_first or now
            run.t_last = now
            self.received.append([frame["run_id"], seq, now])
        elif kind in ("run.completed", "run.stopped", "run.failed"):
            run = self.runs.setdefault(frame["run_id"], RunSeen())
            if run.status is not None:
                run.errors.append(f"run {frame['run_id']}: a second terminal frame {kind}")
                return
            run.status = kind.split(".", 1)[1]
            if frame.get("seq") is not None and frame["seq"] != run.last:
                run.errors.append(f"run {frame['run_id']}: {kind} says last seq {frame['seq']}, received {run.last}")
            stored = frame.get("message") or {}
            if "content" in stored and stored["content"] != "".join(run.parts):
                run.errors.append(f"run {frame['run_id']}: stored text ({len(stored['content'])} chars) != received "
                                  f"({len(''.join(run.parts))} chars)")
        elif kind in ("run.started", "run.queued"):
            run = self.runs.setdefault(frame["run_id"], RunSeen())
            run.started = run.started or kind == "run.started"
            if kind == "run.started":
                run.t_started = now
        elif kind == "typing":  # not in the canonical spelling the fast path knows
            self.typing_frames += 1
            if self.count_typing:
                self.typing_times.append(now)
        elif kind == "presence":
            self.presence_frames += 1
            self.presence_raw, self.presence_at = json.dumps(frame), now
        elif kind == "error":
            self.error(f"error frame {frame.get('code')}: {frame.get('message')} (ref {frame.get('ref')})")
        else:  # session.ready never again; message.updated/deleted, room.updated, run.tool_*, history, pong: tolerated
            self.other[kind] = self.other.get(kind, 0) + 1

    def participant_count(self) -> int:
        if self.presence_raw is not None:
            self.participants = len(json.loads(self.presence_raw).get("participants") or [])
            self.presence_raw = None
        return self.participants


# --- the commands of a client process (bench/pool.py) ---------------------------------------


async def open_all(conns: list[Any], cmd: dict[str, Any]) -> dict[str, Any]:
    """Join `specs` to their room, `concurrency` handshakes at a time; each join waits for session.ready."""
    gate = asyncio.Semaphore(cmd.get("concurrency", 4))
    errors: list[str] = []
    started = time.time()
    opened = 0

    async def one(spec: dict[str, Any]) -> None:
        nonlocal opened
        conn = RoomConn(spec)
        async with gate:
            for attempt in range(3):
                try:
                    await conn.open()
                    conns.append(conn)
                    opened += 1
                    return
                except Exception as error:  # noqa: BLE001 - reported to the driver
                    if attempt == 2:
                        errors.append(repr(error))
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(one(spec) for spec in cmd["specs"]))
    return {"opened": opened, "failed": len(errors), "errors": errors[:10], "secs": time.time() - started}


def _members(conns: list[Any]) -> list[RoomConn]:
    return [c for c in conns if isinstance(c, RoomConn)]


async def settle(conns: list[Any], cmd: dict[str, Any]) -> dict[str, Any]:
    """Wait until every member's last participant list has `expect` names and no presence frame came
    for `quiet` seconds (or `timeout`)."""
    members = _members(conns)
    deadline = time.time() + cmd["timeout"]
    while True:
        now = time.time()
        full = sum(1 for c in members if c.participant_count() == cmd["expect"])
        last = max((c.presence_at for c in members), default=0.0)
        if (full == len(members) and now - last >= cmd["quiet"]) or now >= deadline:
            break
        await asyncio.sleep(0.1)
    return {"members": len(members), "full": full, "presence_frames": sum(c.presence_frames for c in members),
            "closed": sum(1 for c in members if c.closed), "quiet_for": round(time.time() - last, 2)}


async def phase(conns: list[Any], cmd: dict[str, Any]) -> dict[str, Any]:
    """One measured phase in a room. Members with an index in `senders` send `count` messages at
    `rate` a second from `start_at` (with `ai`, one message that addresses the AI instead); those in
    `typers` send `typing: true` every `typing_period` s until the sending ends. Every member
    records; the phase ends when each has every message (and the AI's terminal frame) or at
    `give_up`."""
    members = _members(conns)
    tag = cmd["tag"]
    for c in members:
        c.tag, c.got, c.runs, c.received, c.errors = tag, [], {}, [], []
        c.typing_times, c.typing_frames = [], 0
        c.count_typing = bool(cmd.get("typers"))
    sent_errors: list[str] = []
    t_end = cmd["start_at"] + cmd["count"] / cmd["rate"]
    send_times: list[float] = []

    async def send(c: RoomConn) -> None:
        for i in range(cmd["count"]):
            at = cmd["start_at"] + i / cmd["rate"]
            if at > time.time():
                await asyncio.sleep(at - time.time())
            send_times.append(time.time())
            frame = {"type": "message.send", "content": content(tag, i, ai=cmd.get("ai", False)), "client_id": uuid.uuid4().hex}
            try:
                await c.ws.send(json.dumps(frame))
            except ConnectionClosed as closed:
                sent_errors.append(f"sender {c.index}: socket closed ({closed})")
                return

    async def typing(c: RoomConn) -> None:
        frame = json.dumps({"type": "typing", "typing": True})
        period = cmd["typing_period"]
        # Typers start at random over the first second (the server's throttle period), as people do:
        # started together, their throttled `true`s would reach the room in one burst a second.
        at = cmd["typing_from"] + random.uniform(0, 1.0)
        while at < t_end:
            if at > time.time():
                await asyncio.sleep(at - time.time())
            try:
                await c.ws.send(frame)
            except ConnectionClosed:
                return
            at += period

    tasks = [asyncio.create_task(send(c)) for c in members if c.index in cmd["senders"]]
    tasks += [asyncio.create_task(typing(c)) for c in members if c.index in cmd.get("typers", ())]
    await asyncio.gather(*tasks)

    def done(c: RoomConn) -> bool:
        if len(c.got) < cmd["count"]:
            return False
        return not cmd.get("ai") or any(r.status for r in c.runs.values())

    while time.time() < cmd["give_up"] and not all(done(c) for c in members):
        await asyncio.sleep(0.05)
    for c in members:
        c.count_typing = False
        c.tag = None

    # Per message: every member's send -> receipt; per member: every message once, in order.
    per_message: dict[int, list[float]] = {}
    problems: list[str] = list(sent_errors)
    complete = 0
    for c in members:
        order = [i for i, _, _ in c.got]
        if order == list(range(cmd["count"])):
            complete += 1
        else:
            missing = sorted(set(range(cmd["count"])) - set(order))
            dups = len(order) - len(set(order))
            unordered = any(b < a for a, b in zip(order, order[1:], strict=False))
            problems.append(f"member {c.index}: {len(order)} of {cmd['count']} messages, missing {missing[:5]}, "
                            f"{dups} duplicate(s){', out of order' if unordered else ''}")
        for i, t_send, t_recv in c.got:
            per_message.setdefault(i, []).append((t_recv - t_send) * 1000)
        if c.closed:
            problems.append(f"member {c.index}: the socket closed ({c.closed})")
        problems += c.errors
        for run in c.runs.values():
            problems += [f"member {c.index}: {e}" for e in run.errors]
    win = (cmd["start_at"], t_end)  # the storm, while the messages go
    typing_per_member = [sum(1 for t in c.typing_times if win[0] <= t <= win[1]) / max(1e-3, win[1] - win[0]) for c in members]
    return {"members": len(members), "complete": complete, "per_message": {str(k): v for k, v in per_message.items()},
            "problems": problems[:MAX_ERRORS], "problem_count": len(problems), "send_times": send_times,
            "runs": [{"member": c.index, "run_id": rid, **r.summary()} for c in members for rid, r in c.runs.items()],
            "first_delta": [(r.t_first - c.got[0][1]) * 1000 for c in members for r in c.runs.values() if r.t_first and c.got],
            "to_started": [(r.t_started - c.got[0][1]) * 1000 for c in members for r in c.runs.values() if r.t_started and c.got],
            "sends": [[rid, c.got[0][1]] for c in members for rid, r in c.runs.items() if r.t_first and c.got],
            "received": [x for c in members for x in c.received],
            "typing_per_member": typing_per_member, "other": [c.other for c in members if c.other]}
