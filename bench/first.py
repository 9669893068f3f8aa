"""The first-delta scenarios (`--only first`), run by the driver: a mixin of `bench.scenarios.Bench`.

message.send -> first run.delta with the test model, whose first word comes at once: one sender
at a time, then 20 at once (rounds, so the runs' starts and ends stay apart), then 20 chats back
to back (each sends again as soon as its answer ended: starts among ends). Each part reports the
CPU every role spent per run.
"""

from __future__ import annotations

from typing import Any

from bench.report import pcts


class FirstDeltaScenarios:
    # Provided by Bench, with the driving methods (conversations, open, chat, close, verify, log).
    opts: Any

    def first_delta(self) -> dict[str, Any]:
        """message.send -> first run.delta. The test model's first word comes at once, then one every 1/tps s."""
        o = self.opts
        model = f"test:tps={o.tps},words=10"
        out = {}
        run_secs = 10 / o.tps
        for label, senders, rounds, period in (("one sender", 1, o.first_rounds, run_secs + 0.15),
                                               ("20 senders", 20, o.first_rounds // 2, run_secs + 0.3)):
            if label not in o.first_parts:
                continue
            conv = self.conversations(senders, model)
            self.open(label, conv, model)
            self.log(f"send->first delta, {label}: {rounds} rounds after one warm-up round")
            # The warm-up round opens the servers' database connections; it is checked, not counted.
            warm_up = self.chat(label, conv, max_runs=1, run_timeout=30)
            m = self.chat(label, conv, max_runs=rounds, period=period, run_timeout=30)
            self.close()
            self.verify(label, conv, warm_up["runs"] + m["runs"])
            out[label] = {"senders": senders, "first_delta_ms": pcts(m["first_delta"]), "send_to_emit_ms": pcts(m["send_emit"]),
                          "send_to_created_ms": pcts(m["to_created"]), "send_to_started_ms": pcts(m["to_started"]), "runs": len(m["runs"]),
                          "cpu_ms_per_run": m["cpu_ms_per_run"]}
            f = out[label]
            self.log(f"send->first delta, {label}: p50/p99 {f['first_delta_ms']['p50']}/{f['first_delta_ms']['p99']} ms "
                     f"({f['first_delta_ms']['n']} runs); message.created {f['send_to_created_ms']['p50']}/{f['send_to_created_ms']['p99']}, "
                     f"run.started {f['send_to_started_ms']['p50']}/{f['send_to_started_ms']['p99']}, "
                     f"model's first word {f['send_to_emit_ms']['p50']}/{f['send_to_emit_ms']['p99']}; "
                     f"CPU ms per run {f['cpu_ms_per_run']}")
        if "20 back to back" in o.first_parts:
            out["20 back to back"] = self.back_to_back(model, 20)
        return out

    def back_to_back(self, model: str, n: int) -> dict[str, Any]:
        """n chats, each sending again as soon as its short answer ended: starts among ends, as under
        a steady load of short answers (the rounds above keep the two apart)."""
        label = f"{n} back to back"
        conv = self.conversations(n, model)
        self.open(label, conv, model)
        m = self.chat(label, conv, warm=1.0, duration=self.opts.window, drain=2.0, run_timeout=30)
        self.close()
        self.verify(label, conv, m["runs"])
        out = {"chats": n, "first_delta_ms": pcts(m["first_delta"]), "runs": len(m["runs"]), "runs_per_s": round(len(m["runs"]) / m["window"], 1),
               "cpu_ms_per_run": m["cpu_ms_per_run"]}
        f = out["first_delta_ms"]
        self.log(f"send->first delta, {label}: p50/p99 {f['p50']}/{f['p99']} ms ({f['n']} runs), {out['runs_per_s']} runs/s; "
                 f"CPU ms per run {out['cpu_ms_per_run']}")
        return out
