"""What chat/runs/publish.py relies on in channels_redis: an upgrade that breaks it fails here, not in production."""

import asyncio
import logging
import uuid

import pytest
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from django.conf import settings

from chat.fanout import group_for, layer_event
from chat.runs import publish
from chat.runs.redis_client import redis_client
from chat.runs.replay import replay_log
from tests.conftest import skip_or_fail


@pytest.fixture
def fast_path_checked_afresh():
    publish.fast_delta_path.cache_clear()
    yield
    publish.fast_delta_path.cache_clear()


@pytest.fixture
async def member():
    """A channel of the configured pub/sub layer, added to a fresh conversation's group."""
    if not settings.REDIS_URL:
        skip_or_fail("needs REDIS_URL: the one-round-trip delta exists only with the Redis pub/sub layer")
    layer = get_channel_layer()
    assert isinstance(layer, RedisPubSubChannelLayer), type(layer)
    conversation_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    channel = await layer.new_channel()
    await layer.group_add(group_for(conversation_id), channel)
    # SUBSCRIBE is not acknowledged before group_add returns; a PUBLISH must not overtake it.
    group_channel = layer._get_group_channel_name(group_for(conversation_id))
    deadline = asyncio.get_running_loop().time() + 5
    while (await redis_client().pubsub_numsub(group_channel))[0][1] < 1:
        assert asyncio.get_running_loop().time() < deadline, "the group subscription never reached Redis"
        await asyncio.sleep(0.01)
    yield layer, channel, conversation_id, run_id
    await layer.group_discard(group_for(conversation_id), channel)
    await redis_client().delete(f"nous:run:{run_id}:deltas")


@pytest.fixture
def group_sends(monkeypatch):
    """Every group_send of the pub/sub layer, recorded (and still sent)."""
    calls = []
    original = RedisPubSubLoopLayer.group_send

    async def recording(self, group, message):
        calls.append((group, message["type"]))
        await original(self, group, message)

    monkeypatch.setattr(RedisPubSubLoopLayer, "group_send", recording)
    return calls


def test_the_installed_channels_redis_has_what_the_fast_delta_path_uses(fast_path_checked_afresh):
    assert publish.fast_delta_path(), [f"{cls.__name__}.{name}" for cls, name in publish.PRIVATE_API]


async def test_a_delta_published_in_one_round_trip_reaches_a_group_member(member, group_sends, fast_path_checked_afresh):
    layer, channel, conversation_id, run_id = member
    await publish.publish_delta(conversation_id, run_id, 1, "Hello")
    received = await asyncio.wait_for(layer.receive(channel), 5)
    assert received == layer_event(conversation_id, {"type": "run.delta", "run_id": run_id, "seq": 1, "text": "Hello"})
    assert group_sends == []  # the fast path, not the layer's group_send
    assert (await replay_log().read(run_id)).deltas == [(1, "Hello")]


async def test_every_other_frame_is_one_publish_too_and_skips_the_socket_it_names(member, group_sends, fast_path_checked_afresh):
    layer, channel, conversation_id, run_id = member
    frame = {"type": "run.started", "run_id": run_id, "model": "test:"}
    await publish.publish(conversation_id, frame, exclude="socket-1")
    assert await asyncio.wait_for(layer.receive(channel), 5) == layer_event(conversation_id, frame, "socket-1")
    assert group_sends == []  # not the layer's group_send, whose lock makes a process's frames wait in line


async def test_without_the_private_api_deltas_go_through_group_send_with_one_warning(
    member, group_sends, fast_path_checked_afresh, monkeypatch, caplog
):
    layer, channel, conversation_id, run_id = member
    monkeypatch.setattr(publish, "PRIVATE_API", ((RedisPubSubLoopLayer, "_renamed_by_an_upgrade"),))
    with caplog.at_level(logging.WARNING, logger="nous.runs"):
        for seq, text in enumerate(["Hel", "lo"], start=1):
            await publish.publish_delta(conversation_id, run_id, seq, text)
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(2)]
    assert [(m["seq"], m["frame_type"]) for m in received] == [(1, "run.delta"), (2, "run.delta")]
    assert group_sends == [(group_for(conversation_id), received[0]["type"])] * 2
    assert [r.getMessage() for r in caplog.records if r.name == "nous.runs"] == [
        "channels_redis 4.3.0 has no RedisPubSubLoopLayer._renamed_by_an_upgrade:"
        " deltas go through group_send, one more round trip each"
    ]
    assert (await replay_log().read(run_id)).text == "Hello"


async def test_a_runs_end_is_recorded_and_published_in_one_round_trip(member, group_sends, fast_path_checked_afresh, monkeypatch):
    layer, channel, conversation_id, run_id = member
    published = []
    monkeypatch.setattr(publish, "publish", lambda *args, **kwargs: published.append(args))  # a second round trip
    frame = {"type": "run.stopped", "run_id": run_id, "seq": 0, "conversation_id": conversation_id, "message": {"content": ""}}
    await publish.publish_end(conversation_id, frame)
    assert await asyncio.wait_for(layer.receive(channel), 5) == layer_event(conversation_id, frame)
    assert published == [] and group_sends == []
    assert (await replay_log().read(run_id)).end == frame  # recorded: a resume after this gets it
    await redis_client().delete(f"nous:run:{run_id}:end")
