"""bench/stockburst on a small burst (direct and through the workers, stock and new products): its exit status, and
the figures add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.stockburst.run import main

pytestmark = pytest.mark.integration


def test_a_small_burst_is_measured_one_by_one_batched_and_through_the_workers(tmp_path: Path) -> None:
    assert main(["--products", "30", "--variable", "2", "--group", "20", "--creations", "30",
                 "--results", str(tmp_path)]) == 0  # fmt: skip
    [written] = tmp_path.glob("stockburst-*.json")
    result = json.loads(written.read_text())
    one, batched, unchanged, made_one, made_batched, workers = result["phases"]
    assert (one["calls"], one["sandbox_calls"]) == (60, 60)  # a lookup by SKU and a PUT each
    # two groups: the 10 variations and 10 simple products (a lookup, a products batch, a batch per parent),
    # then 10 simple products (a lookup, a batch)
    assert batched["calls"] == batched["sandbox_calls"] == batched["records_calls_sum"] == 4 + 2
    assert unchanged["calls"] == 2 and unchanged["unexpected_count"] == 0
    # 30 new products: a lookup, a lookup by SKU and a POST each; batched, two groups of a lookup and a batch
    assert (made_one["phase"], made_one["calls"], made_one["unexpected_count"]) == ("create-one-by-one", 90, 0)
    assert made_batched["calls"] == made_batched["sandbox_calls"] == made_batched["records_calls_sum"] == 2 + 2
    assert made_batched["unexpected_count"] == 0 and result["created_one_by_one_over_batched_calls"] == 22.5
    # through the poller and a worker: the 30 records one batch job (a lookup, a products batch, a batch per parent)
    assert workers["phase"] == "workers" and workers["queued"] == 30
    assert workers["calls"] == workers["records_calls_sum"] == 4 and workers["unexpected_count"] == 0
    assert workers["records_per_s"] > 0
    assert result["ok"] is True


def test_a_mode_it_does_not_know_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--through", "rq"])
    assert exit_.value.code == 2 and "--through takes direct or workers" in capsys.readouterr().err
