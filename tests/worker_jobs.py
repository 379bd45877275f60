"""Job functions the worker-process tests enqueue (importable by a `koppel worker` started from the repository).

`write_once` writes a record to a "target" (a Redis list standing in for an ERP) exactly once, guarded by
the ledger as Koppel's flows are (workers/ledger.py): looked up, marked in flight, written, recorded; a
run that finds it in flight asks the target by the record's key. While `HOLD` is set, a first write stops
right after the target write, before the ledger entry: where a test kills its worker.
"""

from __future__ import annotations

import time

from rq import get_current_job

from gateway import keys
from workers.ledger import Ledger

TARGET = "koppel-test:target"
HOLD = "koppel-test:hold"
INTEGRATION, FLOW = "resilience", "writes"


def write_once(key: str) -> str:
    job = get_current_job()
    assert job is not None
    connection = job.connection
    ledger = Ledger(connection, INTEGRATION, FLOW)
    target_id, in_flight = ledger.lookup(key)
    if target_id is not None:
        return target_id
    if in_flight:  # an earlier run may have written it: ask the target
        written = [keys.text(k) for k in connection.lrange(TARGET, 0, -1)]
        if key in written:
            ledger.record(key, str(written.index(key)))
            return str(written.index(key))
    ledger.mark(key)
    index = int(connection.rpush(TARGET, key)) - 1
    while connection.exists(HOLD):
        time.sleep(0.05)
    ledger.record(key, str(index))
    return str(index)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
