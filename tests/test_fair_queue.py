"""The deployment-wide fair run queue: at most NOUS_MAX_ACTIVE_RUNS at once, round robin between
users beyond that, positions told as runs move up, a full queue refused, a dead holder's slot back."""

import asyncio
import os

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.models import AgentRun, Conversation, Message
from chat.runs.slots import slots
from chat.runs.watchdog import end_stale_runs, sweep_slots
from tests.chat_helpers import run_of, send_frame
from tests.conftest import PRODUCTION, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

SLOW = "test:tps=20,words=400"  # 20 s: holds the one slot for the whole test
QUICK = "test:tps=0,words=8"
ONE_SLOT_ENV = {"NOUS_MAX_ACTIVE_RUNS": "1", "NOUS_RUN_SLOT_TTL_SECS": "3", "NOUS_RUN_SLOT_CLAIM_SECS": "10"}


@pytest.fixture(scope="module")
def one_slot_worker(request):
    """In production, the session's worker restarted with one slot and short leases for this
    module (the worker releases and promotes when its runs end), and restored after it."""
    if not PRODUCTION:
        yield None
        return
    worker = request.getfixturevalue("celery_worker")
    saved = {name: os.environ.get(name) for name in ONE_SLOT_ENV}
    worker.stop()
    os.environ.update(ONE_SLOT_ENV)
    worker.start()
    yield worker
    worker.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    worker.start()


@pytest.fixture
def one_slot(settings, one_slot_worker, runs):
    """One run at a time across the deployment: this process and the worker agree."""
    for name, value in ONE_SLOT_ENV.items():
        setattr(settings, name, type(getattr(settings, name))(value))
    return runs


async def chat_of(user, model: str = QUICK) -> Conversation:
    return await Conversation.objects.acreate(owner=user, model=model)


async def queued_run(socket, content: str) -> dict:
    """Send a message and return its first `run.queued`."""
    await socket.send(send_frame(content))
    frame, _ = await socket.recv_until("run.queued")
    return frame


def positions(socket, run_id: str) -> list[int]:
    """The positions a socket was told for a run, repeats folded."""
    told = [f["position"] for f in socket.frames if f["type"] == "run.queued" and f["run_id"] == run_id]
    return [p for i, p in enumerate(told) if i == 0 or told[i - 1] != p]


async def wait_for(condition, timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.1)


async def test_runs_beyond_the_limit_wait_in_round_robin_and_are_told_as_they_move_up(
        alice, bob, charlie, sockets, one_slot):
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    first = await queued_run(blocker, "hold the slot")
    assert first["position"] == 0
    await blocker.recv_until("run.delta")

    # alice sends three messages (three conversations), then bob one: bob's goes second.
    a = [await sockets.open(alice, await chat_of(alice)) for _ in range(3)]
    a_runs = [(await queued_run(socket, f"alice {i}"))["run_id"] for i, socket in enumerate(a)]
    b = await sockets.open(bob, await chat_of(bob))
    b_queued = await queued_run(b, "bob")
    assert b_queued["position"] == 1  # ahead of alice's 2nd and 3rd: one burst does not starve bob
    assert [positions(socket, run_id) for socket, run_id in zip(a, a_runs, strict=True)] == [[0], [1], [2]]

    # Each moves up as the one slot frees; every run completes, in the fair order, none lost.
    await blocker.send({"type": "run.stop"})
    await blocker.recv_until("run.stopped")
    for socket in (*a, b):
        await socket.recv_until("run.completed", timeout=40)
    order = [str(r) async for r in AgentRun.objects.filter(
        conversation__owner__in=[alice, bob]).order_by("started_at").values_list("id", flat=True)]
    assert order == [a_runs[0], b_queued["run_id"], a_runs[1], a_runs[2]]
    assert positions(a[0], a_runs[0]) == [0]
    assert positions(b, b_queued["run_id"]) == [1, 0]
    assert positions(a[1], a_runs[1]) == [1, 2, 1, 0]
    assert positions(a[2], a_runs[2]) == [2, 3, 2, 1, 0]
    for socket, run_id in [*zip(a, a_runs, strict=True), (b, b_queued["run_id"])]:
        types = [f["type"] for f in socket.frames if f.get("run_id") == run_id]
        # told its last position before it starts, nothing after: the page's note clears on run.started
        assert types.index("run.started") > max(i for i, t in enumerate(types) if t == "run.queued")
    assert await AgentRun.objects.filter(status__in=AgentRun.ACTIVE).acount() == 0
    assert (await slots().snapshot()) == ([], [])


