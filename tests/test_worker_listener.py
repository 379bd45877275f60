"""The worker's command listener (RQ's pubsub thread) stops with the worker, also when it missed the
wake-up RQ counts on: a burst worker used to take 60 s to return after its queue was done, now and then."""

from __future__ import annotations

import threading
import time

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from workers.worker import KoppelWorker, worker_timing

pytestmark = pytest.mark.integration


def test_a_listener_that_read_the_unsubscribe_before_its_stop_still_stops_with_the_worker(rconn):
    queue = Queue("koppel-listener-test", connection=rconn, serializer=JSONSerializer)
    worker = KoppelWorker([queue], connection=rconn, serializer=JSONSerializer, **worker_timing(5))
    worker.subscribe()
    listener, pubsub = worker.pubsub_thread, worker.pubsub
    assert listener is not None and pubsub is not None and listener.is_alive()
    # RQ's race, made certain: the listener reads the UNSUBSCRIBE reply while it is still running, and goes
    # back to waiting for a subscription (RQ's wait: 60 s, which the worker's return then waited for).
    pubsub.unsubscribe()
    deadline = time.monotonic() + 10
    while pubsub.subscribed:
        assert time.monotonic() < deadline, "the listener never read the UNSUBSCRIBE reply"
        time.sleep(0.01)
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopping.start()
    stopping.join(timeout=30)  # generous: the bug waits 60 s
    assert not stopping.is_alive(), "the worker waited for its listener's 60 s wait"
    assert not listener.is_alive()
