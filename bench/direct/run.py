"""bench/direct: what the inbox pump's direct path (`[gateway] direct_events`) saves a worker, in one run.

    .venv/bin/python -m bench.direct.run [--orders 300] [--rounds 1]

bench/drain's profile (bench/drain/profile.py: the WooCommerce → Exact stack fills the inbox with `--orders`
orders, order.created and order.updated each, and `koppel worker --burst`'s code drains it in this process
under cProfile and a round-trip counter) run twice per round in the same process and Redis kind: with
`direct_events` off (every record an RQ job, as before) and on. Its "answered" phase queues the drained
events again here as new inbox entries (new ids, the same envelopes), not as RQ jobs, so both modes go through
the pump: each finds its order booked (the ledger or the seen version answers it). Printed per mode: worker
CPU and Redis round trips and commands per order (drain) and per answered event, the answered events' CPU
without the profiler beside a no-op RQ job's, and the on ÷ off ratios. Results in
bench/results/direct-*.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.common import RESULTS, run_bench
from bench.drain import profile
from bench.drain.run import fill as drain_fill
from gateway import keys
from gateway.ingest import inbox_key, make_queue
from gateway.stack import Stack

FIGURES = ("cpu_ms_per_order", "cpu_ms_per_event", "round_trips_per_order", "round_trips_per_event",
           "commands_per_order", "commands_per_event")  # fmt: skip


def say(message: str) -> None:
    print(f"bench/direct: {message}", file=sys.stderr, flush=True)


def one_mode(direct: bool, orders: int, workdir: Path) -> dict[str, Any]:
    """bench/drain's profile with the pump's direct path `direct`; its answered events re-queued in the inbox."""
    import workers.worker as worker_module
    from workers.jobs import direct_for

    saved: list[Any] = []
    original_fill = drain_fill

    def fill(stack: Stack, count: int, seed: int, timeout: float) -> tuple[list[str], int, float]:
        result = original_fill(stack, count, seed, timeout)
        if count == orders:  # the batch the profile drains: its entries, to queue again as answered events
            entries: Any = stack.connection.xrange(inbox_key(stack.options.queue))
            saved[:] = [fields for _, fields in entries]
        return result

    original_drain = profile.drain
    outcomes: list[dict[str, int]] = []

    def drain(stack: Stack, label: str, events: int, orders: int, top: int, workdir: Path) -> dict[str, Any]:
        result = original_drain(stack, label, events, orders, top, workdir)
        queue = make_queue(stack.connection, stack.options.queue)
        seen = {"done records": sum(1 for _ in stack.connection.scan_iter(keys.done("*"), count=1000)),
                "failed jobs": queue.failed_job_registry.count, "retrying jobs": queue.scheduled_job_registry.count}
        result["after"] = seen
        outcomes.append(seen)
        print(f"after {label}: " + ", ".join(f"{k} {v}" for k, v in seen.items()))
        return result

    def answered(stack: Stack) -> int:
        with stack.connection.pipeline(transaction=False) as pipe:
            for fields in saved:
                pipe.xadd(inbox_key(stack.options.queue), {"id": uuid.uuid4().hex, "e": fields[b"e"]})
            pipe.execute()
        return len(saved)

    never = lambda rt: lambda envelope: False  # noqa: E731 - direct_events off, whatever the config says
    patches = {(profile, "fill"): fill, (profile, "answered"): answered, (profile, "drain"): drain,
               (worker_module, "direct_for"): direct_for if direct else never}  # fmt: skip
    originals = {target: getattr(*target) for target in patches}
    try:
        for (module, name), value in patches.items():
            setattr(module, name, value)
        args = argparse.Namespace(orders=orders, top=15)
        result, _ = profile.body(args, workdir)
        return result
    finally:
        for (module, name), value in originals.items():
            setattr(module, name, value)


def body(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], int]:
    rounds = []
    for number in range(args.rounds):
        modes = {}
        for direct in (False, True):
            say(f"round {number + 1}: direct_events {'on' if direct else 'off'}")
            mode_dir = workdir / f"{'on' if direct else 'off'}-{number}"  # a fresh Redis each time
            mode_dir.mkdir()
            modes["on" if direct else "off"] = one_mode(direct, args.orders, mode_dir)
        rounds.append(summary(modes))
    for number, figures in enumerate(rounds, 1):
        print(f"\n== round {number}: {args.orders} orders; off (an RQ job per record) / on (run by the pump) / on÷off")
        for phase, rows in figures.items():
            for name, (off, on) in rows.items():
                ratio = f"{on / off:.2f}" if off else "-"
                print(f"{phase:9}{name:26}{off:>10}{on:>10}{ratio:>8}")
    return {"orders": args.orders, "rounds": rounds}, 0


def summary(modes: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for index, phase in enumerate(("drain", "answered")):
        out[phase] = {name: (modes["off"]["runs"][index][name], modes["on"]["runs"][index][name]) for name in FIGURES}
    out["plain"] = {name: (modes["off"]["answered_plain"][name], modes["on"]["answered_plain"][name])
                    for name in ("cpu_ms_per_event", "noop_cpu_ms_per_job", "ratio_to_noop")}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.direct.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("KOPPEL_LOG_LEVEL", "WARNING")
    return run_bench("direct", lambda workdir: body(args, workdir), results=args.results, keep=args.keep, say=say)


if __name__ == "__main__":
    sys.exit(main())