async def test_a_waiting_runs_message_reaches_every_tab_and_it_is_handed_over_only_at_its_turn(
        alice, charlie, sockets, one_slot):
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    await blocker.recv_until("run.delta")
    conversation = await chat_of(alice)
    sender, other = await sockets.open(alice, conversation), await sockets.open(alice, conversation)
    waiting = await queued_run(sender, "my turn soon")
    assert waiting["position"] == 0  # no run ahead of it, but the one slot is taken
    created, _ = await other.recv_until("message.created")
    assert created["message"]["content"] == "my turn soon"
    told, _ = await other.recv_until("run.queued")
    assert told["run_id"] == waiting["run_id"] and told["position"] == 0
    if PRODUCTION:  # waiting its turn, it is not on the list the workers take runs from
        from tests.test_handover import waiting_in_handover

        await asyncio.sleep(0.3)
        assert waiting["run_id"] not in waiting_in_handover()
    assert (await run_of(waiting["run_id"])).status == AgentRun.Status.QUEUED
    await blocker.send({"type": "run.stop"})
    for socket in (sender, other):
        completed, frames = await socket.recv_until("run.completed", timeout=40)
        assert completed["run_id"] == waiting["run_id"] and "run.started" in [f["type"] for f in frames]


async def test_concurrent_sends_of_several_users_are_all_answered(alice, bob, charlie, sockets, one_slot):
    # The slot is held while the six sends arrive at once, so all of them wait: with a free slot the
    # first quick answer could end before the others were stored, and the order would be arrival's.
    dave = await sync_to_async(make_user)("dave")
    blocker = await sockets.open(dave, await chat_of(dave, SLOW))
    await queued_run(blocker, "hold the slot")
    await blocker.recv_until("run.delta")
    users = [alice, alice, bob, bob, charlie, charlie]
    socks = [await sockets.open(user, await chat_of(user)) for user in users]
    await asyncio.gather(*(socket.send(send_frame(f"at once {i}")) for i, socket in enumerate(socks)))
    for socket in socks:
        await socket.recv_until("run.queued")
    holders, waiting = await slots().snapshot()
    assert len(holders) == 1 and len(waiting) == 6
    await blocker.send({"type": "run.stop"})
    await blocker.recv_until("run.stopped")
    for socket in socks:
        await socket.recv_until("run.completed", timeout=40)
    runs = [r async for r in AgentRun.objects.exclude(conversation__owner=dave).order_by("started_at").select_related("conversation")]
    assert [r.status for r in runs] == ["completed"] * 6
    # The first three to start are one of each user's: round robin, whatever the arrival order.
    assert len({r.conversation.owner_id for r in runs[:3]}) == 3
    assert len({r.conversation.owner_id for r in runs[3:]}) == 3


async def test_a_full_queue_refuses_a_regenerate_and_an_edit_and_stores_nothing(alice, bob, charlie, sockets, settings,
                                                                                one_slot):
    conversation = await chat_of(alice)
    question = await Message.objects.acreate(conversation=conversation, role="user", content="a question", author=alice)
    answer = await Message.objects.acreate(conversation=conversation, role="assistant", content="an answer", parent=question)
    settings.NOUS_MAX_QUEUED_RUNS = 1
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    waiting = await sockets.open(bob, await chat_of(bob))
    assert (await queued_run(waiting, "I wait"))["position"] == 0
    socket = await sockets.open(alice, conversation)
    for frame in ({"type": "message.regenerate", "message_id": str(answer.id), "client_id": "regen-1"},
                  {"type": "message.edit", "id": str(question.id), "content": "edited", "client_id": "edit-1"}):
        await socket.send(frame)
        error, _ = await socket.recv_until("error")
        assert (error["code"], error["ref"]) == ("overloaded", frame["client_id"])
    assert await Message.objects.filter(conversation=conversation).acount() == 2
    assert not await AgentRun.objects.filter(conversation=conversation).aexists()
    await blocker.send({"type": "run.stop"})
    await blocker.recv_until("run.stopped")


