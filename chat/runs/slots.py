"""Admission control: at most NOUS_MAX_ACTIVE_RUNS runs at once across the deployment, the rest
waiting in a fair queue (round robin between users), at most NOUS_MAX_QUEUED_RUNS of them.

Holders are the runs admitted (handed to an executor, not ended yet), each with a lease: the
process streaming the run renews it on every heartbeat, and a run handed over but not claimed yet
gets NOUS_RUN_SLOT_CLAIM_SECS. Expired holders are dropped whenever anyone admits, releases or
sweeps, so a killed worker's slots come back. The waiting order is start-time fair queueing: a
run's tag is max(virtual clock, its user's last tag + 1), ties by arrival, and the virtual clock
is the largest tag admitted so far (a run admitted at once takes a tag too); with alice's 3 runs
and bob's 1 waiting, the order is a1, b1, a2, a3. A run asked to go first (an approval was
decided) gets tag -1, before every tag a user can have.

Process memory in the embedded default, Redis in production: each admit or release is one Lua
script, one round trip, atomic across processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings

from chat.runs.redis_client import LuaScript, redis_client

# Waiting runs whose position changed are told (`run.queued`): the first ones on every move, the
# ones further back when they reach a multiple of this, so a release costs at most ~200 frames.
NOTIFY_EVERY_MOVE_BELOW = 100
NOTIFY_EVERY = 10
TIE_BITS = 16  # score = tag * 2**TIE_BITS + arrival: equal tags in arrival order
FIRST_TAG = -1  # a run that goes first (tags of users start at 0)
# A send is refused before anything is stored when the queue is full. The waiting count an admit
# or release of this process saw recently spares that check its round trip while the queue is
# far from full; the admit itself is the exact, atomic check (a run it refuses ends `overloaded`).
FULL_CHECK_TRUST_SECS = 5.0


@dataclass
class Moves:
    """What an admit or a release changed, for the caller to act on."""

    admitted: list[tuple[str, str]] = field(default_factory=list)  # (run_id, conversation_id): hand them over now
    moved: list[tuple[str, str, int]] = field(default_factory=list)  # (run_id, conversation_id, position): tell them
    waiting: int = 0  # runs waiting after the change


@dataclass
class Admission(Moves):
    outcome: str = "admitted"  # "admitted" (start it), "held" (already holds a slot), "waiting", "full" (refused)
    position: int = 0  # runs ahead of it, when waiting
    handed_over: bool = False  # its `Start` was done: it is on the hand-over list


@dataclass
class Start:
    """What production does in the admission's own round trip: PUBLISH `before` (channel,
    payload) first; then, if the run may start, PUBLISH `on_start` and push its id onto the
    `handover` list (chat.runs.handover). One atomic script, in that order: a worker can take the
    run, and publish its frames, only after the sockets were sent those."""

    handover: str
    before: list[tuple[str, bytes]] = field(default_factory=list)
    on_start: list[tuple[str, bytes]] = field(default_factory=list)

    def args(self) -> list[Any]:
        return [len(self.before), *(x for bell in self.before for x in bell),
                len(self.on_start), *(x for bell in self.on_start for x in bell)]


def should_notify(position: int) -> bool:
    return position < NOTIFY_EVERY_MOVE_BELOW or position % NOTIFY_EVERY == 0


def _expiries() -> tuple[float, float, float]:
    now = time.time()
    return now, now + settings.NOUS_RUN_SLOT_CLAIM_SECS, now + settings.NOUS_RUN_SLOT_TTL_SECS


class MemorySlots:
    """The embedded default: one process holds every run, so its memory is the deployment's."""

    def __init__(self) -> None:
        self.holders: dict[str, float] = {}  # run_id -> lease expiry
        self.waiting: dict[str, tuple[int, str, str, int]] = {}  # run_id -> (score, user, conversation, tag)
        self.last: dict[str, int] = {}  # user -> tag of their newest run + 1 (pruned once the clock passes it)
        self.vclock = 0
        self.arrivals = 0

    def _order(self) -> list[str]:
        return sorted(self.waiting, key=lambda run_id: self.waiting[run_id][0])

    def _forget(self, run_id: str) -> tuple[int, str, str, int]:
        return self.waiting.pop(run_id)

    def _tag(self, user: str) -> int:
        tag = max(self.vclock, self.last.get(user, 0))
        self.last[user] = tag + 1
        return tag

    def _promote(self, now: float, claim_expiry: float) -> list[tuple[str, str]]:
        for run_id in [r for r, expiry in self.holders.items() if expiry <= now]:
            del self.holders[run_id]
        admitted = []
        order = self._order()
        while order and len(self.holders) < settings.NOUS_MAX_ACTIVE_RUNS:
            run_id = order.pop(0)
            _, _, conversation_id, tag = self._forget(run_id)
            self.vclock = max(self.vclock, tag)
            self.holders[run_id] = claim_expiry
            admitted.append((run_id, conversation_id))
        return admitted

    def _moved(self, start: int) -> list[tuple[str, str, int]]:
        if start < 0:
            return []
        order = self._order()
        return [(run_id, self.waiting[run_id][2], pos) for pos, run_id in enumerate(order) if pos >= start and should_notify(pos)]

    async def admit(self, run_id: str, user: str, conversation_id: str, first: bool = False,
                    start: Start | None = None) -> Admission:
        assert start is None, "the embedded default hands runs over in-process"
        now, claim_expiry, _ = _expiries()
        admitted = self._promote(now, claim_expiry)
        shifted = 0 if admitted else -1
        if run_id in self.holders:
            outcome, position = "held", 0
        elif run_id in self.waiting:
            outcome, position = "waiting", self._order().index(run_id)
        elif len(self.holders) < settings.NOUS_MAX_ACTIVE_RUNS:
            self.holders[run_id] = claim_expiry
            self.vclock = max(self.vclock, self._tag(user))
            outcome, position = "admitted", 0
        elif len(self.waiting) >= settings.NOUS_MAX_QUEUED_RUNS:
            outcome, position = "full", 0
        else:
            tag = FIRST_TAG if first else self._tag(user)
            self.arrivals += 1
            self.waiting[run_id] = (tag * (1 << TIE_BITS) + self.arrivals % (1 << TIE_BITS), user, conversation_id, tag)
            outcome, position = "waiting", self._order().index(run_id)
            shifted = 0 if admitted else position + 1
        return Admission(admitted, self._moved(shifted), len(self.waiting), outcome, position)

    async def release(self, run_id: str = "") -> Moves:
        """The run ended or paused (or stopped while waiting); "" only drops expired holders."""
        now, claim_expiry, _ = _expiries()
        self.holders.pop(run_id, None)
        shifted = -1
        if run_id in self.waiting:
            shifted = self._order().index(run_id)
            self._forget(run_id)
        admitted = self._promote(now, claim_expiry)
        if admitted:
            shifted = 0
        if not run_id:  # the sweep: users whose last tag the clock has passed need no entry
            self.last = {user: tag for user, tag in self.last.items() if tag > self.vclock}
        return Moves(admitted, self._moved(shifted), len(self.waiting))

    async def renew(self, run_ids: list[str]) -> None:
        """Extend the leases of the runs this process streams (an ended lease stays ended)."""
        _, _, expiry = _expiries()
        for run_id in run_ids:
            if run_id in self.holders:
                self.holders[run_id] = expiry

    async def snapshot(self) -> tuple[list[str], list[str]]:
        """The holders with a live lease, and the waiting runs in their order (position = index)."""
        now = time.time()
        return [r for r, expiry in self.holders.items() if expiry > now], self._order()

    def waiting_now(self) -> list[str]:
        """The waiting runs in order, from sync code (the admin, the metrics: another thread)."""
        waiting = dict(self.waiting)  # one atomic copy: the loop's thread may change it meanwhile
        return sorted(waiting, key=lambda run_id: waiting[run_id][0])

    def holders_now(self) -> int:
        now = time.time()
        return sum(1 for expiry in list(self.holders.values()) if expiry > now)

    async def full(self) -> bool:
        """Whether a new run would be refused now (every slot taken, the queue full)."""
        now = time.time()
        live = sum(1 for expiry in self.holders.values() if expiry > now)
        return live >= settings.NOUS_MAX_ACTIVE_RUNS and len(self.waiting) >= settings.NOUS_MAX_QUEUED_RUNS


