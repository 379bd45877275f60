"""bench/drain's pure helpers (the benchmark itself runs by hand: bench/drain/run.sh)."""

import pytest

from bench.drain.run import ANSWERED, Cpu, Phase, parse_args, ratio


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


def phase(path: str, name: str, **figures: float) -> Phase:

    base = {"orders": 100, "created": 100, "events": 200, "fill_s": 1.0, "drain_s": 1.0, "orders_per_s": 50.0,
            "worker_cpu_s": 1.0, "cpu_ms_per_order": 10.0, "cpu_ms_per_event": 5.0, "exact_calls": 100,
            "exact_calls_per_order": 1.0, "exact_by_endpoint": {}, "orders_per_worker_cpu_s": 100.0}
    kind = ANSWERED if name == ANSWERED else "orders"
    cpu = Cpu(wall_s=1.0, cpus=2, machine_pct=150.0, seconds={}, pct={"worker 1": 100.0})
    return Phase(name=f"{path}: {name}", **(base | figures), cpu=cpu, path=path, kind=kind)


def test_ratios_put_each_path_beside_the_noop_job_the_floor_and_the_other_path() -> None:
    from bench.drain.run import Floor, Noop, ratios

    noop = Noop(name="no-op unpinned", jobs=100, wall_s=1.0, work_s=1.0, cpu_s=0.2, jobs_per_s=100.0,
                cpu_ms_per_job=2.0)
    floor = Floor(posts=100, ok=100, cpu_s=0.05, wall_s=1.0, cpu_ms_per_post=0.5)
    phases = [
        phase("rq", "1 worker", cpu_ms_per_order=10.0, cpu_ms_per_event=5.0, orders_per_s=40.0),
        phase("rq", "2 workers", orders_per_s=60.0, orders_per_worker_cpu_s=90.0),
        phase("rq", "answered", cpu_ms_per_event=3.0, events=100, created=0),
        phase("direct", "1 worker", cpu_ms_per_order=5.0, cpu_ms_per_event=2.5, orders_per_s=80.0),
        phase("direct", "2 workers", orders_per_s=150.0),
        phase("direct", "answered", cpu_ms_per_event=1.5, events=100, created=0),
    ]
    found = ratios(phases, [noop], floor)
    assert found["rq: cpu per order ÷ no-op unpinned cpu per job"] == 5.0
    assert found["rq: cpu per event ÷ no-op unpinned cpu per job"] == 2.5
    assert found["direct: answered cpu per event ÷ no-op unpinned cpu per job"] == 0.75  # the #14 target: ≤ 1
    assert found["direct: cpu per order ÷ (no-op unpinned + floor)"] == 2.0  # 5 ÷ (2 + 0.5)
    assert found["rq: 2 workers ÷ 1 worker orders/s"] == 1.5
    assert found["rq: 2 ÷ 1 workers normalised (2 * orders per worker-CPU-second ratio)"] == 1.8
    assert found["direct ÷ rq: 1 worker orders/s"] == 2.0 and found["direct ÷ rq: 2 workers orders/s"] == 2.5
    assert found["direct ÷ rq: 1 worker cpu per order"] == 0.5 and found["direct ÷ rq: answered cpu per event"] == 0.5


def test_ratios_of_one_path_without_a_floor_name_no_comparison() -> None:
    from bench.drain.run import Noop, ratios

    noop = Noop(name="no-op", jobs=1, wall_s=1.0, work_s=1.0, cpu_s=0.002, jobs_per_s=1.0, cpu_ms_per_job=2.0)
    found = ratios([phase("direct", "1 worker"), phase("direct", "2 workers")], [noop], None)
    assert not [name for name in found if "floor" in name or "÷ rq" in name or "answered" in name]
    assert found["direct: cpu per order ÷ no-op cpu per job"] == 5.0


def test_a_phase_divides_by_orders_created_or_by_events_answered() -> None:
    from bench.drain.run import Floor, problems_of

    orders = phase("rq", "1 worker", created=99)
    answered = phase("rq", "answered", events=100, answered=98, created=0)
    assert (orders.done, answered.done) == (99, 98)
    assert problems_of([orders, answered], Floor(posts=10, ok=9, cpu_s=0.0, wall_s=0.0, cpu_ms_per_post=0.0)) == [
        "rq: 1 worker: 99 of 100 orders created", "rq: answered: 98 of 100 events answered",
        "floor: 9 of 10 sales-order POSTs answered 2xx"]


def test_an_answered_pass_takes_each_record_s_last_delivery() -> None:
    import json

    from bench.drain.run import last_per_record

    def event(resource_id: str, topic: str) -> bytes:
        return json.dumps({"endpoint": "shop", "resource": "order", "resource_id": resource_id,
                           "topic": topic}).encode()

    given = [event("1", "order.created"), event("2", "order.created"), event("1", "order.updated"),
             event("3", "order.created")]
    assert last_per_record(given) == [given[1], given[2], given[3]]


