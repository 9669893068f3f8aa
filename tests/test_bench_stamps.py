"""The benchmark's timestamps stay out of the product: with NOUS_BENCH_TIMESTAMPS=1 the run.delta
frames are exactly PROTOCOL.md's, and the timestamps go to the bench's own record instead."""

import pytest
from django.conf import settings

from bench.stamps import StampReader, latencies
from chat.runs import benchstamps
from tests.chat_helpers import deltas_text, send_frame
from tests.conftest import PRODUCTION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs")]

DELTA_FIELDS = {"type", "run_id", "seq", "text"}


@pytest.fixture
def stamps_dir(tmp_path, monkeypatch, request):
    """Where the executor of this mode records stamps, with the flag set."""
    directory = tmp_path / "stamps"
    if PRODUCTION:  # the executor is a worker process: one of its own, started with the flag
        from tests.services import CeleryWorker

        session_worker = request.getfixturevalue("celery_worker")
        session_worker.stop()  # the next test's `runs` starts it again
        worker = CeleryWorker(settings.DATABASES["default"]["NAME"], tmp_path / "worker.log",
                              {"NOUS_BENCH_TIMESTAMPS": "1", "NOUS_BENCH_STAMPS_DIR": str(directory)})
        worker.start()
        yield directory
        worker.stop()
    else:
        monkeypatch.setattr(benchstamps, "ENABLED", True)
        monkeypatch.setattr(benchstamps, "STAMPS_DIR", directory)
        yield directory


async def test_delta_frames_carry_no_bench_timestamps_and_the_bench_still_gets_them(alice, conversation, sockets, stamps_dir):
    socket = await sockets.open(alice, conversation)
    await socket.send(send_frame("hello there"))
    end, frames = await socket.recv_until("run.completed", timeout=20)
    deltas = [f for f in frames if f["type"] == "run.delta"]
    assert len(deltas) > 1
    assert [set(f) for f in deltas] == [DELTA_FIELDS] * len(deltas)
    assert deltas_text(frames) == end["message"]["content"]

    # Another socket that resumes gets the replayed deltas the same way.
    other = await sockets.open(alice, conversation)
    await other.send({"type": "run.resume", "run_id": end["run_id"], "after_seq": 0})
    _, replayed = await other.recv_until("run.completed", timeout=10)
    assert [set(f) for f in replayed if f["type"] == "run.delta"] == [DELTA_FIELDS] * len(deltas)

    # The bench reads them from its own record: one stamp per delta, emitted before it was flushed.
    stamps = StampReader(stamps_dir).read_new()
    run_id = end["run_id"]
    assert sorted(seq for rid, seq in stamps if rid == run_id) == list(range(1, len(deltas) + 1))
    assert all(t_emit <= t_flush for t_emit, t_flush in stamps.values())
    got = latencies(stamps, [[run_id, f["seq"], stamps[(run_id, f["seq"])][1] + 0.004] for f in deltas], [])
    assert got["hook"] and got["lat_flush"] == pytest.approx([4.0] * len(deltas), abs=0.01)
