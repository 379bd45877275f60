"""The ingestor's writer task stores its batches on a connection of its own (gateway/ingest.py `_evalsha`),
against a real Redis: what the client's command path gave it must still hold — a dropped connection is
reconnected and the batch stored once, a script Redis lost is loaded again, a Redis that does not answer is
RedisUnavailable (the receiver's 503 or the journal), and stopping closes the connection."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.envelope import Envelope, Event
from gateway.errors import RedisUnavailable
from gateway.ingest import Draft, Ingestor
from tests.test_ingest_linger import stop

INBOX = "koppel:inbox:koppel"


def draft(n: int) -> Draft:
    event = Event(topic="order.created", resource="order", resource_id=str(n), delivery_key=f"d-{n}", payload={"n": n})
    return Draft.of(Envelope.wrap(event, source="woocommerce", endpoint="shop"))


def client(url: str) -> redis.asyncio.Redis:
    """As the gateway makes it (gateway/app.py `async_redis_client`): one retry, no backoff."""
    return redis.asyncio.Redis.from_url(url, socket_timeout=5, retry=Retry(NoBackoff(), 1))


async def started(url: str) -> Ingestor:
    stored = Ingestor(redis.Redis.from_url(url), async_connection=client(url), linger=0)
    await stored.start()
    return stored


def writer_connections(rconn: redis.Redis) -> list[dict[str, object]]:
    return [c for c in rconn.client_list() if c.get("cmd") == "evalsha"]


def test_a_batch_after_the_connection_was_dropped_is_stored_once_on_a_new_one(redis_url, rconn):
    async def scenario() -> None:
        stored = await started(redis_url)
        try:
            [first] = await stored.submit([draft(1)])
            [conn] = writer_connections(rconn)
            rconn.client_kill_filter(_id=conn["id"])  # the writer's connection, as a restart or a proxy drops it
            [second] = await stored.submit([draft(2)])
            [duplicate] = await stored.submit([draft(2)])
            assert not first.duplicate and not second.duplicate
            assert duplicate.duplicate and duplicate.job_id == second.job_id
            assert [c["id"] for c in writer_connections(rconn)] != [conn["id"]]
        finally:
            await stop(stored)

    asyncio.run(scenario())
    assert rconn.xlen(INBOX) == 2


def test_a_script_redis_lost_is_loaded_again(redis_url, rconn):
    async def scenario() -> None:
        stored = await started(redis_url)
        try:
            await stored.submit([draft(1)])
            rconn.script_flush()  # as after a restart without persistence of scripts, or a failover
            [accepted] = await stored.submit([draft(2)])
            assert not accepted.duplicate
        finally:
            await stop(stored)

    asyncio.run(scenario())
    assert rconn.xlen(INBOX) == 2


def test_a_redis_that_is_gone_is_redis_unavailable_and_the_writer_goes_on(redis_url, rconn):
    async def scenario() -> None:
        stored = Ingestor(
            redis.Redis.from_url(redis_url), async_connection=client("redis://127.0.0.1:9/0"), linger=0
        )  # nothing listens on port 9 (discard): every connect fails
        await stored.start()
        try:
            for n in range(2):
                with pytest.raises(RedisUnavailable):
                    await stored.submit([draft(n)])
        finally:
            await stop(stored)

    asyncio.run(scenario())


def test_stopping_closes_the_writers_connection(redis_url, rconn):
    async def scenario() -> None:
        stored = await started(redis_url)
        await stored.submit([draft(1)])
        assert len(writer_connections(rconn)) == 1
        await stored.stop()
        assert writer_connections(rconn) == []
        assert stored.async_connection is not None
        await stored.async_connection.aclose()
        stored.connection.close()

    asyncio.run(scenario())
