"""The scenarios, run by the driver process (which has Django set up on the bench database).

Each scenario creates its own conversations, opens the sockets from the client processes, drives
them, then checks the database against what the clients received. A check that fails is added
to `Bench.failures`; the run then exits non-zero.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Callable

from bench.clients import DRAIN_CAP
from bench.first import FirstDeltaScenarios
from bench.pool import ClientPool
from bench.report import pcts
from bench.rooms import RoomScenarios
from bench.stack import Stack, cpu_seconds, rss_bytes
from bench.stamps import latencies

FAR = 600.0  # a deadline that a job bounded by max_runs never reaches


def make_users(n: int, prefix: str = "bench") -> list[tuple[int, str]]:
    """n users, each logged in once: (user id, session key). Sessions made like django.contrib.auth.login."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user_model = get_user_model()
    stamp = time.monotonic_ns()
    users = user_model.objects.bulk_create([user_model(username=f"{prefix}-{stamp}-{i}", password="!") for i in range(n)])
    out = []
    for user in users:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        out.append((user.pk, session.session_key))
    return out


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The client processes' Stats as one: lists joined, counts added, flags or-ed."""
    out: dict[str, Any] = {}
    for r in results:
        for k, v in r.items():
            if isinstance(v, bool):
                out[k] = out.get(k, False) or v
            elif isinstance(v, list):
                out.setdefault(k, []).extend(v)
            else:
                out[k] = out.get(k, 0) + v
    return out