def test_paths_are_chosen_by_name_and_the_floor_defaults_to_the_orders() -> None:
    from bench.drain.run import PATHS

    assert PATHS == {"rq": False, "direct": True}
    args = parse_args(["--orders", "40"])
    assert (args.paths, args.floor_posts) == (["rq", "direct"], 40)
    assert parse_args(["--paths", "direct", "--floor-posts", "0"]).paths == ["direct"]
    for bad in ("", "rq,rq", "fast"):
        with pytest.raises(SystemExit):
            parse_args(["--paths", bad])


def test_the_stack_writes_the_chosen_event_path_into_its_gateway_settings() -> None:
    from gateway.stack import StackOptions

    assert "direct_events" not in StackOptions().gateway_settings()  # the config's default
    chosen = StackOptions(direct_events=False, gateway={"retry_base_seconds": 1}, queue="q").gateway_settings()
    assert chosen == {"retry_base_seconds": 1, "direct_events": False, "queue": "q"}


def profile_run(cpu_ms: float, *, failed: int = 0, retrying: int = 0, done: int = 0) -> dict[str, object]:
    """One path's run as bench/drain/profile's `one_path` returns it (the figures it compares by)."""
    after = {"done records": done, "failed jobs": 0, "retrying jobs": 0}
    return {
        "drain": {"cpu_ms_per_order": cpu_ms, "cpu_ms_per_event": cpu_ms / 2, "round_trips_per_order": 16.0,
                  "round_trips_per_event": 8.0, "commands_per_order": 80.0, "commands_per_event": 40.0,
                  "after": after},
        "answered": {"cpu_ms_per_event": cpu_ms / 4, "round_trips_per_event": 5.6, "commands_per_event": 32.0,
                     "after": after},
        "plain": {"cpu_ms_per_event": 2.0, "noop_cpu_ms_per_job": 2.0, "ratio_to_noop": 1.0,
                  "after": after | {"failed jobs": failed, "retrying jobs": retrying}},
    }  # fmt: skip


def test_the_profile_puts_the_paths_side_by_side_with_direct_over_rq() -> None:
    from bench.drain.profile import figures_of, side_by_side

    rows = side_by_side({"rq": figures_of(profile_run(20.0)), "direct": figures_of(profile_run(12.0, done=220))})
    by = {(phase, name): (values, ratio) for phase, name, values, ratio, _ in rows}
    assert by["drain", "cpu_ms_per_order"] == ([20.0, 12.0], 0.6)
    assert by["answered", "cpu_ms_per_event"] == ([5.0, 3.0], 0.6)
    assert by["plain", "ratio_to_noop"] == ([1.0, 1.0], 1.0)
    assert by["plain", "after: done records"] == ([0.0, 220.0], None)  # nothing to divide by: no ratio
    assert [(phase, name) for phase, name, *_ in rows][:2] == [("drain", "cpu_ms_per_order"),
                                                                ("drain", "cpu_ms_per_event")]  # fmt: skip


def test_one_path_alone_has_no_ratio() -> None:
    from bench.drain.profile import figures_of, side_by_side

    rows = side_by_side({"direct": figures_of(profile_run(12.0))})
    assert rows and all(values == [values[0]] and ratio is None for _, _, values, ratio, _ in rows)


def test_medians_take_each_figure_and_the_rounds_ratios_with_their_range() -> None:
    from bench.drain.profile import figures_of, medians

    rounds = [{"rq": figures_of(profile_run(rq)), "direct": figures_of(profile_run(direct))}
              for rq, direct in ((20.0, 12.0), (22.0, 11.0), (21.0, 14.0))]  # fmt: skip
    row = next(row for row in medians(rounds) if row[:2] == ("drain", "cpu_ms_per_order"))
    assert row[2:] == ([21.0, 12.0], 0.6, "0.50-0.67")  # the median of 0.6, 0.5, 0.67: not 12 ÷ 21


def test_a_failed_or_retrying_job_after_a_phase_is_a_problem() -> None:
    from bench.drain.profile import figures_of, problems_of

    clean = {"rq": figures_of(profile_run(20.0)), "direct": figures_of(profile_run(12.0, done=220))}
    assert problems_of([clean]) == []
    dirty = {"rq": figures_of(profile_run(20.0)), "direct": figures_of(profile_run(12.0, failed=2, retrying=1))}
    assert problems_of([clean, dirty]) == ["round 2, direct: 2 failed jobs after plain",
                                           "round 2, direct: 1 retrying jobs after plain"]  # fmt: skip


def test_the_profile_runs_both_paths_by_default_and_checks_its_arguments() -> None:
    from bench.drain.profile import parse_args as profile_args

    args = profile_args([])
    assert (args.paths, args.rounds) == (["rq", "direct"], 1)
    assert profile_args(["--paths", "direct", "--rounds", "3"]).paths == ["direct"]
    for bad in (["--rounds", "0"], ["--orders", "0"], ["--paths", "slow"]):
        with pytest.raises(SystemExit):
            profile_args(bad)
