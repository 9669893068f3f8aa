"""The client processes: the driver sends each a command over a pipe (`open` sockets, `chat` on
them until a deadline, `alive`, `close`; `room_open`, `room_settle`, `room_phase` for the room
scenarios) and waits for its answer. See bench/clients.py and bench/roomclients.py for what one
socket does and checks."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
import traceback
from typing import Any

from bench import roomclients
from bench.clients import Conn, Stats


async def _open_all(conns: list[Conn], cmd: dict[str, Any]) -> dict[str, Any]:
    gate = asyncio.Semaphore(cmd.get("concurrency", 16))
    errors: list[str] = []
    started = time.time()
    deadline = cmd.get("deadline") or float("inf")
    skipped = 0

    async def one(spec: dict[str, Any]) -> None:
        nonlocal skipped
        conn = Conn(spec)
        async with gate:
            if time.time() > deadline:  # the time budget is spent: not a failure, just fewer sockets
                skipped += 1
                return
            for attempt in range(3):
                try:
                    await conn.open()
                    conns.append(conn)
                    return
                except Exception as error:  # noqa: BLE001 - reported to the driver
                    if attempt == 2:
                        errors.append(repr(error))
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(one(spec) for spec in cmd["specs"]))
    return {"opened": len(conns), "failed": len(errors), "skipped": skipped, "errors": errors[:10], "secs": time.time() - started}


async def _chat_all(conns: list[Conn], cmd: dict[str, Any]) -> dict[str, Any]:
    stats = Stats()
    await asyncio.gather(*(c.chat(cmd, stats, i, len(conns)) for i, c in enumerate(conns)))
    return vars(stats)


async def _alive(conns: list[Conn], cmd: dict[str, Any]) -> dict[str, Any]:
    """How many sockets are open, and whether a sample of them still answers a ping frame."""
    from websockets.protocol import State

    open_ = [c for c in conns if c.ws is not None and c.ws.state is State.OPEN]
    sample = random.sample(open_, min(cmd.get("sample", 100), len(open_)))

    async def ping(c: Conn) -> bool:
        try:
            await c.ws.send('{"type": "ping"}')
            while True:
                if json.loads(await asyncio.wait_for(c.ws.recv(), 10)).get("type") == "pong":
                    return True
        except Exception:  # noqa: BLE001
            return False

    answered = sum(await asyncio.gather(*(ping(c) for c in sample)))
    return {"open": len(open_), "pinged": len(sample), "pong": answered}


async def _close_all(conns: list[Conn]) -> dict[str, Any]:
    gate = asyncio.Semaphore(500)

    async def one(c: Conn) -> None:
        async with gate:
            try:
                await c.ws.close()
            except Exception:  # noqa: BLE001
                pass

    await asyncio.gather(*(one(c) for c in conns))
    closed = len(conns)
    conns.clear()
    return {"closed": closed}


async def _serve(pipe: Any) -> None:
    loop = asyncio.get_running_loop()
    conns: list[Conn] = []
    while True:
        cmd = await loop.run_in_executor(None, pipe.recv)
        op = cmd["op"]
        try:
            if op == "exit":
                await _close_all(conns)
                pipe.send({"ok": True})
                return
            handler = {"open": _open_all, "chat": _chat_all, "alive": _alive, "room_open": roomclients.open_all,
                       "room_settle": roomclients.settle, "room_phase": roomclients.phase}.get(op)
            result = await (handler(conns, cmd) if handler else _close_all(conns))
        except Exception:  # noqa: BLE001 - the driver fails loudly with it
            result = {"crash": traceback.format_exc()}
        pipe.send(result)


def _process_main(pipe: Any) -> None:
    from bench.stack import raise_nofile

    raise_nofile()
    asyncio.run(_serve(pipe))


class ClientPool:
    """N client processes; commands go to all of them, each with its share of the sockets."""

    def __init__(self, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_process_main, args=(child,), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def send(self, cmds: list[dict[str, Any]]) -> None:
        for pipe, cmd in zip(self.pipes, cmds, strict=True):
            pipe.send(cmd)

    def recv(self) -> list[dict[str, Any]]:
        results = [pipe.recv() for pipe in self.pipes]
        for r in results:
            if "crash" in r:
                raise RuntimeError("a client process crashed:\n" + r["crash"])
        return results

    def call(self, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.send(cmds)
        return self.recv()

    def broadcast(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call([cmd] * len(self.pipes))

    def split(self, items: list[Any]) -> list[list[Any]]:
        return [items[i :: len(self.pipes)] for i in range(len(self.pipes))]

    def close(self) -> None:
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            try:
                pipe.send({"op": "exit"})
                pipe.recv()
            except (OSError, EOFError):
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()