async def test_a_send_that_passes_the_check_but_finds_the_queue_full_fails_its_run(alice, bob, charlie, sockets,
                                                                                  settings, one_slot, monkeypatch):
    # The check before storing reads a count another process may change a moment later: the send is
    # stored then, and its run ends `failed` `overloaded` (retryable), never waits outside the queue.
    settings.NOUS_MAX_QUEUED_RUNS = 1
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    waiting = await sockets.open(bob, await chat_of(bob))
    await queued_run(waiting, "I wait")

    async def stale_check() -> bool:
        return False

    monkeypatch.setattr(slots(), "full", stale_check)
    conversation = await chat_of(alice)
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("just too late"))
    failed, _ = await socket.recv_until("run.failed")
    assert (failed["error"]["code"], failed["error"]["retryable"]) == ("overloaded", True)
    assert await Message.objects.filter(conversation=conversation, role="user", content="just too late").aexists()
    assert await AgentRun.objects.filter(conversation=conversation, status="failed", error_code="overloaded").acount() == 1
    await blocker.send({"type": "run.stop"})
    await blocker.recv_until("run.stopped")
    await waiting.recv_until("run.completed", timeout=20)


async def test_a_full_queue_refuses_a_send_and_stores_nothing(alice, bob, charlie, sockets, settings, one_slot):
    settings.NOUS_MAX_QUEUED_RUNS = 1
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    waiting = await sockets.open(bob, await chat_of(bob))
    assert (await queued_run(waiting, "I wait"))["position"] == 0
    conversation = await chat_of(alice)
    socket = await sockets.open(alice, conversation)
    frame = send_frame("no room for me")
    await socket.send(frame)
    error, _ = await socket.recv_until("error")
    assert (error["code"], error["ref"]) == ("overloaded", frame["client_id"])
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert not await AgentRun.objects.filter(conversation=conversation).aexists()
    await blocker.send({"type": "run.stop"})
    await blocker.recv_until("run.stopped")
    await waiting.recv_until("run.completed", timeout=20)
    await socket.send(send_frame("room again"))  # a slot is free again
    await socket.recv_until("run.completed", timeout=20)


async def test_stopping_a_run_that_waits_takes_it_out_of_the_queue(alice, bob, charlie, sockets, one_slot):
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    mine = await sockets.open(alice, await chat_of(alice))
    my_run = (await queued_run(mine, "never mind"))["run_id"]
    theirs = await sockets.open(bob, await chat_of(bob))
    their_run = (await queued_run(theirs, "after alice"))["run_id"]
    assert positions(theirs, their_run) == [1]

    await mine.send({"type": "run.stop"})
    stopped, _ = await mine.recv_until("run.stopped")
    assert stopped["run_id"] == my_run and (await run_of(my_run)).status == "stopped"
    moved, _ = await theirs.recv_until("run.queued")
    assert (moved["run_id"], moved["position"]) == (their_run, 0)
    assert (await slots().snapshot())[1] == [their_run]

    await blocker.send({"type": "run.stop"})
    await blocker.recv_until("run.stopped")
    await theirs.recv_until("run.completed", timeout=20)
    assert (await run_of(my_run)).started_at is None  # it never ran


@pytest.mark.skipif(not PRODUCTION, reason="needs REDIS_URL: a Celery worker process to kill")
async def test_a_killed_workers_slot_comes_back_and_the_waiting_run_runs(alice, charlie, sockets, one_slot):
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    dead_run = (await queued_run(blocker, "I will die"))["run_id"]
    await blocker.recv_until("run.delta")
    socket = await sockets.open(alice, await chat_of(alice))
    my_run = (await queued_run(socket, "my turn next"))["run_id"]
    await sync_to_async(one_slot.kill)()
    await sync_to_async(one_slot.start)()

    async def started() -> bool:
        await sweep_slots()
        return (await run_of(my_run)).status != "queued"

    await wait_for(started, what="the waiting run starting on the new worker")
    completed, _ = await socket.recv_until("run.completed", timeout=20)
    assert completed["run_id"] == my_run
    # The dead run itself is the watchdog's: failed, never run again.
    assert (await run_of(dead_run)).status == "running"
    await AgentRun.objects.filter(id=dead_run).aupdate(heartbeat_at=timezone.now() - timezone.timedelta(hours=1))
    assert await end_stale_runs() == [dead_run]
    failed, _ = await blocker.recv_until("run.failed")
    assert failed["run_id"] == dead_run
    assert (await slots().snapshot()) == ([], [])


