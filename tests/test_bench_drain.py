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


def test_the_workers_could_have_had_what_everything_else_left() -> None:
    from bench.drain.run import Cpu

    cpu = Cpu(wall_s=1.0, cpus=2, machine_pct=196.0, seconds={},
              pct={"worker 1": 60.0, "worker 2": 50.0, "exact sandbox": 30.0, "redis-server": 10.0})  # fmt: skip
    assert cpu.workers_pct() == 110.0
    assert cpu.other_pct() == 46.0  # neighbours: the machine's busy CPU less every process of the drain
    assert cpu.workers_could_have_pct() == 114.0  # 200 % less the 86 % the others used
