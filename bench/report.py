"""Percentiles, the knee, the one table, and results saved as JSON (and compared)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"
KNEE_MS = 100.0


def pcts(values: list[float]) -> dict[str, Any]:
    """n, p50, p95, p99 and max (nearest rank), in the unit of the values, rounded to 0.1."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    v = sorted(values)

    def rank(p: float) -> float:
        return round(v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))], 1)

    return {"n": len(v), "p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(v[-1], 1)}


def knee(levels: list[dict[str, Any]]) -> dict[str, Any]:
    """The delivered-delta rate at which added latency p99 crosses KNEE_MS.

    Levels are walked by stream count; between the last level under KNEE_MS and the first one over
    it, the crossing is interpolated on the delivered rate. Past the knee the delivered rate may
    fall (the stack falls behind, or the coalescing window widens under load): then the knee is the
    last good level's rate. `bracket` is [last good delivered rate, first bad offered rate].
    """
    pts = sorted((lv["streams"], lv["deltas_per_s"], lv["added_ms"]["p99"]) for lv in levels if lv["added_ms"]["p99"] is not None)
    if not pts:
        return {"deltas_per_s": None, "bound": "?", "note": "no latency samples (no server timestamps? see chat/runs/benchstamps.py)"}
    per_stream = pts[0][1] / pts[0][0]
    good = None
    for streams, rate, p99 in pts:
        if p99 > KNEE_MS:
            if good is None:
                return {"deltas_per_s": rate, "bound": "<=", "streams": streams, "note": f"p99 {p99} ms already at the lowest level"}
            s0, r0, q0 = good
            at = r0 + (rate - r0) * (KNEE_MS - q0) / (p99 - q0) if rate > r0 else r0
            return {"deltas_per_s": round(at), "bound": "=", "bracket": [r0, round(streams * per_stream)], "between_streams": [s0, streams]}
        good = (streams, rate, p99)
    return {"deltas_per_s": good[1], "bound": ">=", "streams": good[0], "note": f"p99 stayed under {KNEE_MS:.0f} ms"}


def next_knee_level(levels: list[dict[str, Any]], max_streams: int) -> int | None:
    """The next stream count worth measuring to pin the knee down, or None: the geometric middle
    of the two levels around the crossing, or 1.6x the top level if p99 never crossed."""
    pts = sorted((lv["streams"], lv["added_ms"]["p99"]) for lv in levels if lv["added_ms"]["p99"] is not None)
    if not pts:
        return None
    for (s0, q0), (s1, q1) in zip(pts, pts[1:], strict=False):
        if q0 <= KNEE_MS < q1:
            mid = round(math.sqrt(s0 * s1)) if s1 > 2 * s0 else (s0 + s1) // 2
            return mid if s1 - s0 >= 10 and mid not in (s0, s1) else None
    top, q = pts[-1]
    if q <= KNEE_MS and top < max_streams:
        return min(max_streams, int(top * 1.6))
    return None


# --- the table -------------------------------------------------------------------------------


def _get(d: Any, *path: Any) -> Any:
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _level(r: dict[str, Any], n: int) -> dict[str, Any] | None:
    return next((lv for lv in r.get("levels", []) if lv["streams"] == n), None)


def _fmt(*vals: Any, sep: str = "/") -> str:
    return sep.join("-" if v is None else (f"{v:.0f}" if isinstance(v, float) and v >= 100 else str(v)) for v in vals)


Row = tuple[str, str, Callable[[dict[str, Any]], tuple[str, bool | None]]]


def rows(results: list[dict[str, Any]]) -> list[Row]:
    levels = sorted({lv["streams"] for r in results for lv in r.get("levels", []) if lv["streams"] in (r.get("base_levels") or [])})
    top = max(levels) if levels else None
    out: list[Row] = []
    for n in levels:
        def added(r: dict[str, Any], n: int = n) -> tuple[str, bool | None]:
            level = _level(r, n)
            a = _get(level, "added_ms")
            if level and a and a["p99"] is None:
                return "no delta in the window", False if n == 500 else None
            ok = None if n != 500 or not a or a["p99"] is None else a["p99"] < 50
            return (_fmt(a["p50"], a["p95"], a["p99"]) if a else "-"), ok
        out.append((f"added latency p50/p95/p99 ms, {n} streams", "p99 < 50" if n == 500 else "", added))
    for n in levels:
        out.append((f"emit->client p50/p99 ms (with coalescing), {n}", "",
                    lambda r, n=n: (_fmt(_get(_level(r, n), "emit_ms", "p50"), _get(_level(r, n), "emit_ms", "p99")), None)))
    if levels:
        out.append(("delivered deltas/s at " + "/".join(map(str, levels)) + " streams", "",
                    lambda r: (_fmt(*(_get(_level(r, n), "deltas_per_s") for n in levels)), None)))
        out.append(("runs / stopped at end / end via resume / timed out, " + "/".join(map(str, levels)), "",
                    lambda r: (" ".join(_fmt(*(_get(_level(r, n), k) for k in ("runs", "stopped_at_end", "late_ends", "timed_out")))
                                        for n in levels), None)))
    if top:
        out.append((f"CPU % at {top}: asgi/worker/redis/pg*/client", "",
                    lambda r: (_fmt(*(_get(_level(r, top), "cpu_pct", k) for k in ("asgi", "worker", "redis", "postgres", "client"))), None)))

    def knee_cell(r: dict[str, Any]) -> tuple[str, bool | None]:
        k = r.get("knee")
        if not k or k.get("deltas_per_s") is None:
            return "-", None
        ok = k["deltas_per_s"] >= 2000 if k["bound"] in ("=", ">=") else (False if k["bound"] == "<=" else None)
        bracket = f" [{k['bracket'][0]:.0f}-{k['bracket'][1]:.0f}]" if k.get("bracket") else ""
        return f"{'' if k['bound'] == '=' else k['bound'] + ' '}{k['deltas_per_s']}{bracket}", (ok if k["bound"] != ">=" or ok else None)

    out.append(("knee: deltas/s where added p99 = 100 ms", ">= 2000", knee_cell))

    def first(label: str, target: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], tuple[str, bool | None]]:
        def cell(r: dict[str, Any]) -> tuple[str, bool | None]:
            f = _get(r, "first_delta", label, "first_delta_ms")
            return (_fmt(f["p50"], f["p99"]), target(f)) if f and f["p50"] is not None else ("-", None)
        return cell

    # Issue 16: p50 under 8 ms (the p99 bound is the bench issue's).
    out.append(("send->first delta p50/p99 ms, one sender", "< 8 / < 30", first("one sender", lambda f: f["p50"] < 8 and f["p99"] < 30)))
    out.append(("send->first delta p50/p99 ms, 20 senders", "p99 < 100", first("20 senders", lambda f: f["p99"] < 100)))

    def back_to_back(r: dict[str, Any]) -> tuple[str, bool | None]:
        b = _get(r, "first_delta", "20 back to back")
        return (f"{_fmt(b['first_delta_ms']['p50'], b['first_delta_ms']['p99'])} ({b['runs_per_s']} runs/s)" if b else "-"), None

    out.append(("send->first delta p50/p99 ms, 20 chats back to back", "", back_to_back))
    out.append(("  of which send->model start p50/p99 ms, 20 senders", "", lambda r: (_fmt(
        _get(r, "first_delta", "20 senders", "send_to_emit_ms", "p50"), _get(r, "first_delta", "20 senders", "send_to_emit_ms", "p99")), None)))

    def idle(r: dict[str, Any]) -> tuple[str, bool | None]:
        i = r.get("idle")
        if not i:
            return "-", None
        wanted = f"/{i['wanted']}" if i.get("wanted", i["sockets"]) != i["sockets"] else ""
        rate = f" ({i['connects_per_s']}/s)" if "connects_per_s" in i else ""
        return f"{i['sockets']}{wanted} @ {i['kib_per_socket']} KiB{rate}", i["sockets"] >= 10000 and i["kib_per_socket"] <= 40

    out.append(("idle sockets on one ASGI process @ RSS each (opened/s)", "10000 @ <= 40", idle))

    def faults(r: dict[str, Any]) -> tuple[str, bool | None]:
        f = r.get("faults")
        if not f:
            return "-", None
        return " ".join(f"{k}:{v['statuses'].get('completed', 0)}c/{v['statuses'].get('failed', 0)}f" for k, v in f.items()), None

    out.append(("faults: drops / worker kill / ASGI restart", "", faults))
    out += room_rows(results)
    out.append(("host: pure-Python ms / wake-up us / after idle, before -> after", "", host))
    out.append(("lost, duplicated or mismatched (all checks)", "0", lambda r: (str(len(r.get("failures", []))), not r.get("failures"))))
    return out