async def test_the_admin_and_the_metrics_show_the_waiting_runs_with_their_positions(
        admin_client, alice, bob, charlie, sockets, settings, one_slot):
    from django.test import Client

    from tests.test_metrics import sample

    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    holding = (await queued_run(blocker, "hold the slot"))["run_id"]
    first = (await queued_run(await sockets.open(alice, await chat_of(alice)), "first"))["run_id"]
    second = (await queued_run(await sockets.open(bob, await chat_of(bob)), "second"))["run_id"]

    page = (await sync_to_async(admin_client.get)("/admin/chat/agentrun/?fair_queue=waiting")).content.decode()
    rows = {run_id: next(row for row in page.split("<tr")[1:] if run_id in row) for run_id in (first, second)}
    assert "0 ahead" in rows[first] and "1 ahead" in rows[second] and holding not in page
    settings.NOUS_METRICS_ALLOW = ["127.0.0.0/8"]
    scrape = (await sync_to_async(Client().get)("/metrics")).content.decode()
    assert (sample(scrape, "nous_runs_queued"), sample(scrape, "nous_runs_active")) == (2, 1)


async def test_a_run_paused_for_approval_gives_its_slot_back_and_goes_first_once_decided(
        alice, bob, charlie, sockets, one_slot):
    guarded = await Conversation.objects.acreate(owner=alice, model="test:tools=calculator,tps=200,words=12",
                                                 approval_tools=["calculator"])
    mine = await sockets.open(alice, guarded)
    await mine.send(send_frame("what is 6 * 7"))
    required, _ = await mine.recv_until("run.approval_required")
    my_run = required["run_id"]
    await wait_for(lambda: AgentRun.objects.filter(id=my_run, status="waiting").aexists(), what="the pause")
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "the slot alice gave back")
    await blocker.recv_until("run.started")
    theirs = await sockets.open(bob, await chat_of(bob))
    their_run = (await queued_run(theirs, "I came first"))["run_id"]
    assert positions(theirs, their_run) == [0]

    await mine.send({"type": "tool.decide", "tool_call_id": required["tool_call"]["id"], "approved": True})
    queued, _ = await mine.recv_until("run.queued")
    assert (queued["run_id"], queued["position"]) == (my_run, 0)  # ahead of bob's
    moved, _ = await theirs.recv_until("run.queued")
    assert (moved["run_id"], moved["position"]) == (their_run, 1)
    await blocker.send({"type": "run.stop"})
    await mine.recv_until("run.completed", timeout=20)
    await theirs.recv_until("run.completed", timeout=20)
    mine_ended, theirs_started = (await run_of(my_run)).finished_at, (await run_of(their_run)).started_at
    assert theirs_started > mine_ended


async def test_the_watchdog_leaves_a_run_waiting_its_turn_alone(alice, charlie, sockets, one_slot):
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    socket = await sockets.open(alice, await chat_of(alice))
    my_run = (await queued_run(socket, "patience"))["run_id"]
    await AgentRun.objects.filter(id=my_run).aupdate(created_at=timezone.now() - timezone.timedelta(hours=1))
    assert await end_stale_runs(queued_secs=60) == []  # queued legitimately: it waits its turn
    assert (await run_of(my_run)).status == "queued"
    await blocker.send({"type": "run.stop"})
    await socket.recv_until("run.completed", timeout=20)


async def test_a_room_answer_that_cannot_be_queued_ends_failed_overloaded(alice, bob, charlie, sockets, settings, one_slot):
    from rooms.models import create_room
    from tests.conftest import open_socket

    settings.NOUS_MAX_QUEUED_RUNS = 0  # one slot, no waiting
    blocker = await sockets.open(charlie, await chat_of(charlie, SLOW))
    await queued_run(blocker, "hold the slot")
    room = await sync_to_async(create_room)(alice, "Busy day", model=QUICK)
    socket, connected, _ = await open_socket(bob, f"/ws/rooms/{room.slug}/")
    assert connected
    try:
        await socket.recv_until("session.ready")
        frame = send_frame("@ai are you there?")
        await socket.send(frame)
        created, _ = await socket.recv_until("message.created")
        assert created["message"]["client_id"] == frame["client_id"]  # the message itself is kept
        failed, _ = await socket.recv_until("run.failed")
        assert failed["error"]["code"] == "overloaded" and failed["error"]["retryable"] is True
    finally:
        await socket.close()
