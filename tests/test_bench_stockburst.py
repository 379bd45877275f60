"""bench/stockburst end to end on a small burst: its exit status, and the figures it writes add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.stockburst.run import main

pytestmark = pytest.mark.integration


def test_a_small_burst_is_measured_one_by_one_and_batched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--products", "30", "--variable", "2", "--group", "20", "--results", str(tmp_path)]) == 0
    [written] = tmp_path.glob("stockburst-*.json")
    result = json.loads(written.read_text())
    one, batched, unchanged = result["phases"]
    assert (one["calls"], one["sandbox_calls"]) == (60, 60)  # a lookup by SKU and a PUT each
    # two groups: the 10 variations and 10 simple products (a lookup, a products batch, a batch per parent),
    # then 10 simple products (a lookup, a batch)
    assert batched["calls"] == batched["sandbox_calls"] == batched["records_calls_sum"] == 4 + 2
    assert unchanged["calls"] == 2 and unchanged["unexpected_count"] == 0
    assert result["ok"] is True