# KEYS: holders (zset run -> lease expiry), waiting (zset run -> score), info (hash run ->
# "user\tconversation\ttag"), last (hash user -> newest tag + 1), state (hash: vclock, arrivals).
# ARGV[1..4]: now, max active, claim expiry, run id.
_COMMON = """
local holders, waiting, info, last, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, max_active, claim_expiry, run = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local function split(s)
  local user, conv, tag = string.match(s, "^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)$")
  return user, conv, tonumber(tag)
end
local function forget(r)
  local s = redis.call('HGET', info, r)
  redis.call('ZREM', waiting, r)
  if not s then return nil, nil end
  local _, conv, tag = split(s)
  redis.call('HDEL', info, r)
  return conv, tag
end
local function vclock() return tonumber(redis.call('HGET', state, 'vclock') or '0') end
local function advance(tag)
  if tag > vclock() then redis.call('HSET', state, 'vclock', string.format('%d', tag)) end
end
local function tag_of(user)
  local tag = math.max(vclock(), tonumber(redis.call('HGET', last, user) or '0'))
  redis.call('HSET', last, user, string.format('%d', tag + 1))
  return tag
end
local function promote()
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  local admitted = {}
  while redis.call('ZCARD', holders) < max_active do
    local nxt = redis.call('ZRANGE', waiting, 0, 0)[1]
    if not nxt then break end
    local conv, tag = forget(nxt)
    if tag then advance(tag) end
    redis.call('ZADD', holders, claim_expiry, nxt)
    table.insert(admitted, {nxt, conv or ''})
  end
  return admitted
end
local function moved(start)
  local out = {}
  if start < 0 then return out end
  local runs = redis.call('ZRANGE', waiting, start, -1)
  for i, r in ipairs(runs) do
    local pos = start + i - 1
    if pos < NOTIFY_BELOW or pos % NOTIFY_EVERY == 0 then
      local _, conv = split(redis.call('HGET', info, r) or '\\t\\t0')
      table.insert(out, {r, conv, pos})
    end
  end
  return out
end
""".replace("NOTIFY_BELOW", str(NOTIFY_EVERY_MOVE_BELOW)).replace("NOTIFY_EVERY", str(NOTIFY_EVERY))

