"""bench/drain's pure helpers (the benchmark itself runs by hand: bench/drain/run.sh)."""

import pytest

from bench.drain.run import parse_args, ratio


def test_ratio_rounds_to_two_places() -> None:
    assert ratio(13.4, 2.137) == 6.27


def test_ratio_of_nothing_measured_is_zero() -> None:
    assert ratio(5.0, 0.0) == 0.0


def test_orders_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--orders", "0"])
