"""Who is in a room: a lease per socket (`chat.leases`), so two tabs count once and a killed
process's sockets leave within one lease TTL. Each process sweeps the rooms it has sockets in on
every lease beat and tells them when the list changed behind their back (a process died).

Every change bumps the room's presence version; `presence` frames carry it, so a socket drops a
frame older than the list it already has (a join racing a leave).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from chat.leases import lease_keeper, leases
from chat.runs.publish import publish


def presence_key(conversation_id: Any) -> str:
    return f"nous:presence:{conversation_id}"


async def participants(conversation_id: Any) -> list[str]:
    """The user names in the room now, each once however many tabs they have open."""
    return (await _read(conversation_id))[0]


async def _read(conversation_id: Any) -> tuple[list[str], int]:
    members, version = await leases().members(presence_key(conversation_id))
    return sorted({member.rsplit("|", 1)[0] for member in members}), version


def frame(names: list[str], version: int) -> dict[str, Any]:
    return {"type": "presence", "participants": names, "version": version}


async def enter(conversation_id: str, username: str, socket_id: str) -> tuple[list[str], int, bool]:
    """Add a socket: the participants now, their version, and whether that changed them (a first tab)."""
    key, member = presence_key(conversation_id), f"{username}|{socket_id}"
    await leases().add(key, member)
    lease_keeper().hold(key, member)
    names, version = await _read(conversation_id)
    told = sweeper().rooms.get(conversation_id)
    sweeper().rooms[conversation_id] = names
    return names, version, names != told


async def leave(conversation_id: str, username: str, socket_id: str) -> dict[str, Any] | None:
    """Remove a socket: the `presence` frame to publish, or None if nothing changed (another tab stays)."""
    key, member = presence_key(conversation_id), f"{username}|{socket_id}"
    lease_keeper().release(key, member)
    await leases().remove(key, member)
    names, version = await _read(conversation_id)
    told = sweeper().rooms.get(conversation_id)
    if any(k == key for k, _ in lease_keeper().held):
        sweeper().rooms[conversation_id] = names
    else:
        sweeper().rooms.pop(conversation_id, None)
    return None if names == told else frame(names, version)


class PresenceSweeper:
    """The rooms this process has sockets in, with the participants it last told them."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[str]] = {}

    async def sweep(self) -> None:
        for conversation_id, told in list(self.rooms.items()):
            names = await participants(conversation_id)
            if names != told and conversation_id in self.rooms:
                # Someone's lease ran out (their process died): a change nobody else announced.
                await leases().bump(presence_key(conversation_id))
                names, version = await _read(conversation_id)
                self.rooms[conversation_id] = names
                await publish(conversation_id, frame(names, version))


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceSweeper] = weakref.WeakKeyDictionary()


def sweeper() -> PresenceSweeper:
    """The presence sweeper of the running event loop (renewed with the leases)."""
    loop = asyncio.get_running_loop()
    found = _sweepers.get(loop)
    if found is None:
        found = _sweepers[loop] = PresenceSweeper()
        lease_keeper().sweepers.add(found)
    return found
