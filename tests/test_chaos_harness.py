"""bench/chaos's accounting and tables (bench/chaos/report.py): pure helpers, no stack."""

from __future__ import annotations

import pytest

from bench.chaos.report import (
    Experiment,
    Row,
    delivery_row,
    duplicates,
    exit_status,
    lost,
    peak_mb,
    status_counts,
    table,
)
from bench.chaos.run import EXPERIMENTS, main


def test_status_counts_splits_2xx_5xx_and_the_rest() -> None:
    assert status_counts([]) == (0, 0, 0, 0)
    assert status_counts([200, 202, 299, 503, 500, 401, 303, None, 600]) == (9, 3, 2, 4)


def test_duplicates_count_bookings_beyond_the_first_per_reference() -> None:
    assert duplicates([]) == 0
    assert duplicates(["1", "2", "3"]) == 0
    assert duplicates(["1", "1", "2", "1", "3", "3"]) == 3


def test_lost_are_acknowledged_records_never_booked_in_numeric_order() -> None:
    assert lost(["10", "2", "3", "2"], ["3"]) == ["2", "10"]
    assert lost([], ["1"]) == []
    assert lost(["1"], ["1", "1"]) == []


def test_delivery_row_counts_what_the_sender_logged_against_what_the_target_booked() -> None:
    deliveries: list[dict[str, object]] = [
        {"resource_id": 1, "status_code": 202},
        {"resource_id": 1, "status_code": 202},  # order.updated of the same order
        {"resource_id": 2, "status_code": 503},  # refused: not acknowledged, so not lost when unbooked
        {"resource_id": 3, "status_code": 202},  # acknowledged and never booked: lost
        {"resource_id": 4, "status_code": None, "error": "timed out"},
        {"resource_id": 5, "status_code": 400},
    ]
    row = delivery_row("stream", deliveries, ["1", "1", "5"])
    assert (row.case, row.sent, row.acked, row.lost, row.dup, row.server_errors, row.other) == (
        "stream",
        6,
        3,
        1,
        1,
        1,
        2,
    )


def test_peak_mb_is_the_highest_sample_in_mebibytes() -> None:
    assert peak_mb([]) == 0.0
    assert peak_mb([2**20, 3 * 2**20 + 2**19, 2**21]) == 3.5


def test_table_aligns_columns_and_ends_with_the_verdict() -> None:
    exp = Experiment("redis", "Redis outage", seconds=12.4)
    exp.rows.append(Row("40 orders", 80, 50, 3, 0, 30, 0, 81.25, 150.0, note="webhooks disabled"))
    exp.rows.append(Row("x", 1, 1))
    exp.notes.append("booked 20 of 40")
    exp.broken.append("3 acknowledged order(s) never booked")
    lines = table(exp).splitlines()
    assert lines[0] == "redis: Redis outage (12 s)"
    head, first, second = lines[1:4]
    assert head.split() == ["case", "sent", "acked", "lost", "dup", "5xx", "other", "gw", "MB", "workers", "MB"]
    assert first.split() == ["40", "orders", "80", "50", "3", "0", "30", "0", "81", "150"]
    assert second.split() == ["x", "1", "1", "0", "0", "0", "0", "-", "-"]
    assert len(head) == len(first) == len(second)  # right-aligned under their heads
    assert "  40 orders: webhooks disabled" in lines
    assert "  - booked 20 of 40" in lines
    assert "  broken: 3 acknowledged order(s) never booked" in lines
    assert lines[-1] == "  => FAIL"


def test_verdicts_and_the_exit_status_follow_the_experiments_enforced() -> None:
    passed = Experiment("kills", "k")
    failed = Experiment("oauth", "o", broken=["reused"])
    errored = Experiment("slow", "s", error="the stack did not start")
    assert (passed.verdict, failed.verdict, errored.verdict) == ("PASS", "FAIL", "ERROR")
    assert "ERROR (the harness, not a finding): the stack did not start" in table(errored)
    assert exit_status([passed, failed], None) == 1
    assert exit_status([passed, failed], {"kills"}) == 0
    assert exit_status([passed, failed], {"oauth"}) == 1
    assert exit_status([passed, errored], {"slow"}) == 1
    assert exit_status([failed, errored], set()) == 0


def test_unknown_experiment_names_are_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "redis,nosuch"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no experiment nosuch" in err and ", ".join(EXPERIMENTS) in err
    with pytest.raises(SystemExit):
        main(["--expect-fixed", "typo"])
    assert "--expect-fixed: no experiment typo" in capsys.readouterr().err
