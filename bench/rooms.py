"""The room scenarios (`--only rooms`), run by the driver: a mixin of `bench.scenarios.Bench`.

For each room size one room, one bench user (and session) per member, one socket each, spread
over the ASGI processes as the chat sockets are; the joins are paced and the room settles (every
member has the full participant list and no presence frame came for a second) before measuring.

- fan-out: member 0 sends `room_messages` plain messages at `room_rate` a second; every member
  records when each `message.created` arrived. Per size: send -> receipt over all members, and per
  message send -> the last member's receipt.
- AI stream (in the `room_ai` room): one message with "@ai"; every member must get the same
  gapless `run.delta` sequence and the terminal frame. Delivered deltas/s, added latency.
- typing storm (in the `room_storm` room): `room_typers` members send `typing: true` every 100 ms
  while member 0 sends messages; message fan-out, and typing frames received per member per second.

See bench/roomclients.py for what each member records and checks.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from bench.report import pcts
from bench.stamps import latencies


class RoomScenarios:
    # Provided by Bench.
    stack: Any
    pool: Any
    opts: Any

    def rooms(self) -> dict[str, Any]:
        from bench.scenarios import make_users

        o = self.opts
        sizes = o.room_sizes
        self.log(f"rooms: {max(sizes)} member users; rooms of {', '.join(map(str, sizes))}")
        users = make_users(max(sizes), prefix="m")
        out: dict[str, Any] = {"fanout": {}, "ai": None, "storm": None}
        for n in sizes:
            ai = n == o.room_ai
            model = f"test:tps={o.tps},words={o.room_ai_words}"
            room = self._room(users[0][0], n, model, ai_active=ai)
            label = f"room {n}"
            joined = self._join(label, room.slug, users[:n])
            if joined["opened"] < n:
                self.close()
                continue
            out["fanout"][str(n)] = self._fanout(label, n, f"fanout{n}")
            sent = o.room_messages
            if ai:
                # A warm-up run first, checked but not counted: it opens the worker's database
                # connections, as the first-delta scenarios' warm-up round does.
                self._ai_stream(label, n, room, "aiwarm")
                out["ai"] = self._ai_stream(label, n, room, "ai")
                sent += 2
            if n == o.room_storm:
                out["storm"] = self._storm(label, n)
                sent += out["storm"]["messages"]
            out["fanout"][str(n)]["join"] = joined
            self.close()
            self._verify_room(label, room, users[0][0], sent, runs=2 if ai else 0)
            time.sleep(1.0)  # the leaves' presence frames
        return out

    # --- setup ---------------------------------------------------------------------------------

    def _room(self, owner_id: int, n: int, model: str, ai_active: bool) -> Any:
        from django.contrib.auth import get_user_model

        from rooms.models import create_room

        owner = get_user_model().objects.get(pk=owner_id)
        return create_room(owner, f"bench room of {n}", slug=f"bench-{n}-{time.monotonic_ns() % 10**8}", model=model,
                           ai_active=ai_active)

    def _join(self, label: str, slug: str, members: list[tuple[int, str]]) -> dict[str, Any]:
        """Open one socket per member, paced, then wait for the room to settle."""
        specs = []
        for i, (_, session_key) in enumerate(members):
            url = self.stack.url(i)
            specs.append({"url": url, "origin": "http://" + url.split("//")[1], "cookie": session_key, "slug": slug, "index": i})
        n = len(members)
        started = time.time()
        res = self.pool.call([{"op": "room_open", "specs": part, "concurrency": self.opts.room_join_concurrency}
                              for part in self.pool.split(specs)])
        opened, failed = sum(r["opened"] for r in res), sum(r["failed"] for r in res)
        if failed:
            self.fail(f"{label}: {failed} of {n} member socket(s) failed to open: {sum((r['errors'] for r in res), [])[:3]}")
        open_secs = time.time() - started
        settled = self.pool.broadcast({"op": "room_settle", "expect": n, "quiet": 1.0, "timeout": 60.0})
        full = sum(s["full"] for s in settled)
        frames = sum(s["presence_frames"] for s in settled)
        out = {"opened": opened, "open_secs": round(open_secs, 1), "settle_secs": round(time.time() - started - open_secs, 1),
               "presence_frames": frames, "members_with_full_list": full}
        self.log(f"{label}: {opened} members joined in {open_secs:.1f} s, settled {out['settle_secs']} s later "
                 f"({frames} presence frames received; {full}/{n} have all {n} names)")
        if full < opened:
            self.fail(f"{label}: {opened - full} member(s) never got the full participant list ({n} names)")
        if any(s["closed"] for s in settled):
            self.fail(f"{label}: {sum(s['closed'] for s in settled)} member socket(s) closed during the joins")
        return out

    def _phase(self, label: str, n: int, tag: str, *, count: int, rate: float, ai: bool = False, typers: list[int] = (),
               lead: float = 0.5, give_up: float = 20.0) -> dict[str, Any]:
        start = time.time() + lead + (2.0 if typers else 0.0)  # a storm starts over a second, and runs a second before the first message
        cmd = {"op": "room_phase", "tag": tag, "start_at": start, "count": count, "rate": rate, "ai": ai, "senders": [0],
               "typers": list(typers), "typing_period": 0.1, "typing_from": start - 2.0, "give_up": start + count / rate + give_up}
        c0, t0 = self.cpu_now()
        res = self.pool.broadcast(cmd)
        c1, t1 = self.cpu_now()
        m: dict[str, Any] = {"per_message": {}}
        for r in res:
            for k, v in r.items():
                if k == "per_message":
                    for i, lats in v.items():
                        m["per_message"].setdefault(int(i), []).extend(lats)
                elif isinstance(v, list):
                    m.setdefault(k, []).extend(v)
                else:
                    m[k] = m.get(k, 0) + v
        stamps = latencies(self.stack.stamps.read_new(), m.pop("received", []), m.pop("sends", []))
        m.update(lat_flush=stamps["lat_flush"], lat_emit=stamps["lat_emit"], to_emit=stamps["send_emit"])
        per = m["per_message"]
        every = [x for lats in per.values() for x in lats]
        last = [max(lats) for lats in per.values() if len(lats) == n]
        m["all_ms"], m["last_ms"] = pcts(every), pcts(last)
        # send -> last member, message by message: shows a backlog growing through the phase.
        m["last_series_ms"] = [round(max(per[i]), 1) if per.get(i) else None for i in range(count)]
        # CPU % of each role over the whole phase (from the broadcast to the last member's answer).
        m["cpu_pct"] = {role: round(100 * (c1[role] - c0[role]) / max(1e-3, t1 - t0), 1) for role in c0}
        problems = m["problems"]
        if len(per) < count:
            problems.append(f"{count - len(per)} message(s) reached no member")
        self.fail_all(label + " " + tag, problems, m["problem_count"] + (1 if len(per) < count else 0))
        return m

    # --- the scenarios ---------------------------------------------------------------------------

    def _fanout(self, label: str, n: int, tag: str) -> dict[str, Any]:
        o = self.opts
        m = self._phase(label, n, tag, count=o.room_messages, rate=o.room_rate)
        out = {"members": n, "messages": o.room_messages, "complete": m["complete"], "all_ms": m["all_ms"], "last_ms": m["last_ms"],
               "problems": m["problem_count"], "cpu_pct": m["cpu_pct"], "last_series_ms": m["last_series_ms"]}
        a, z = m["all_ms"], m["last_ms"]
        self.log(f"{label} fan-out: {o.room_messages} messages at {o.room_rate}/s: send->member p50/p99 {a['p50']}/{a['p99']} ms, "
                 f"send->last member p50/p99 {z['p50']}/{z['p99']} ms; {m['complete']}/{n} members got every message once in order; "
                 f"cpu% {m['cpu_pct']}")
        return out

    def _ai_stream(self, label: str, n: int, room: Any, tag: str) -> dict[str, Any]:
        from chat.models import AgentRun

        m = self._phase(label, n, tag, count=1, rate=1.0, ai=True, give_up=60.0 + self.opts.room_ai_words / self.opts.tps)
        runs = m["runs"]
        problems = []
        by_member: dict[int, list[dict[str, Any]]] = {}
        for r in runs:
            by_member.setdefault(r["member"], []).append(r)
        stored = list(AgentRun.objects.filter(conversation_id=room.conversation_id, trigger_message__content__startswith=f"@ai bench room {tag} ")
                      .values_list("id", "status", "message__content"))
        if len(stored) != 1:
            problems.append(f"{len(stored)} runs stored for one @ai message")
        want = None
        if stored:
            run_id, status, text = stored[0]
            want = {"run_id": str(run_id), "status": status, "sha1": hashlib.sha1((text or "").encode()).hexdigest()}
        same = 0
        for member in range(n):
            seen = by_member.get(member, [])
            if len(seen) != 1:
                problems.append(f"member {member} saw {len(seen)} runs")
                continue
            r = seen[0]
            if want and (r["run_id"], r["status"], r["sha1"]) == (want["run_id"], want["status"], want["sha1"]):
                same += 1
            else:
                problems.append(f"member {member}: run {r['run_id']} {r['status']} seq {r['seq']} ({r['chars']} chars) "
                                f"!= stored {want}")
        if want and want["status"] != "completed":
            problems.append(f"the room's run ended {want['status']}")
        self.fail_all(f"{label} AI stream {tag}", problems)
        firsts = [r["t_first"] for r in runs if r["t_first"]]
        lasts = [r["t_last"] for r in runs if r["t_last"]]
        span = max(lasts) - min(firsts) if firsts and lasts else 0.0
        deltas = sum(r["seq"] for r in runs)
        per_run = max((r["seq"] for r in runs), default=0)
        out = {"members": n, "deltas_per_run": per_run, "deltas_delivered": deltas, "stream_secs": round(span, 2),
               "deltas_per_s": round(deltas / span, 1) if span else None, "added_ms": pcts(m["lat_flush"]), "emit_ms": pcts(m["lat_emit"]),
               "first_delta_ms": pcts(m["first_delta"]), "send_to_started_ms": pcts(m["to_started"]), "send_to_emit_ms": pcts(m["to_emit"]),
               "members_identical": same, "status": want and want["status"],
               "problems": len(problems) + m["problem_count"], "cpu_pct": m["cpu_pct"]}
        a = out["added_ms"]
        self.log(f"{label} AI stream{' (warm-up, not counted)' if tag != 'ai' else ''}: {per_run} deltas to {n} members in {span:.1f} s = {out['deltas_per_s']} delivered deltas/s, "
                 f"added p50/p95/p99 {a['p50']}/{a['p95']}/{a['p99']} ms, emit->client p99 {out['emit_ms']['p99']} ms, "
                 f"send->first delta p50/p99 {out['first_delta_ms']['p50']}/{out['first_delta_ms']['p99']} ms (run.started "
                 f"{out['send_to_started_ms']['p50']}, the model's first word {out['send_to_emit_ms']['p50']}); "
                 f"{same}/{n} members got the stored run exactly; cpu% {m['cpu_pct']}")
        return out

    def _storm(self, label: str, n: int) -> dict[str, Any]:
        o = self.opts
        typers = list(range(1, 1 + min(o.room_typers, n - 1)))
        count = int(o.room_storm_secs * o.room_rate)
        m = self._phase(label, n, "storm", count=count, rate=o.room_rate, typers=typers)
        tpm = m["typing_per_member"]
        out = {"members": n, "typers": len(typers), "messages": count, "secs": o.room_storm_secs, "complete": m["complete"],
               "all_ms": m["all_ms"], "last_ms": m["last_ms"],
               "typing_per_member_s": {"mean": round(sum(tpm) / len(tpm), 1) if tpm else None, "max": round(max(tpm), 1) if tpm else None,
                                       "min": round(min(tpm), 1) if tpm else None},
               "typing_sent_per_s": round(len(typers) / 0.1), "problems": m["problem_count"], "cpu_pct": m["cpu_pct"],
               "last_series_ms": m["last_series_ms"]}
        a, z, t = m["all_ms"], m["last_ms"], out["typing_per_member_s"]
        series = [x for x in m["last_series_ms"] if x is not None]
        if series:
            k = max(1, len(series) // 5)
            self.log(f"{label} typing storm: send->last member, mean of the first {k} messages {sum(series[:k]) / k:.0f} ms, "
                     f"of the last {k} {sum(series[-k:]) / k:.0f} ms")
        self.log(f"{label} typing storm: {len(typers)} typers x 10/s, {count} messages at {o.room_rate}/s: send->member p50/p99 "
                 f"{a['p50']}/{a['p99']} ms, send->last member p99 {z['p99']} ms; typing frames per member per s "
                 f"mean/min/max {t['mean']}/{t['min']}/{t['max']}; {m['complete']}/{n} members got every message once in order; "
                 f"cpu% {m['cpu_pct']}")
        return out

    def _verify_room(self, label: str, room: Any, sender_id: int, sent: int, runs: int) -> None:
        """The database has exactly the messages member 0 sent, and no run left active."""
        from chat.models import AgentRun, Message

        deadline = time.time() + 15
        while (active := AgentRun.objects.filter(conversation_id=room.conversation_id, status__in=AgentRun.ACTIVE).count()) \
                and time.time() < deadline:
            time.sleep(0.5)
        if active:
            self.fail(f"{label}: {active} run(s) left queued/running")
        stored = Message.objects.filter(conversation_id=room.conversation_id, role="user")
        if stored.count() != sent or stored.exclude(author_id=sender_id).exists():
            self.fail(f"{label}: {stored.count()} user messages stored, {sent} sent by member 0")
        n_runs = AgentRun.objects.filter(conversation_id=room.conversation_id).count()
        if n_runs != runs:
            self.fail(f"{label}: {n_runs} run(s) stored, expected {runs} (the plain messages must not wake the AI)")
