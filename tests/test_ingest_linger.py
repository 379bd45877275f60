"""The ingestor's batch linger (gateway/ingest.py `Ingestor.linger`), against a real Redis.

A batch lingers only while requests arrive side by side (the last batch held several, or more came while it was
stored), and is written when the linger is over, with what came meanwhile. A linger of a minute makes a wrong
wait show as a hang (caught by `asyncio.wait_for`), not as a timing to assert.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio

from gateway.envelope import Envelope, Event
from gateway.ingest import Accepted, Draft, Ingestor

HANG = 10.0
"""Seconds after which a submit counts as stuck in a linger it should not have waited out."""


def draft(n: int) -> Draft:
    event = Event(topic="order.created", resource="order", resource_id=str(n), delivery_key=f"d-{n}", payload={"n": n})
    return Draft.of(Envelope.wrap(event, source="woocommerce", endpoint="shop"))


def scripts_run(conn: redis.Redis) -> int:
    stats = conn.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def ingestor(redis_url: str, linger: float) -> Ingestor:
    stored = Ingestor(
        redis.Redis.from_url(redis_url), async_connection=redis.asyncio.Redis.from_url(redis_url), linger=linger
    )
    await stored.start()
    await stored.submit([draft(-1)])  # the script is loaded (a first EVALSHA may meet NOSCRIPT): counts stay exact
    return stored


async def stop(stored: Ingestor) -> None:
    await stored.stop()
    assert stored.async_connection is not None
    await stored.async_connection.aclose()
    stored.connection.close()


async def submit(stored: Ingestor, n: int) -> list[Accepted]:
    return await asyncio.wait_for(stored.submit([draft(n)]), HANG)


def test_a_sender_that_waits_for_each_answer_never_waits_for_the_linger(redis_url, rconn):
    async def scenario() -> None:
        stored = await ingestor(redis_url, linger=60.0)
        try:
            before = scripts_run(rconn)
            for n in range(5):
                [accepted] = await submit(stored, n)
                assert not accepted.duplicate
            assert scripts_run(rconn) - before == 5
        finally:
            await stop(stored)

    asyncio.run(scenario())
    assert rconn.xlen("koppel:inbox:koppel") == 6


def test_requests_side_by_side_linger_and_are_written_together_when_the_linger_is_over(redis_url, rconn):
    async def scenario() -> None:
        stored = await ingestor(redis_url, linger=0.05)
        try:
            await asyncio.gather(*(submit(stored, n) for n in range(3)))
            before = scripts_run(rconn)
            second = await asyncio.gather(submit(stored, 3), submit(stored, 4))  # side by side: one write
            assert scripts_run(rconn) - before == 1
            assert len({a.job_id for batch in second for a in batch}) == 2
        finally:
            await stop(stored)

    asyncio.run(scenario())
    assert rconn.xlen("koppel:inbox:koppel") == 6
