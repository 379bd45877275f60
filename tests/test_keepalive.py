"""The keepalive thread (workers/keepalive.py): renewals while registered, none after, one thread for all."""

from __future__ import annotations

import os
import threading

import pytest

from workers.keepalive import Keepalive

WAIT = 10.0  # generous: these wait for something to happen, they do not time it


def keepalive_threads(k: Keepalive) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == k.name]


def test_renews_while_registered_and_never_after_removal():
    k = Keepalive(name="test-keepalive-1")
    calls: list[int] = []
    twice = threading.Event()

    def renew() -> None:
        calls.append(1)
        if len(calls) >= 2:
            twice.set()

    item = k.add(renew, 0.01)
    assert twice.wait(WAIT)
    k.remove(item)
    seen = len(calls)
    other = threading.Event()
    k.add(other.set, 0.01)  # the thread goes on serving others, and not the removed one
    assert other.wait(WAIT)
    assert len(calls) == seen


def test_removal_waits_for_a_renewal_in_progress():
    k = Keepalive(name="test-keepalive-2")
    started, release, removed = threading.Event(), threading.Event(), threading.Event()

    def renew() -> None:
        started.set()
        release.wait(WAIT)

    item = k.add(renew, 0.01)
    assert started.wait(WAIT)
    remover = threading.Thread(target=lambda: (k.remove(item), removed.set()))
    remover.start()
    assert not removed.wait(0.2)  # still renewing: removal must not return yet
    release.set()
    assert removed.wait(WAIT)
    remover.join()


def test_a_renewal_returning_false_is_dropped_and_one_that_raises_is_kept():
    k = Keepalive(name="test-keepalive-3")
    dropped: list[int] = []
    failing: list[int] = []
    thrice = threading.Event()

    def drop() -> bool:
        dropped.append(1)
        return False

    def fail() -> None:
        failing.append(1)
        if len(failing) >= 3:
            thrice.set()
        raise RuntimeError("Redis away")

    k.add(drop, 0.01)
    item = k.add(fail, 0.01)
    assert thrice.wait(WAIT)
    k.remove(item)
    assert dropped == [1]


def test_one_thread_serves_every_renewal_however_many_come_and_go():
    k = Keepalive(name="test-keepalive-4")
    for _ in range(200):
        with k.renewing(lambda: None, 5.0):
            pass
    items = [k.add(lambda: None, 5.0) for _ in range(20)]
    assert len(keepalive_threads(k)) == 1
    for item in items:
        k.remove(item)


def test_a_sooner_renewal_wakes_an_idle_thread():
    k = Keepalive(name="test-keepalive-5")
    with k.renewing(lambda: None, 30.0):  # the thread now sleeps ~30 s
        pass
    soon = threading.Event()
    with k.renewing(soon.set, 0.01):
        assert soon.wait(WAIT)


def test_rejects_a_non_positive_interval():
    with pytest.raises(ValueError, match="positive"):
        Keepalive(name="test-keepalive-6").add(lambda: None, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_has_a_keepalive_thread_of_its_own():
    k = Keepalive(name="test-keepalive-7")
    parent = threading.Event()
    with k.renewing(parent.set, 0.01):
        assert parent.wait(WAIT)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            renewed, ok = threading.Event(), False
            try:
                with k.renewing(renewed.set, 0.01):
                    ok = renewed.wait(WAIT)
            finally:
                os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