def host(r: dict[str, Any]) -> tuple[str, bool | None]:
    """The host's speed around the configuration's run (bench.hostspeed): lower is faster."""
    h = r.get("host")
    if not h:
        return "-", None
    return " -> ".join(_fmt(h[k]["python_ms"], h[k]["wakeup_us"], h[k].get("idle_wakeup_us")) for k in ("before", "after")), None


def room_rows(results: list[dict[str, Any]]) -> list[Row]:
    """The room scenarios: fan-out per size, the AI stream to a room, the typing storm."""
    if not any(r.get("rooms") for r in results):
        return []
    sizes = sorted({int(n) for r in results for n in (_get(r, "rooms", "fanout") or {})})
    out: list[Row] = []
    for n in sizes:
        def fanout(r: dict[str, Any], n: int = n) -> tuple[str, bool | None]:
            f = _get(r, "rooms", "fanout", str(n))
            if not f or f["all_ms"]["p50"] is None:
                return "-", None
            ok = f["last_ms"]["p99"] < 50 if n == 500 and f["last_ms"]["p99"] is not None else None
            return _fmt(f["all_ms"]["p50"], f["all_ms"]["p99"], f["last_ms"]["p99"]), ok
        out.append((f"room fan-out p50/p99 / last-member p99 ms, {n} members", "last p99 < 50" if n == 500 else "", fanout))

    def ai(r: dict[str, Any]) -> tuple[str, bool | None]:
        a = _get(r, "rooms", "ai")
        if not a:
            return "-", None
        return (f"{a['members']}: {_fmt(a['deltas_per_s'])}/s, {_fmt(a['added_ms']['p50'], a['added_ms']['p99'])}, "
                f"{_fmt(a['emit_ms']['p99'])}"), None
    out.append(("room AI stream: members: deltas/s, added p50/p99, emit->client p99 ms", "", ai))

    def storm(r: dict[str, Any]) -> tuple[str, bool | None]:
        t = _get(r, "rooms", "storm")
        if not t or t["all_ms"]["p50"] is None:
            return "-", None
        ok = t["all_ms"]["p99"] < 100 if t["members"] >= 500 else None
        return f"{t['members']}/{t['typers']}: {_fmt(t['all_ms']['p50'], t['all_ms']['p99'], t['last_ms']['p99'])}", ok
    out.append(("typing storm members/typers: fan-out p50/p99/last p99 ms", "p99 < 100", storm))

    def typing(r: dict[str, Any]) -> tuple[str, bool | None]:
        t = _get(r, "rooms", "storm", "typing_per_member_s")
        return (_fmt(t["mean"], t["max"]), None) if t else ("-", None)
    out.append(("  typing frames per member per s, mean/max (<= 1 per typer)", "", typing))
    out.append(("  CPU % in the storm: asgi/worker/redis/pg*/client", "", lambda r: (_fmt(*(
        _get(r, "rooms", "storm", "cpu_pct", k) for k in ("asgi", "worker", "redis", "postgres", "client"))), None)))

    def complete(r: dict[str, Any]) -> tuple[str, bool | None]:
        rooms = r.get("rooms")
        if not rooms:
            return "-", None
        parts = [f"{f['complete']}/{f['members']}" for f in rooms["fanout"].values()]
        if rooms.get("storm"):
            parts.append(f"storm {rooms['storm']['complete']}/{rooms['storm']['members']}")
        if rooms.get("ai"):
            parts.append(f"ai {rooms['ai']['members_identical']}/{rooms['ai']['members']}")
        return " ".join(parts), None
    out.append(("room members with every message once in order (ai: same run)", "", complete))
    return out