# ARGV[5..8]: user, conversation, max queued, first (1: FIRST_TAG). Then the doorbells of a
# `Start` (a count, then channel and payload of each): those to ring first, those to ring when the
# run may start, before its id goes onto the hand-over list KEYS[6] (absent: no hand-over here).
_ADMIT = _COMMON + """
local user, conv, max_queued, first = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8] == '1'
local bell = 9
local function ring()
  local count = tonumber(ARGV[bell])
  bell = bell + 1
  for _ = 1, count do
    redis.call('PUBLISH', ARGV[bell], ARGV[bell + 1])
    bell = bell + 2
  end
end
-- The admission itself; the doorbells and the hand-over go around it, below.
local function decide()
local admitted = promote()
local shifted = -1
if #admitted > 0 then shifted = 0 end
if redis.call('ZSCORE', holders, run) then
  return {'held', 0, admitted, moved(shifted), redis.call('ZCARD', waiting)}
end
local rank = redis.call('ZRANK', waiting, run)
if rank then return {'waiting', rank, admitted, moved(shifted), redis.call('ZCARD', waiting)} end
if redis.call('ZCARD', holders) < max_active then
  redis.call('ZADD', holders, claim_expiry, run)
  advance(tag_of(user))
  return {'admitted', 0, admitted, moved(shifted), 0}
end
local count = redis.call('ZCARD', waiting)
if count >= max_queued then return {'full', 0, admitted, moved(shifted), count} end
local tag = FIRST_TAG
if not first then tag = tag_of(user) end
local arrival = redis.call('HINCRBY', state, 'arrivals', 1) % TIE_SPAN
redis.call('ZADD', waiting, string.format('%d', tag * TIE_SPAN + arrival), run)
redis.call('HSET', info, run, user .. '\\t' .. conv .. '\\t' .. string.format('%d', tag))
rank = redis.call('ZRANK', waiting, run)
if shifted < 0 then shifted = rank + 1 end
return {'waiting', rank, admitted, moved(shifted), count + 1}
end
ring()
local result = decide()
local handed = 0
if KEYS[6] and (result[1] == 'admitted' or result[1] == 'held') then
  ring()
  redis.call('RPUSH', KEYS[6], run)
  handed = 1
end
table.insert(result, handed)
return result
""".replace("TIE_SPAN", str(1 << TIE_BITS)).replace("FIRST_TAG", str(FIRST_TAG))

