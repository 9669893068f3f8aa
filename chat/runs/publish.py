"""Publishing run frames: appended to the replay log (the ledger) and sent to the group (the doorbell)."""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib.metadata import version
from typing import Any

from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer

from chat.fanout import group_for, layer_event
from chat.runs.hooks import run_ended
from chat.runs.redis_client import redis_client
from chat.runs.replay import FRAME_MARK, RedisReplayLog, replay_log
from nous_site.metrics import DELTAS, RUNS

logger = logging.getLogger("nous.runs")

# The private parts of channels_redis the one-round-trip delta uses (pinned by
# tests/test_publish_contract.py). The loop layer's method is reached through the outer layer's
# __getattr__, so it is looked up on its own class.
PRIVATE_API = ((RedisPubSubLoopLayer, "_get_group_channel_name"), (RedisPubSubChannelLayer, "serialize"))


@cache
def fast_delta_path() -> bool:
    """Whether this channels_redis still has what the one-round-trip delta needs; warns once if not."""
    missing = [f"{cls.__name__}.{name}" for cls, name in PRIVATE_API if not callable(getattr(cls, name, None))]
    if missing:
        logger.warning("channels_redis %s has no %s: deltas go through group_send, one more round trip each",
                    version("channels_redis"), ", ".join(missing))
    return not missing


async def publish(conversation_id: Any, frame: dict[str, Any], exclude: str | None = None) -> None:
    """Send one frame to every socket of a conversation (but the socket `exclude`), encoded once.

    In production a plain PUBLISH on the loop's Redis pool (`doorbell`): the layer's own
    group_send holds a lock per connection across each round trip, so a process's frames
    queued behind one another."""
    bell = doorbell(conversation_id, frame, exclude)
    if bell is not None:
        await redis_client().publish(*bell)
    else:
        await get_channel_layer().group_send(group_for(conversation_id), layer_event(conversation_id, frame, exclude))


def doorbell(conversation_id: Any, frame: dict[str, Any], exclude: str | None = None) -> tuple[str, bytes] | None:
    """What `publish` would PUBLISH, as `(channel, payload)` for a Redis pipeline or script to send
    with other commands (no round trip of its own, nor the layer's lock); None where the channel
    layer is not the Redis pub/sub one (the embedded default), and the caller must `publish`."""
    layer = get_channel_layer()
    if not (isinstance(layer, RedisPubSubChannelLayer) and isinstance(replay_log(), RedisReplayLog) and fast_delta_path()):
        return None
    return layer._get_group_channel_name(group_for(conversation_id)), layer.serialize(layer_event(conversation_id, frame, exclude))


async def publish_delta(conversation_id: str, run_id: str, seq: int, text: str) -> None:
    """Append a delta to the replay log, then send it: in one Redis round trip in production."""
    DELTAS.inc()
    await _logged(conversation_id, {"type": "run.delta", "run_id": run_id, "seq": seq, "text": text}, text)


async def publish_run_frame(conversation_id: str, frame: dict[str, Any]) -> None:
    """A numbered run frame other than a delta (a tool call or result): logged, then sent."""
    await _logged(conversation_id, frame, FRAME_MARK + json.dumps(frame))


async def _logged(conversation_id: str, frame: dict[str, Any], entry: str) -> None:
    """Append `entry` (frame `seq` of its run) to the replay log, then send `frame`. In production
    the PUBLISH rides in the append's pipeline: one round trip (deltas are most of the traffic)."""
    run_id, seq = frame["run_id"], frame["seq"]
    bell = doorbell(conversation_id, frame)
    if bell is not None:
        await replay_log().append(run_id, seq, entry, then_publish=bell)
    else:
        await replay_log().append(run_id, seq, entry)
        await publish(conversation_id, frame)


async def publish_end(conversation_id: str, frame: dict[str, Any]) -> None:
    """Record the terminal frame (so a late resume still gets it), then send it: in one Redis
    round trip in production (the PUBLISH in the record's transaction, after it)."""
    bell = doorbell(conversation_id, frame)
    if bell is not None:
        await replay_log().finish(frame["run_id"], frame, then_publish=bell)
    else:
        await replay_log().finish(frame["run_id"], frame)
        await publish(conversation_id, frame)
    RUNS.labels(frame["type"].split(".", 1)[1]).inc()
    await run_ended(str(conversation_id), frame)