def table(results: list[dict[str, Any]], headers: list[str] | None = None) -> str:
    headers = headers or [r["config"]["name"] for r in results]
    body = []
    for label, target, cell in rows(results):
        cells = []
        for r in results:
            text, ok = cell(r)
            production = r["config"]["mode"] == "production"
            cells.append(text + ("" if ok is None or not target or not production else (" ok" if ok else " MISS")))
        body.append([label, target, *cells])
    head = ["metric", "target (production)", *headers]
    widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
    line = "+".join("-" * (w + 2) for w in widths)
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    notes = ("pg* = the whole PostgreSQL server, shared with anything else on the machine. added latency = client receive - t_flush;"
             " emit->client = client receive - t_emit (first word of the delta).")
    return "\n".join([fmt.format(*head), line, *(fmt.format(*map(str, row)) for row in body), notes])


def save(results: dict[str, Any], stamp: str, mode: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stamp}-{mode}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
    return path


def load(path: Path) -> dict[str, Any]:
    """The configurations of a saved run: a combined file, or one configuration's own file."""
    data = json.loads(path.read_text())
    return data["configs"] if "configs" in data else {data["config"]["name"]: data}


def compare(old: Path, new: Path) -> str:
    a, b = load(old), load(new)
    names = [n for n in b if n in a]
    if not names:
        return f"no configuration in common between {old.name} and {new.name}"
    results, headers = [], []
    for n in names:
        results += [a[n], b[n]]
        headers += [f"{n} ({old.stem[:15]})", f"{n} ({new.stem[:15]})"]
    return table(results, headers)
