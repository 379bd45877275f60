"""The shared Exact rate limiter: real Redis, fake clock, no real waiting."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from connectors.exactonline.errors import RateLimited
from connectors.exactonline.ratelimit import Limits, RateLimiter, read_headers
from gateway.errors import TransientError
from tests.exactonline_support import ExactResponses, FakeClock

pytestmark = pytest.mark.integration
R = ExactResponses


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(rconn, clock: FakeClock, division: int = 42, **limits) -> RateLimiter:
    return RateLimiter(rconn, division, Limits(**limits), clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)


def now_ms(clock: FakeClock) -> int:
    return int(clock() * 1000)


def test_acquire_within_budget_does_not_wait(rconn, clock):
    limit = limiter(rconn, clock, per_minute=5)
    for _ in range(5):
        assert limit.acquire() == 0.0
    assert clock.slept == []


def test_minutely_budget_is_shared_by_every_worker_and_waited_out(rconn, clock):
    first, second = limiter(rconn, clock, per_minute=5), limiter(rconn, clock, per_minute=5)
    for worker in (first, second, first, second, first):
        worker.acquire()
    start = clock()
    waited = second.acquire()  # sixth call of the minute: waits for the local window to roll
    assert waited == pytest.approx(60 + Limits().margin, abs=0.01)
    assert clock() - start == pytest.approx(waited)


def test_divisions_have_separate_budgets(rconn, clock):
    one, two = limiter(rconn, clock, 1, per_minute=2), limiter(rconn, clock, 2, per_minute=2)
    for _ in range(2):
        one.acquire()
        two.acquire()
    assert clock.slept == []


def test_exhausted_minute_from_headers_waits_until_the_reset_in_milliseconds(rconn, clock):
    limit = limiter(rconn, clock)
    reset = now_ms(clock) + 12_345
    limit.observe(R.rate_headers(0, reset, 4000, now_ms(clock) + 3_600_000))
    limit.acquire()
    assert clock() * 1000 >= reset
    assert clock.slept == [pytest.approx(12.345 + Limits().margin)]


def test_same_window_keeps_the_lower_remaining_count(rconn, clock):
    limit = limiter(rconn, clock)
    reset = now_ms(clock) + 30_000
    limit.observe(R.rate_headers(10, reset))
    limit.observe(R.rate_headers(20, reset))  # an older response arriving late
    assert limit.snapshot()["mrem"] == 10


def test_headers_from_an_older_window_are_ignored(rconn, clock):
    limit = limiter(rconn, clock)
    limit.observe(R.rate_headers(50, now_ms(clock) + 50_000))
    limit.observe(R.rate_headers(0, now_ms(clock) + 10_000))  # stale: earlier reset than the known window
    assert limit.snapshot()["mrem"] == 50


def test_exact_limit_below_the_configured_one_is_learnt(rconn, clock):
    limit = limiter(rconn, clock, per_minute=60)
    reset = now_ms(clock) + 1_000
    limit.observe(R.rate_headers(4, reset, minute_limit=5))
    clock.advance(2)  # the window rolls: the next one has Exact's 5 slots, not our 60
    for _ in range(5):
        limit.acquire()
    assert clock.slept == []
    limit.acquire()
    assert len(clock.slept) == 1


def test_configured_limit_below_exact_keeps_headroom(rconn, clock):
    limit = limiter(rconn, clock, per_minute=50)
    limit.observe(R.rate_headers(55, now_ms(clock) + 30_000, minute_limit=60))  # 5 used of Exact's 60
    assert limit.snapshot()["mrem"] == 45  # 5 used of our 50


def test_429_with_only_minutely_headers_blocks_until_reset_and_keeps_daily_state(rconn, clock):
    limit = limiter(rconn, clock)
    day_reset = now_ms(clock) + 20_000_000
    limit.observe(R.rate_headers(30, now_ms(clock) + 40_000, 4321, day_reset))
    minute_reset = now_ms(clock) + 40_000
    limit.throttled(R.rate_headers(0, minute_reset))  # Exact sends only the minutely headers here
    state = limit.snapshot()
    assert (state["mrem"], state["mreset"]) == (0, minute_reset)
    assert (state["drem"], state["dreset"]) == (4321, day_reset)
    limit.acquire()
    assert clock() * 1000 >= minute_reset


def test_429_without_headers_honours_retry_after(rconn, clock):
    limit = limiter(rconn, clock)
    limit.throttled({"Retry-After": "7"})
    limit.acquire()
    assert clock.slept == [pytest.approx(7 + Limits().margin)]


def test_gone_daily_budget_raises_retryable_error_at_once(rconn, clock):
    limit = limiter(rconn, clock)
    reset = now_ms(clock) + 5 * 3_600_000
    limit.throttled(R.rate_headers(10, now_ms(clock) + 30_000, 0, reset))
    with pytest.raises(RateLimited) as caught:
        limit.acquire()
    assert isinstance(caught.value, TransientError)
    assert caught.value.window == "daily"
    assert caught.value.retry_after == pytest.approx(5 * 3600, abs=1)
    assert clock.slept == []  # no worker blocked for hours
    assert "42" in str(caught.value)


def test_wait_beyond_the_bound_raises(rconn, clock):
    limit = limiter(rconn, clock, per_minute=1, max_wait=10)
    limit.acquire()
    with pytest.raises(RateLimited):
        limit.acquire()


def test_switched_off_needs_no_redis_and_still_waits_out_a_429(clock):
    limit = RateLimiter(None, 7, Limits.off(), clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    for _ in range(1000):
        assert limit.acquire() == 0.0
    limit.observe(R.rate_headers(0, now_ms(clock) + 5_000))
    limit.throttled(R.rate_headers(0, now_ms(clock) + 5_000))
    assert clock.slept == [pytest.approx(5 + Limits().margin)]
    with pytest.raises(RateLimited):
        limit.throttled(R.rate_headers(0, now_ms(clock) + 3_600_000))


def test_shared_limit_needs_redis():
    with pytest.raises(ValueError, match="Redis"):
        RateLimiter(None, 1, Limits())


def test_many_threads_never_take_more_than_the_limit_per_window(rconn, clock):
    per_window: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        limit = limiter(rconn, clock, per_minute=7, max_wait=3600)
        barrier.wait()
        for _ in range(5):
            limit.acquire()
            with lock:
                per_window[limit.slot_window] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(per_window.values()) == 40
    assert max(per_window.values()) <= 7
    assert len(per_window) >= 40 // 7


def test_read_headers_parses_both_windows_or_only_the_minutely_one():
    minutely, daily = read_headers(R.rate_headers(3, 1_700_000_060_000, 4000, 1_700_086_400_000))
    assert minutely is not None and (minutely.limit, minutely.remaining, minutely.reset_ms) == (
        60,
        3,
        1_700_000_060_000,
    )
    assert daily is not None and daily.remaining == 4000
    minutely, daily = read_headers({"x-ratelimit-minutely-remaining": "0", "x-ratelimit-minutely-reset": "5"})
    assert minutely is not None and minutely.remaining == 0
    assert daily is None
