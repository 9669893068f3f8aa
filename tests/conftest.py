"""Fixtures: alice owns, bob is another user, charlie is refused; sockets on the real ASGI app."""

import asyncio
import os

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

import agents.models.base
from agents.breaker import reset_breakers
from chat.db import close_database_threads
from chat.pg import close_loop_connections
from chat.protocol import check_frame

# No test may reach a real provider: only loopback base URLs are allowed.
agents.models.base.ALLOW_NON_LOOPBACK_REQUESTS = False
# Tests run the watchdog themselves; a sweep task per test loop would outlive its loop.
settings.NOUS_WATCHDOG_INTERVAL_SECS = 0

ORIGIN = "http://127.0.0.1:8000"
REQUIRE_SERVICES = os.getenv("REQUIRE_SERVICES") == "1"
PRODUCTION = bool(settings.REDIS_URL)


def skip_or_fail(reason: str) -> None:
    """Where REQUIRE_SERVICES=1 a missing service fails the test; elsewhere it skips with the reason."""
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def database_threads_closed_at_the_end(django_db_setup, django_db_blocker):
    """Threads of the app (and of asgiref) keep connections open: close them, or PostgreSQL refuses
    to drop the test database at the end."""
    yield
    close_database_threads()
    close_loop_connections()
    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()")


def clear_shared_breakers() -> None:
    """Production mode: forget the breakers every process shares (in Redis)."""
    if PRODUCTION:
        import redis

        from chat.runs.breaker_store import PREFIX

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(PREFIX + "*"):
            client.delete(key)


@pytest.fixture(autouse=True)
def fresh_breakers():
    reset_breakers()
    clear_shared_breakers()
    yield
    reset_breakers()
    clear_shared_breakers()


def make_user(name: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw-" + name)


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def charlie(db):
    return make_user("charlie")


@pytest.fixture
def conversation(alice):
    from chat.models import Conversation

    return Conversation.objects.create(owner=alice, model="test:tps=200,words=30")


@database_sync_to_async
def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Socket:
    """A WebsocketCommunicator on nous_site.asgi.application that checks every frame it receives."""

    def __init__(self, communicator: WebsocketCommunicator, label: str) -> None:
        self.communicator = communicator
        self.label = label
        self.frames: list[dict] = []

    async def recv(self, timeout: float = 5.0) -> dict:
        frame = await self.communicator.receive_json_from(timeout=timeout)
        check_frame(self.label, frame)
        self.frames.append(frame)
        return frame

    async def recv_until(self, *types: str, timeout: float = 10.0) -> tuple[dict, list[dict]]:
        """Receive until a frame of one of `types`; return it and every frame received before it."""
        seen = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            frame = await self.recv(timeout=max(0.05, deadline - asyncio.get_running_loop().time()))
            if frame["type"] in types:
                return frame, seen
            seen.append(frame)

    async def send(self, frame: dict) -> None:
        await self.communicator.send_json_to(frame)

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(user, path: str, origin: str = ORIGIN) -> tuple[Socket, bool, int | None]:
    from nous_site.asgi import application

    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1:8000")]
    if user is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={await session_cookie(user)}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return Socket(communicator, f"{getattr(user, 'username', 'anonymous')}@{path}"), connected, code


@pytest.fixture
async def sockets():
    """Open sockets through `sockets.open(user, conversation)`; all closed after the test."""

    class Opener:
        opened: list[Socket] = []

        async def open(self, user, conversation, expect_ready: bool = True) -> Socket:
            socket, connected, _ = await open_socket(user, f"/ws/chat/{conversation.id}/")
            assert connected
            self.opened.append(socket)
            if expect_ready:
                socket.ready = await socket.recv()
                assert socket.ready["type"] == "session.ready"
            return socket

    opener = Opener()
    opener.opened = []
    yield opener
    for socket in opener.opened:
        await socket.close()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process for the whole session (production mode only)."""
    from tests.services import CeleryWorker, redis_available

    if not redis_available(settings.REDIS_URL):
        skip_or_fail(f"Redis is not reachable at {settings.REDIS_URL}")
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        skip_or_fail("production-mode tests need DATABASE_URL on PostgreSQL (the worker is another process)")
    import redis

    # No runs or tasks of an earlier session's run left to take.
    redis.Redis.from_url(settings.REDIS_URL).delete(settings.NOUS_RUN_HANDOVER_KEY, settings.CELERY_TASK_DEFAULT_QUEUE)
    worker = CeleryWorker(settings.DATABASES["default"]["NAME"], tmp_path_factory.mktemp("celery") / "worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
async def runs(request):
    """Whatever executes runs in this mode: a Celery worker in production, in-process tasks otherwise.

    After the test, in-process runs still going are stopped, so none outlives its test database.
    """
    from chat.leases import leases
    from chat.limits import user_counters
    from chat.runs.slots import KEY_PREFIX, slots

    user_counters.cache_clear()  # user ids repeat across tests; their counters must not
    leases.cache_clear()
    slots.cache_clear()  # nor the fair queue's holders of runs a test left going
    if PRODUCTION:
        worker = request.getfixturevalue("celery_worker")
        if not worker.alive:
            worker.start()
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for pattern in ("nous:sockets:*", "nous:sends:*", "nous:presence:*", KEY_PREFIX + "*"):
            for key in client.scan_iter(pattern):
                client.delete(key)
        yield worker
        await _end_active_runs()
        return
    yield None
    from chat.runs.dispatch import run_executor

    tasks = list(getattr(run_executor(), "tasks", ()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _end_active_runs(timeout: float = 10.0) -> None:
    """Stop the runs a test left going and wait for the worker to end them, so no worker write
    races the database flush after the test."""
    from chat.models import AgentRun
    from chat.runs.dispatch import stop_run

    deadline = asyncio.get_running_loop().time() + timeout
    async for run in AgentRun.objects.filter(status__in=AgentRun.ACTIVE):
        await stop_run(str(run.id))
    while await AgentRun.objects.filter(status__in=AgentRun.ACTIVE).aexists():
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)


# The fuzz tests: a bounded run in `make test`, a long one on purpose (HYPOTHESIS_PROFILE=long).
hypothesis_settings.register_profile(
    "ci", max_examples=int(os.getenv("NOUS_FUZZ_EXAMPLES", "40")), deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
hypothesis_settings.register_profile("long", hypothesis_settings.get_profile("ci"), max_examples=5000)
hypothesis_settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "ci"))
