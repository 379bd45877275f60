"""WakingLock against real Redis: exclusion, wake on release, expiry, blocking timeout, bounded wake list; a batch
job's locks (`resource_locks`)."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import LockError, LockNotOwnedError
from redis.retry import Retry

from gateway import keys
from gateway.errors import TransientError
from workers.locks import WakingLock
from workers.policy import resource_lock, resource_locks


def _name() -> str:
    return f"koppel:lock:test:{uuid.uuid4().hex}"


def test_mutual_exclusion_under_contention(rconn: redis.Redis) -> None:
    name = _name()
    inside: list[int] = []
    overlaps: list[int] = []
    done: list[int] = []

    def work(n: int) -> None:
        for _ in range(10):
            lock = WakingLock(rconn, name, timeout=30, blocking_timeout=30, thread_local=False)
            assert lock.acquire()
            if inside:
                overlaps.append(n)
            inside.append(n)
            rconn.incr(name + ":count")  # a little Redis work inside, so the holders interleave
            inside.remove(n)
            lock.release()
            done.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert len(done) == 60
    assert int(rconn.get(name + ":count") or 0) == 60
    rconn.delete(name + ":count")


def test_a_waiter_wakes_on_release_not_on_a_poll(rconn: redis.Redis) -> None:
    """Lock TTL, blocking time and wake cap are all 60 s: only the release's wake-up can let the
    waiter in within the (generous) 10 s the test gives it."""
    name = _name()
    holder = WakingLock(rconn, name, timeout=60, thread_local=False)
    assert holder.acquire(blocking=False)
    waiter = WakingLock(rconn, name, timeout=60, blocking_timeout=60, thread_local=False)
    waiter.wake_cap = 60
    got: list[bool] = []
    blocked = threading.Event()

    def wait() -> None:
        blocked.set()
        got.append(waiter.acquire())

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    blocked.wait()
    # The waiter is blocked on the wake list (or about to be: the wake token waits for it).
    assert got == []
    holder.release()
    thread.join(10)
    assert got == [True]
    assert waiter.owned()
    waiter.release()


def test_an_expired_holders_lock_is_taken_after_its_ttl(rconn: redis.Redis) -> None:
    name = _name()
    assert rconn.set(name, "dead-worker-token", px=300)  # a holder that died: no release, no wake
    waiter = WakingLock(rconn, name, timeout=30, blocking_timeout=30, thread_local=False)
    waiter.wake_cap = 60  # only the lock's PTTL bounds the wait
    assert waiter.acquire()
    assert rconn.get(name) == waiter.local.token
    waiter.release()


def test_the_blocking_timeout_still_gives_up(rconn: redis.Redis) -> None:
    name = _name()
    holder = WakingLock(rconn, name, timeout=30, thread_local=False)
    assert holder.acquire()
    assert not WakingLock(rconn, name, timeout=30, blocking_timeout=0.2).acquire()
    assert not WakingLock(rconn, name, timeout=30).acquire(blocking=False)
    holder.release()
    assert WakingLock(rconn, name, timeout=30).acquire(blocking=False)


def test_release_and_renewal_keep_redis_pys_errors(rconn: redis.Redis) -> None:
    name = _name()
    lock = WakingLock(rconn, name, timeout=30, thread_local=False)
    with pytest.raises(LockError):
        lock.release()  # never acquired
    assert lock.acquire()
    assert lock.reacquire()
    assert 29_000 < rconn.pttl(name) <= 30_000
    rconn.set(name, "someone-else")  # expired and taken by another worker
    with pytest.raises(LockNotOwnedError):
        lock.reacquire()
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert rconn.get(name) == b"someone-else"  # not ours: left alone


def test_the_wake_list_does_not_grow(rconn: redis.Redis) -> None:
    name = _name()
    for _ in range(20):
        lock = WakingLock(rconn, name, timeout=30)
        assert lock.acquire()
        lock.release()
    assert rconn.llen(name + ":wake") == 1
    assert 0 < rconn.pttl(name + ":wake") <= 5000


def test_an_unreachable_redis_raises_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    conn = redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        WakingLock(conn, _name(), timeout=30, blocking_timeout=1).acquire()


# -- resource_locks: a batch job's locks -----------------------------------------------------------------------


def test_a_batchs_locks_are_taken_and_released_together_with_the_commands_sent_beside_them(rconn: redis.Redis) -> None:
    resources = [("itest", "Stock", f"r{n}") for n in range(50)]
    rconn.set("itest:switch", "off: test")
    with resource_locks(rconn, resources, hold=30, also=lambda pipe: pipe.get("itest:switch")) as held:
        assert held.also == [b"off: test"] and held.under_lock
        assert all(rconn.exists(keys.lock(*parts)) for parts in resources)
        held.finish = rconn.pipeline(transaction=False)
        held.finish.set("itest:done", "1")
    assert rconn.get("itest:done") == b"1" and rconn.exists(*[keys.lock(*parts) for parts in resources]) == 0


def test_a_busy_lock_among_them_is_waited_for_in_order_and_one_never_freed_lets_all_go(rconn: redis.Redis) -> None:
    resources = [("itest", "Stock", f"b{n}") for n in range(3)]
    busy = WakingLock(rconn, keys.lock(*resources[1]), wake_name=keys.lock_wake(*resources[1]), timeout=30,
                      thread_local=False)
    assert busy.acquire()
    threading.Timer(0.2, busy.release).start()
    with resource_locks(rconn, resources, hold=30, wait=5):  # woken by the release
        assert all(rconn.exists(keys.lock(*parts)) for parts in resources)
    assert busy.acquire()
    with pytest.raises(TransientError, match="another job is working on itest:Stock:b1"), \
            resource_locks(rconn, resources, hold=30, wait=0.3):  # fmt: skip
        pass
    assert rconn.exists(keys.lock(*resources[0]), keys.lock(*resources[2])) == 0  # none kept by the one that gave up
    busy.release()


# -- resource_lock: reads sent with the first try ---------------------------------------------------------------


def test_reads_sent_with_the_first_try_count_as_under_the_lock_only_when_that_try_took_it(rconn: redis.Redis) -> None:
    parts = ("itest", "Order", uuid.uuid4().hex)
    seen = f"itest:seen:{parts[2]}"
    rconn.set(seen, "v1")
    with resource_lock(rconn, *parts, hold=30, also=lambda pipe: pipe.get(seen)) as held:
        assert held.under_lock and held.also == [b"v1"]
    busy = WakingLock(rconn, keys.lock(*parts), wake_name=keys.lock_wake(*parts), timeout=30, thread_local=False)
    assert busy.acquire()

    def holder_writes_then_releases() -> None:
        rconn.set(seen, "v2")  # what the holder's work wrote under the lock
        busy.release()

    threading.Timer(0.2, holder_writes_then_releases).start()
    with resource_lock(rconn, *parts, hold=30, wait=5, also=lambda pipe: pipe.get(seen)) as held:
        # read while the holder still had it: not to be trusted by what runs under the lock now
        assert not held.under_lock and held.also == [b"v1"]
        assert rconn.get(seen) == b"v2"
