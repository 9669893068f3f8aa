"""PostgreSQL on the event loop (chat.pg): the send and the claim on the loop's own connections,
which survive a refused send and are never handed out again after a cancelled statement."""

import asyncio

import pytest
from django.db import connection

from chat import pg
from chat.models import AgentRun, Message
from chat.runs import lifecycle, queueing
from chat.runs.queueing import Busy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs DATABASE_URL (PostgreSQL): elsewhere sends use the ORM"),
]


async def test_a_busy_send_stores_nothing_and_leaves_the_connection_usable(alice, conversation):
    sent = await queueing.store_chat_send(conversation, alice, "first", "c-1")
    pool = pg.loop_connections()
    connections_before = list(pool.idle)
    with pytest.raises(Busy):  # the first run is still queued
        await queueing.store_chat_send(conversation, alice, "second", "c-2")
    assert pool.idle == connections_before  # the same connection, back in the pool, not a new one
    assert not await Message.objects.filter(client_id="c-2").aexists()

    resent = await queueing.store_chat_send(conversation, alice, "first", "c-1")  # a resend after a reconnect
    assert resent.duplicate and resent.message.id == sent.message.id

    claimed = await lifecycle.claim(str(sent.run.id))
    assert claimed is not None and claimed.history[-1] == {"role": "user", "content": "first", "author": "alice"}
    assert await lifecycle.claim(str(sent.run.id)) is None  # never claimed twice
    await AgentRun.objects.filter(id=sent.run.id).aupdate(status=AgentRun.Status.COMPLETED)
    third = await queueing.store_chat_send(conversation, alice, "third", "c-3")
    assert not third.duplicate and third.message.parent_id == sent.run.message_id  # under the first answer


async def test_a_cancelled_statement_never_hands_its_connection_out_again(db):
    pool = pg.loop_connections()

    async def slow() -> None:
        async with pool.cursor() as cursor:
            await cursor.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(not conn.closed and conn.info.transaction_status == conn.info.transaction_status.IDLE for conn in pool.idle)
    async with pool.cursor() as cursor:  # the next statement gets a working connection at once
        await asyncio.wait_for(cursor.execute("SELECT 1"), timeout=2)
        assert await cursor.fetchone() == (1,)