class Bench(FirstDeltaScenarios, RoomScenarios):
    def __init__(self, stack: Stack, pool: ClientPool, opts: Any) -> None:
        self.stack, self.pool, self.opts = stack, pool, opts
        self.users = make_users(opts.users)
        self.failures: list[str] = []
        self.out: dict[str, Any] = {}

    def log(self, msg: str) -> None:
        print(f"[{self.stack.cfg.name} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def fail(self, msg: str, quiet: bool = False) -> None:
        self.failures.append(msg)
        if not quiet:
            self.log("FAIL " + msg)

    def fail_all(self, label: str, problems: list[str], total: int | None = None) -> None:
        """Record every problem, print the first five and how many more."""
        for i, p in enumerate(problems):
            self.fail(f"{label}: {p}", quiet=i >= 5)
        more = (total or len(problems)) - min(5, len(problems))
        if more > 0:
            self.log(f"FAIL {label}: ... and {more} more")
            if total and total > len(problems):
                self.failures.append(f"{label}: {total - len(problems)} more client-side error(s) not kept")

    # --- fixtures and sockets ---------------------------------------------------------------

    def conversations(self, n: int, model: str) -> list[str]:
        from chat.models import Conversation

        objs = [Conversation(owner_id=self.users[i % len(self.users)][0], model=model) for i in range(n)]
        Conversation.objects.bulk_create(objs, batch_size=2000)
        return [str(o.id) for o in objs]

    def open(self, label: str, conv_ids: list[str], model: str, port: int | None = None, concurrency: int = 16,
             budget: float | None = None) -> dict[str, Any]:
        """Open one socket per conversation (each waits for session.ready), `concurrency` handshakes at a
        time per client process; with a `budget` (seconds), the sockets not started by then are skipped."""
        cookies = dict(self._owners(conv_ids))
        specs = []
        for i, conv in enumerate(conv_ids):
            url = self.stack.url(i if port is None else port)
            specs.append({"url": url, "origin": "http://" + url.split("//")[1], "cookie": cookies[conv], "conv": conv, "model": model})
        deadline = time.time() + budget if budget else None
        results = self.pool.call([{"op": "open", "specs": part, "concurrency": concurrency, "deadline": deadline}
                                  for part in self.pool.split(specs)])
        opened, failed = sum(r["opened"] for r in results), sum(r["failed"] for r in results)
        if failed:
            self.fail(f"{label}: {failed} of {len(specs)} socket(s) failed to open: {sum((r['errors'] for r in results), [])[:3]}")
        return {"opened": opened, "failed": failed, "skipped": sum(r["skipped"] for r in results), "secs": max(r["secs"] for r in results)}

    def _owners(self, conv_ids: list[str]) -> list[tuple[str, str]]:
        from chat.models import Conversation

        sessions = dict(self.users)
        rows = []
        for i in range(0, len(conv_ids), 5000):
            rows += Conversation.objects.filter(id__in=conv_ids[i : i + 5000]).values_list("id", "owner_id")
        return [(str(cid), sessions[owner]) for cid, owner in rows]

    def close(self) -> None:
        self.pool.broadcast({"op": "close"})

    def cpu_now(self) -> tuple[dict[str, float], float]:
        cpu = self.stack.cpu()
        cpu["client"] = sum(cpu_seconds(pid) for pid in self.pool.pids)
        return cpu, time.time()

    # --- driving ------------------------------------------------------------------------------

    def chat(self, label: str, conv_ids: list[str], *, warm: float = 0.0, duration: float = FAR, max_runs: int = 10**9,
             period: float = 0.0, stagger: float = 0.0, actions: list[tuple[float, Callable[[], None]]] = (),
             run_timeout: float = 60.0, drain: float = 30.0, overload_ok: bool = False, **extra: Any) -> dict[str, Any]:
        """Every socket runs message.send -> terminal frame, again and again, until the deadline or max_runs.

        With `overload_ok` (load levels), what merely came too late (no terminal frame in time, no
        reconnect) is reported as overload, not as a failure; integrity problems always fail."""
        start = time.time() + 0.3
        job = {"op": "chat", "start_at": start, "warm_from": start + warm, "deadline": start + warm + duration, "max_runs": max_runs,
               "period": period, "stagger": stagger, "run_timeout": run_timeout, "drain": drain,
               "reconnect_timeout": 10.0 if overload_ok else 30.0, **extra}
        self.pool.send([job] * len(self.pool.pipes))
        time.sleep(max(0.0, job["warm_from"] - time.time()))
        c0, t0 = self.cpu_now()
        c1 = t1 = None
        pending = sorted(actions, key=lambda a: a[0])
        next_note = time.time() + 5
        while not all(p.poll() for p in self.pool.pipes):
            now = time.time()
            if c1 is None and now >= job["deadline"]:
                c1, t1 = self.cpu_now()
            while pending and now >= start + pending[0][0]:
                pending.pop(0)[1]()
            if now >= next_note:
                left = f", {job['deadline'] - now:.0f} s left" if job["deadline"] - now < FAR / 2 and now < job["deadline"] else ""
                self.log(f"  {label}: {now - start:.0f} s{left}")
                next_note = now + 5
            time.sleep(0.05)
        for _, action in pending:
            action()
        if c1 is None:
            c1, t1 = self.cpu_now()
        merged = merge(self.pool.recv())
        merged.update(latencies(self.stack.stamps.read_new(), merged.pop("received", []), merged.pop("sends", [])))
        span = max(1e-3, t1 - t0)
        merged["cpu_pct"] = {role: round(100 * (c1[role] - c0[role]) / span, 1) for role in c0}
        merged["cpu_ms_per_run"] = {role: round(1000 * (c1[role] - c0[role]) / max(1, len(merged["runs"])), 2) for role in c0}
        merged["window"] = min(duration, span)
        self.fail_all(label, merged["errors"], merged["error_count"])
        if overload_ok and merged["late_count"]:
            for e in merged["late"][:3]:
                self.log(f"OVERLOAD {label}: {e}")
            self.log(f"OVERLOAD {label}: {merged['late_count']} run(s) did not finish in time; reported, not failed")
        elif merged["late_count"]:
            self.fail_all(label, merged["late"], merged["late_count"])
        return merged

    def verify(self, label: str, conv_ids: list[str], runs: list[dict[str, Any]], overload_ok: bool = False) -> None:
        """No run left active; every stored run was seen by a client, with the same text and status.
        With `overload_ok`, a run whose client gave up waiting (timeout, lost) is not compared."""
        from chat.models import AgentRun

        gave_up = {r["run_id"] for r in runs if r["status"] in ("timeout", "lost")} if overload_ok else set()
        anonymous = sum(1 for r in runs if r["run_id"] is None and r["status"] in ("timeout", "lost")) if overload_ok else 0
        deadline = time.time() + (60 if gave_up else 15)
        while (active := AgentRun.objects.filter(conversation_id__in=conv_ids, status__in=AgentRun.ACTIVE).count()) and time.time() < deadline:
            time.sleep(0.5)
        if active:
            self.fail(f"{label}: {active} run(s) left queued/running")
        seen = {r["run_id"]: r for r in runs if r["run_id"]}
        problems = []
        stored = AgentRun.objects.filter(conversation_id__in=conv_ids).values_list("id", "status", "message__content")
        for run_id, status, content in stored:
            r = seen.pop(str(run_id), None)
            content = content or ""
            if str(run_id) in gave_up:
                continue
            if r is None and anonymous:  # its client gave up before it learnt the run id
                anonymous -= 1
                continue
            if r is None:
                problems.append(f"run {run_id} ({status}) was seen by no client")
            elif r["status"] != status:
                problems.append(f"run {run_id}: stored {status}, the client saw {r['status']}")
            elif hashlib.sha1(content.encode()).hexdigest() != r["sha1"]:
                problems.append(f"run {run_id}: stored text ({len(content)} chars) != received text ({r['chars']} chars)")
        problems += [f"run {run_id}: the client saw it, the database has no such run" for run_id in seen]
        self.fail_all(label, problems)

    # --- scenarios ------------------------------------------------------------------------------

    def stream_level(self, n: int) -> dict[str, Any]:
        """n concurrent streaming chats at the fixed token rate, for the measuring window."""
        o = self.opts
        model = f"test:tps={o.tps},words={o.words}"
        label = f"{n} streams"
        conv = self.conversations(n, model)
        opened = self.open(label, conv, model)
        # The first sends are spread over the warm-up, at most `start_rate` a second (starting a run
        # costs far more than streaming one: the first-delta scenarios measure that); then every
        # chat sends again as soon as its run ends.
        warm = max(o.warm, n / o.start_rate)
        self.log(f"{label}: {opened['opened']} sockets open in {opened['secs']:.1f} s; streaming {warm:.0f}+{o.window:.0f} s")
        m = self.chat(label, conv, warm=warm, duration=o.window, stagger=warm, drain=2.0, run_timeout=FAR, overload_ok=True)
        self.close()
        self.verify(label, conv, m["runs"], overload_ok=True)
        out = {"streams": n, "deltas_per_s": round(m["deltas_window"] / m["window"], 1), "added_ms": pcts(m["lat_flush"]), "added_ms_seq_1_2": pcts(m["lat_flush_start"]),
               "emit_ms": pcts(m["lat_emit"]), "first_delta_ms": pcts(m["first_delta"]), "cpu_pct": m["cpu_pct"],
               "runs": len(m["runs"]), "deltas": m["deltas_total"], "hook": m["hook"], "stopped_at_end": m["stopped_by_client"],
               "late_ends": m["late_ends"], "timed_out": m["late_count"]}
        if m["deltas_total"] and not m["hook"]:
            self.log(f"{label}: no delta timestamps from the servers: is NOUS_BENCH_TIMESTAMPS=1 recorded (chat/runs/benchstamps.py)?")
        a = out["added_ms"]
        self.log(f"{label}: {out['deltas_per_s']:.0f} deltas/s, added p50/p95/p99 {a['p50']}/{a['p95']}/{a['p99']} ms, "
                 f"emit->client p99 {out['emit_ms']['p99']} ms, cpu% {m['cpu_pct']}; {len(m['runs'])} runs, "
                 f"{m['stopped_by_client']} still going at the end (stopped), {m['late_ends']} of them ended only via resume "
                 f"(socket backlog > {DRAIN_CAP:.0f} s); added p50/p99 of seq 1-2 only "
                 f"{out['added_ms_seq_1_2']['p50']}/{out['added_ms_seq_1_2']['p99']}")
        return out

    def idle(self, n: int) -> dict[str, Any]:
        """n authenticated open sockets on one ASGI process: resident memory per socket."""
        conv = self.conversations(n, "test:")
        # A fresh process, warmed by a few sockets, so the baseline is not the leftovers of earlier load.
        self.stack.restart_asgi(0)
        warm = self.conversations(20, "test:")
        self.open("idle warm-up", warm, "test:", port=0)
        self.close()
        pid = self.stack.asgi[0].pid
        time.sleep(1)
        rss0 = rss_bytes(pid)
        self.log(f"idle: opening {n} sockets on one ASGI process (RSS {rss0 / 2**20:.0f} MiB), for at most {self.opts.idle_budget:.0f} s")
        opened = self.open("idle", conv, "test:", port=0, concurrency=self.opts.idle_concurrency, budget=self.opts.idle_budget)
        time.sleep(3)
        rss1 = rss_bytes(pid)
        alive = self.pool.broadcast({"op": "alive", "sample": 100})
        self.close()
        n_open = sum(a["open"] for a in alive)
        out = {"sockets": opened["opened"], "wanted": n, "skipped_by_budget": opened["skipped"], "still_open": n_open, "pong": f"{sum(a['pong'] for a in alive)}/{sum(a['pinged'] for a in alive)}",
               "connect_secs": round(opened["secs"], 1), "connects_per_s": round(opened["opened"] / max(opened["secs"], 1e-3)),
               "rss_before_mib": round(rss0 / 2**20, 1), "rss_after_mib": round(rss1 / 2**20, 1),
               "kib_per_socket": round((rss1 - rss0) / 1024 / max(1, opened["opened"]), 1)}
        if n_open < opened["opened"] or sum(a["pong"] for a in alive) < sum(a["pinged"] for a in alive):
            self.fail(f"idle: {opened['opened'] - n_open} socket(s) closed by themselves, pong {out['pong']}")
        self.log(f"idle: {out['sockets']} sockets in {out['connect_secs']} s, {out['kib_per_socket']} KiB each, RSS {out['rss_after_mib']} MiB")
        return out

    def faults(self) -> dict[str, Any]:
        out = {"drops": self._fault_drops()}
        if self.stack.cfg.mode == "production":
            out["worker_kill"] = self._fault_worker_kill()
            out["asgi_restart"] = self._fault_asgi_restart()
        return out

    def _fault_run(self, label: str, words: int, actions=(), **extra: Any) -> tuple[list[str], dict[str, Any]]:
        model = f"test:tps=50,words={words}"
        conv = self.conversations(self.opts.fault_streams, model)
        self.open(label, conv, model)
        m = self.chat(label, conv, max_runs=1, stagger=0.5, actions=actions, run_timeout=60, **extra)
        self.close()
        self.verify(label, conv, m["runs"])
        return conv, m

    def _explain(self, label: str, runs: list[dict[str, Any]], expected: set[str]) -> None:
        """For each run that did not end as expected, what the database knows about it."""
        from chat.models import AgentRun

        odd = [r["run_id"] for r in runs if r["status"] not in expected and r["run_id"]]
        for run in AgentRun.objects.filter(id__in=odd):
            t0 = run.created_at

            def since(t: Any, t0: Any = t0) -> str:
                return "never" if t is None else f"+{(t - t0).total_seconds():.1f} s"

            self.fail(f"{label}: run {run.id} ended {run.status}: queued at {t0:%H:%M:%S.%f}, claimed {since(run.started_at)} "
                      f"by {run.worker or 'no worker'}, last heartbeat {since(run.heartbeat_at)}, ended {since(run.finished_at)}, "
                      f"last seq {run.last_seq}, stop requested {run.stop_requested}")

    def _expect_completed_after_reconnects(self, label: str, m: dict[str, Any]) -> dict[str, Any]:
        """Summarise a fault run whose clients reconnected; every run must still complete."""
        out = {"runs": len(m["runs"]), "statuses": self._statuses(m), "reconnects": m["reconnects"],
               "resume_dups": m["resume_dups"], "resume_ahead": m["resume_ahead"]}
        if out["statuses"].get("completed") != len(m["runs"]) or not m["reconnects"]:
            self.fail(f"{label}: expected every run completed after reconnects, got {out}")
            self._explain(label, m["runs"], {"completed"})
        self.log(f"{label}: {out}")
        return out

    def _statuses(self, m: dict[str, Any]) -> dict[str, int]:
        statuses: dict[str, int] = {}
        for r in m["runs"]:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        return statuses

    def _fault_drops(self) -> dict[str, Any]:
        label = "fault: clients drop and resume"
        self.log(f"{label}: {self.opts.fault_streams} streams, half drop their socket after 5 deltas")
        _, m = self._fault_run(label, 250, drop_fraction=0.5, drop_after=5, drop_pause=(0.05, 0.6))
        return self._expect_completed_after_reconnects(label, m)

    def _fault_worker_kill(self) -> dict[str, Any]:
        from chat.models import AgentRun

        label = "fault: Celery worker SIGKILL"
        killed: dict[str, Any] = {}

        def kill() -> None:
            running = list(AgentRun.objects.filter(status="running").values_list("id", "worker"))
            pids = [p.pid for p in self.stack.workers]
            held = [sum(1 for _, w in running if w.endswith(f":{pid}")) for pid in pids]
            victim = max(range(len(pids)), key=lambda i: held[i])
            killed.update(index=victim, pid=self.stack.kill_worker(victim), runs={str(r) for r, w in running if w.endswith(f":{pids[victim]}")})
            self.log(f"{label}: killed worker {victim} (pid {killed['pid']}) holding {len(killed['runs'])} of {len(running)} running runs")

        def cleanup() -> None:
            for _ in range(5):
                self.log(f"{label}: manage.py cleanup_agents --stale-secs 3: {self.stack.manage('cleanup_agents', '--stale-secs', '3').strip().splitlines()[-1:]}")
                if not AgentRun.objects.filter(id__in=killed["runs"], status__in=AgentRun.ACTIVE).exists():
                    break
                time.sleep(1)
            self.stack.start_worker(killed["index"])

        self.log(f"{label}: {self.opts.fault_streams} streams; a worker is killed 3 s in")
        _, m = self._fault_run(label, 300, actions=[(3.0, kill), (7.0, cleanup)])
        failed = {r["run_id"] for r in m["runs"] if r["status"] == "failed"}
        out = {"runs": len(m["runs"]), "statuses": self._statuses(m), "killed_runs": len(killed.get("runs", ()))}
        if not killed.get("runs"):
            self.fail(f"{label}: the killed worker held no run; the fault was not exercised")
        if failed != killed.get("runs") or out["statuses"].get("completed", 0) + len(failed) != len(m["runs"]):
            self.fail(f"{label}: expected exactly the killed worker's runs failed and the rest completed, got {out}")
            self._explain(label, m["runs"], {"completed", "failed"})
        self.log(f"{label}: {out}")
        return out

    def _fault_asgi_restart(self) -> dict[str, Any]:
        label = "fault: ASGI process restart"

        def restart() -> None:
            self.log(f"{label}: restarting ASGI process 0 (port {self.stack.ports[0]})")
            self.stack.restart_asgi(0)

        self.log(f"{label}: {self.opts.fault_streams} streams on {len(self.stack.ports)} ASGI processes; one restarts 3 s in")
        _, m = self._fault_run(label, 300, actions=[(3.0, restart)])
        return self._expect_completed_after_reconnects(label, m)
