"""`make bench` (`python -m bench`): the real stack under load from real websocket clients.

Each stack configuration (production with uvicorn and the pub/sub layer, the Daphne and core-layer
comparisons, the embedded default) runs in a child process of its own, because a Django process
has one set of settings. The parent prints the table, saves the results in bench/results/, and
exits 1 if any delta was lost, duplicated or stored differently, or a run was left running.

    python -m bench --quick                      # a short run of everything (about 3 minutes)
    python -m bench --mode production --only latency,knee --streams 1,100,500
    python -m bench --server daphne --no-variants
    python -m bench --mode production --no-variants --only rooms   # rooms of 10, 100, 500 members
    python -m bench --compare bench/results/A.json bench/results/B.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import hostspeed, report
from bench.stack import VAR, StackConfig

SCENARIOS = ("first", "latency", "knee", "idle", "faults", "rooms")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["production", "embedded", "both"], default="both")
    p.add_argument("--server", choices=["uvicorn", "daphne"], help="the ASGI server (default uvicorn, plus a Daphne comparison)")
    p.add_argument("--ws", choices=["wsproto", "websockets", "websockets-sansio"], default="wsproto",
                   help="uvicorn's websocket implementation (default wsproto)")
    p.add_argument("--pg-url", help="the PostgreSQL database of production mode (default postgres://postgres@127.0.0.1:5432/nous_bench)")
    p.add_argument("--redis-url", help="the Redis database of production mode (default redis://127.0.0.1:6379/5)")
    p.add_argument("--layer", choices=["pubsub", "core"], help="the channel layer (default pubsub, plus a core comparison)")
    p.add_argument("--no-variants", action="store_true", help="skip the Daphne and core-layer comparisons")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help="short windows and small counts, to check the harness")
    p.add_argument("--streams", help="concurrent streaming chats per level (default 1,100,500; quick 1,50,200)")
    p.add_argument("--window", type=float, help="measuring seconds per level (default 6; quick 5)")
    p.add_argument("--warm", type=float, help="seconds before the window, over which the first sends are spread (default 3; quick 2)")
    p.add_argument("--idle", type=int, help="idle sockets on one ASGI process (default 10000; quick 1000)")
    p.add_argument("--idle-budget", type=float, help="seconds allowed for opening them (default 90; quick 30)")
    p.add_argument("--room-sizes", help="members per room in the room scenarios (default 10,100,500; quick 10,50,200; embedded 10,50)")
    p.add_argument("--room-ai", type=int, help="the room size that also gets the AI stream (default 100; quick and embedded 50)")
    p.add_argument("--room-typers", type=int, default=100, help="members typing in the typing storm (in the largest room)")
    p.add_argument("--tps", type=float, default=50.0, help="the test model's words per second")
    p.add_argument("--words", type=int, default=1000, help="the test model's answer length (1000 words at 50/s: each chat streams through the window)")
    p.add_argument("--start-rate", type=float, default=100.0, help="first sends per second at most, at each load level (stretches the warm-up)")
    p.add_argument("--first-rounds", type=int, help="rounds of the first-delta scenario for one sender, half as many for 20 (default 16; quick 10)")
    p.add_argument("--asgi", type=int, default=os.cpu_count() or 2, help="ASGI processes in production mode (one per core)")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=300, help="runs per Celery worker process at once (NOUS_WORKER_RUNS)")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--db-conn-max-age", type=int, help="DB_CONN_MAX_AGE of the servers (default: the app's own default)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for every server process, e.g. --env NOUS_COALESCE_MAX_WIDEN=1 (repeatable)")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="print two saved results side by side and exit")
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def plans(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One plan per stack configuration: the StackConfig and the scenario options."""
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenario(s) in --only: {', '.join(sorted(unknown))}")
    q = args.quick
    opts = {
        "only": only, "tps": args.tps, "words": args.words, "start_rate": args.start_rate, "clients": args.clients, "users": 100,
        "levels": [int(s) for s in (args.streams or ("1,50,200" if q else "1,100,500")).split(",")],
        "window": args.window or (5.0 if q else 6.0), "warm": args.warm or (2.0 if q else 3.0),
        "knee_steps": 1 if q else 3, "knee_max": 1500, "first_rounds": args.first_rounds or (10 if q else 16), "first_parts": ["one sender", "20 senders", "20 back to back"],
        "idle": args.idle or (1000 if q else 10000), "idle_budget": args.idle_budget or (30.0 if q else 90.0),
        "idle_concurrency": 16, "fault_streams": 10 if q else 40,
        "room_sizes": [int(s) for s in (args.room_sizes or ("10,50,200" if q else "10,100,500")).split(",")],
        "room_ai": args.room_ai or (50 if q else 100), "room_typers": args.room_typers if not q else min(args.room_typers, 40),
        "room_messages": 20 if q else 40, "room_rate": 5.0, "room_storm_secs": 5.0 if q else 10.0, "room_ai_words": 300,
        "room_join_concurrency": 4,
    }
    opts["room_storm"] = max(opts["room_sizes"])
    bad = [e for e in args.env if "=" not in e]
    if bad:
        sys.exit(f"--env wants NAME=VALUE, got {bad[0]!r}")
    common = {"asgi": args.asgi, "workers": args.workers, "concurrency": args.concurrency, "db_conn_max_age": args.db_conn_max_age, "ws": args.ws,
              **({"pg_url": args.pg_url} if args.pg_url else {}), **({"redis_url": args.redis_url} if args.redis_url else {}),
              "extra_env": dict(e.split("=", 1) for e in args.env)}
    modes = ["production", "embedded"] if args.mode == "both" else [args.mode]
    out = []
    for mode in modes:
        cfg = StackConfig(mode=mode, server=args.server or "uvicorn", layer=args.layer or "pubsub", **common)
        if mode == "production":
            out.append({"stack": asdict(cfg), "opts": opts})
        else:
            # The embedded default has no idle target: a shorter budget is enough to see its memory per socket.
            # Its rooms are small: one process holds every socket and runs the AI itself.
            small = opts["room_sizes"] if max(opts["room_sizes"]) <= 50 else [10, 50]
            out.append({"stack": asdict(cfg), "opts": {**opts, "idle_budget": opts["idle_budget"] / 2.5, "room_sizes": small,
                                                       "room_ai": max(small), "room_storm": max(small),
                                                       "room_typers": min(opts["room_typers"], max(small) // 5)}})
        if mode == "production" and not (args.no_variants or args.server or args.layer):
            # The comparisons: first delta, one level near where production mode still keeps up, idle memory.
            mid = [lv for lv in opts["levels"] if lv > 1][:1] or opts["levels"][-1:]
            vopts = {**opts, "only": [s for s in only if s in ("first", "latency", "idle")], "levels": mid,
                     "idle_budget": opts["idle_budget"] / 3, "first_rounds": opts["first_rounds"] // 2, "first_parts": ["20 senders"]}
            # A comparison with nothing to run (e.g. --only rooms) is left out.
            if vopts["only"]:
                out.append({"stack": asdict(StackConfig(mode=mode, server="daphne", layer="pubsub", **common)), "opts": vopts})
            if [s for s in vopts["only"] if s != "idle"]:
                out.append({"stack": asdict(StackConfig(mode=mode, server="uvicorn", layer="core", **common)),
                            "opts": {**vopts, "only": [s for s in vopts["only"] if s != "idle"]}})
    return out


def run_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process: start the stack, the clients, every scenario."""
    from bench.pool import ClientPool
    from bench.stack import Stack, raise_nofile

    raise_nofile()
    host_before = hostspeed.reading()  # before anything of ours runs
    cfg = StackConfig(**plan["stack"])
    opts = argparse.Namespace(**plan["opts"])
    stack = Stack(cfg)
    os.environ.update(stack.env)
    started = time.time()
    print(f"[{cfg.name}] host before: {host_before}", flush=True)
    print(f"[{cfg.name}] preparing the database and starting {cfg.asgi_count} {cfg.server} process(es)"
          + (f", {cfg.workers} Celery worker(s) x {cfg.concurrency} runs" if cfg.mode == "production" else ""), flush=True)
    stack.prepare()
    import django

    django.setup()
    from bench.scenarios import Bench

    result: dict[str, Any] = {"config": {**plan["stack"], "name": cfg.name}, "opts": plan["opts"], "base_levels": opts.levels}
    pool = None
    try:
        stack.start()
        pool = ClientPool(opts.clients)
        bench = Bench(stack, pool, opts)
        if "first" in opts.only:
            result["first_delta"] = bench.first_delta()
        if "latency" in opts.only or "knee" in opts.only:
            result["levels"] = [bench.stream_level(n) for n in opts.levels]
            for _ in range(opts.knee_steps if "knee" in opts.only else 0):
                n = report.next_knee_level(result["levels"], opts.knee_max)
                if n is None:
                    break
                bench.log(f"knee: one more level at {n} streams")
                result["levels"].append(bench.stream_level(n))
            if "knee" in opts.only:
                result["knee"] = report.knee(result["levels"])
                bench.log(f"knee: {result['knee']}")
            result["hook"] = any(lv["hook"] for lv in result["levels"])
        if "idle" in opts.only:
            result["idle"] = bench.idle(opts.idle)
        if "faults" in opts.only:
            result["faults"] = bench.faults()
        if "rooms" in opts.only:
            result["rooms"] = bench.rooms()
        result["failures"] = bench.failures
    finally:
        if pool is not None:
            pool.close()
        stack.stop()
    result["host"] = {"before": host_before, "after": hostspeed.reading()}
    print(f"[{cfg.name}] host after: {result['host']['after']}", flush=True)
    result["secs"] = round(time.time() - started, 1)
    return result


def main() -> int:
    args = parse()
    if args.compare:
        print(report.compare(Path(args.compare[0]), Path(args.compare[1])))
        return 0
    if args.config:
        Path(args.out).write_text(json.dumps(run_plan(json.loads(args.config))))
        return 0
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    VAR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    crashed = []
    for plan in plans(args):
        name = StackConfig(**plan["stack"]).name
        out = VAR / f"{stamp}-{name}.json"
        code = subprocess.call([sys.executable, "-m", "bench", "--config", json.dumps(plan), "--out", str(out)])
        if code != 0 or not out.exists():
            crashed.append(name)
            print(f"[{name}] CRASHED (exit {code}); logs in {VAR}", flush=True)
            continue
        results[name] = json.loads(out.read_text())
        print(f"[{name}] done in {results[name]['secs']:.0f} s", flush=True)
    path = report.save({"stamp": stamp, "argv": sys.argv[1:], "secs": round(time.time() - started, 1), "configs": results}, stamp, args.mode)
    print()
    if results:
        print(report.table(list(results.values())))
    print(f"\nsaved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path} in {time.time() - started:.0f} s")
    failures = [f"[{name}] {f}" for name, r in results.items() for f in r.get("failures", [])]
    if failures or crashed:
        print("\n" + "!" * 100)
        print(f"BENCHMARK FAILED: {len(failures)} correctness failure(s), {len(crashed)} crashed configuration(s)")
        for f in failures[:30]:
            print("  " + f)
        print("!" * 100)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