_RELEASE = _COMMON + """
redis.call('ZREM', holders, run)
local shifted = -1
local rank = redis.call('ZRANK', waiting, run)
if rank then
  forget(run)
  shifted = rank
end
local admitted = promote()
if #admitted > 0 then shifted = 0 end
if run == '' then
  local v, users = vclock(), redis.call('HGETALL', last)
  for i = 1, #users, 2 do
    if tonumber(users[i + 1]) <= v then redis.call('HDEL', last, users[i]) end
  end
end
return {admitted, moved(shifted), redis.call('ZCARD', waiting)}
"""

_FULL = """
local live = redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf')
local waiting = redis.call('ZCARD', KEYS[2])
if live >= tonumber(ARGV[2]) and waiting >= tonumber(ARGV[3]) then return {1, waiting} end
return {0, waiting}
"""

KEY_PREFIX = "nous:slots:"
KEYS = [KEY_PREFIX + name for name in ("holders", "waiting", "info", "last", "state")]
_ADMIT_SCRIPT, _RELEASE_SCRIPT, _FULL_SCRIPT = LuaScript(_ADMIT), LuaScript(_RELEASE), LuaScript(_FULL)


def _moves(admitted: list, moved: list, waiting: int) -> Moves:
    return Moves([(str(r), str(c)) for r, c in admitted], [(str(r), str(c), int(p)) for r, c, p in moved], int(waiting))


class RedisSlots:
    """Production: the same state in Redis keys, shared by every ASGI process and worker."""

    def __init__(self) -> None:
        self.sync_client = None
        self.seen = (-FULL_CHECK_TRUST_SECS, 0)  # (monotonic time, waiting count) of the last answer

    def _saw(self, moves: Moves) -> None:
        self.seen = (time.monotonic(), moves.waiting)

    async def full(self) -> bool:
        seen_at, waiting = self.seen
        if time.monotonic() - seen_at < FULL_CHECK_TRUST_SECS and waiting < settings.NOUS_MAX_QUEUED_RUNS // 2:
            return False
        is_full, waiting = await _FULL_SCRIPT(KEYS[:2], time.time(), settings.NOUS_MAX_ACTIVE_RUNS, settings.NOUS_MAX_QUEUED_RUNS)
        self.seen = (time.monotonic(), int(waiting))
        return bool(is_full)

    async def admit(self, run_id: str, user: str, conversation_id: str, first: bool = False,
                    start: Start | None = None) -> Admission:
        """Admit `run_id`, or queue or refuse it; with a `start`, also ring its doorbells and hand it
        over when it may start (`Admission.handed_over`), in the same round trip."""
        now, claim_expiry, _ = _expiries()
        outcome, position, admitted, moved, waiting, handed = await _ADMIT_SCRIPT(
            KEYS + ([start.handover] if start else []), now, settings.NOUS_MAX_ACTIVE_RUNS, claim_expiry, run_id, user,
            conversation_id, settings.NOUS_MAX_QUEUED_RUNS, "1" if first else "0", *(start.args() if start else (0, 0)))
        moves = _moves(admitted, moved, waiting)
        self._saw(moves)
        return Admission(moves.admitted, moves.moved, moves.waiting, str(outcome), int(position), bool(handed))

    async def release(self, run_id: str = "") -> Moves:
        now, claim_expiry, _ = _expiries()
        admitted, moved, waiting = await _RELEASE_SCRIPT(KEYS, now, settings.NOUS_MAX_ACTIVE_RUNS, claim_expiry, run_id)
        moves = _moves(admitted, moved, waiting)
        self._saw(moves)
        return moves

    async def renew(self, run_ids: list[str]) -> None:
        if run_ids:
            _, _, expiry = _expiries()
            await redis_client().zadd(KEYS[0], dict.fromkeys(run_ids, expiry), xx=True)

    async def snapshot(self) -> tuple[list[str], list[str]]:
        async with redis_client().pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(KEYS[0], time.time(), "+inf")
            pipe.zrange(KEYS[1], 0, -1)
            holders, waiting = await pipe.execute()
        return list(holders), list(waiting)

    def _sync(self):
        import redis

        if self.sync_client is None:
            self.sync_client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        return self.sync_client

    def waiting_now(self) -> list[str]:
        return list(self._sync().zrange(KEYS[1], 0, -1))

    def holders_now(self) -> int:
        return int(self._sync().zcount(KEYS[0], time.time(), "+inf"))


@cache
def slots() -> MemorySlots | RedisSlots:
    """The slot store of this process's mode."""
    return RedisSlots() if settings.REDIS_URL else MemorySlots()
