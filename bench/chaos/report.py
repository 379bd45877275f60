"""bench/chaos's accounting and tables: pure helpers, no stack (tests/test_chaos_harness.py checks them).

A row counts what one case of an experiment sent and what became of it:

* sent: requests (webhook deliveries, crafted requests) sent to the gateway;
* acked: of those, answered 2xx (the sender may forget the event);
* lost: records acknowledged at least once but never booked in the target (Exact's sales orders);
* dup: bookings beyond the first per record in the target (Exact's sales orders per YourRef);
* 5xx: answers 500-599;
* other: answers that were neither 2xx nor 5xx, and requests without an answer (cut off, refused);
* gw/workers MB: peak resident memory of the gateway and of all workers together, sampled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class Row:
    case: str
    sent: int = 0
    acked: int = 0
    lost: int = 0
    dup: int = 0
    server_errors: int = 0
    other: int = 0
    gateway_mb: float = 0.0
    workers_mb: float = 0.0
    note: str = ""


@dataclass
class Experiment:
    """One experiment's rows, what it noticed, and the invariants it found broken."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    """Set when the experiment could not run to its end (the harness failed, not Koppel)."""

    @property
    def verdict(self) -> str:
        if self.error:
            return "ERROR"
        return "FAIL" if self.broken else "PASS"


def status_counts(statuses: Iterable[int | None]) -> tuple[int, int, int, int]:
    """(sent, 2xx, 5xx, other) of answers' status codes; None for a request that got no answer."""
    sent = acked = server = other = 0
    for status in statuses:
        sent += 1
        if status is not None and 200 <= status < 300:
            acked += 1
        elif status is not None and 500 <= status < 600:
            server += 1
        else:
            other += 1
    return sent, acked, server, other


def duplicates(refs: Iterable[str]) -> int:
    """Bookings beyond the first per reference (the target's records, one reference each)."""
    return sum(n - 1 for n in Counter(refs).values() if n > 1)


def lost(acknowledged: Iterable[str], booked: Iterable[str]) -> list[str]:
    """Records acknowledged to their sender but not booked in the target, sorted."""
    done = set(booked)
    return sorted({ref for ref in acknowledged if ref not in done}, key=lambda ref: (len(ref), ref))


def delivery_row(case: str, deliveries: Iterable[Mapping[str, object]], booked: Iterable[str]) -> Row:
    """A row from a sender's delivery log (`status_code`, `resource_id` per delivery) and the target's
    references booked (one per booking, repeated when booked twice)."""
    rows = list(deliveries)
    refs = list(booked)
    codes = [row.get("status_code") for row in rows]
    sent, acked, server, other = status_counts(c if isinstance(c, int) else None for c in codes)
    acked_ids = [str(row.get("resource_id")) for row in rows if isinstance(row.get("status_code"), int)
                 and 200 <= int(row["status_code"]) < 300]  # type: ignore[call-overload]  # fmt: skip
    return Row(case, sent, acked, len(lost(acked_ids, refs)), duplicates(refs), server, other)


def peak_mb(samples: Iterable[float]) -> float:
    """The highest of RSS samples given in bytes, in MB (0 without samples)."""
    return round(max(samples, default=0.0) / 2**20, 1)


COLUMNS = (
    ("case", "case"), ("sent", "sent"), ("acked", "acked"), ("lost", "lost"), ("dup", "dup"),
    ("server_errors", "5xx"), ("other", "other"), ("gateway_mb", "gw MB"), ("workers_mb", "workers MB"),
)  # fmt: skip


def table(experiment: Experiment) -> str:
    """The experiment's rows as a plain-text table, its notes and its verdict below."""
    cells = [[head for _, head in COLUMNS]]
    for row in experiment.rows:
        cells.append([_cell(getattr(row, name)) for name, _ in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [f"{experiment.name}: {experiment.title} ({experiment.seconds:.0f} s)"]
    for line in cells:
        first, *rest = line
        padded = "".join(f"  {cell.rjust(width)}" for cell, width in zip(rest, widths[1:], strict=True))
        lines.append("  " + first.ljust(widths[0]) + padded)
    lines += [f"  {row.case}: {row.note}" for row in experiment.rows if row.note]
    lines += [f"  - {note}" for note in experiment.notes]
    if experiment.error:
        lines.append(f"  ERROR (the harness, not a finding): {experiment.error}")
    lines += [f"  broken: {item}" for item in experiment.broken]
    lines.append(f"  => {experiment.verdict}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value else "-"
    return str(value)


def exit_status(experiments: Iterable[Experiment], enforce: set[str] | None) -> int:
    """0 when no experiment in `enforce` (all of them when None) failed or errored, else 1."""
    bad = [e for e in experiments if e.verdict != "PASS" and (enforce is None or e.name in enforce)]
    return 1 if bad else 0
