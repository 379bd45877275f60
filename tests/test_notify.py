"""Failure notifications: the `[integrations.notify]` config, grouping, dedupe and retries of the dispatcher
(gateway/notify.py, workers/notifier.py), against a real Redis with a recording sender in place of apprise."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from connectors.exactonline.ratelimit import Limits, RateLimiter
from gateway import notify
from gateway.cli import main
from gateway.config import Config, parse_config
from gateway.errors import ConfigError
from workers.notifier import RETRY_ATTEMPTS, Dispatcher, url_problems
from workers.pollers import note_poll_outcome, polled_streams, stream_polls

ENV = {"WC": "wc-secret", "HOOK_URL": "json://koppel:hook-pa55@127.0.0.1:9/in", "EXACT_SECRET": "exact-secret"}
T0 = 1_800_000_000.0


def make(notify_table: dict[str, Any] | None = None, *, second: dict[str, Any] | None = None) -> Config:
    integration: dict[str, Any] = {"id": "shop-exact", "source": "shop", "target": "exact", "flows": ["orders"]}
    if notify_table is not None:
        integration["notify"] = notify_table
    integrations = [integration] + ([second] if second else [])
    return parse_config({
        "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC"}],
        "systems": [{"id": "exact", "kind": "exactonline", "credentials": {"client_secret": "env:EXACT_SECRET"}},
                    {"id": "bc", "kind": "businesscentral"}],
        "integrations": integrations,
    }, environ=ENV)  # fmt: skip


class Recorder:
    """A sender that keeps what it was given; fails while `failing` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.failing = False

    def __call__(self, url: str, title: str, body: str) -> str | None:
        if self.failing:
            return "A Connection error occurred sending JSON notification to 127.0.0.1."
        self.sent.append((url, title, body))
        return None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def dispatcher(rconn, config: Config, clock: Clock) -> tuple[Dispatcher, Recorder]:
    recorder = Recorder()
    return Dispatcher(rconn, config, sender=recorder, clock=clock), recorder


def fail(rconn, clock: Clock, order: str, reason: str = "SKU(s) X-1 do not exist as items in Exact Online") -> None:
    notify.record(rconn, "failure", reason, integration="shop-exact", item=f"order {order}", noun="order",
                  fix="fix it, then `koppel replay --integration shop-exact`", now=clock.now)  # fmt: skip


# -- configuration -----------------------------------------------------------------------------------


def test_notify_defaults_and_env_references():
    config = make({"urls": ["env:HOOK_URL", "mailto://ops.example.com?to=ops@example.com"]})
    table = config.integrations[0].notify
    assert table is not None
    assert table.urls[0].get_secret_value() == ENV["HOOK_URL"]
    assert table.events == list(notify.NOTIFY_EVENTS) and table.window_seconds == 300
    assert "hook-pa55" not in repr(config) and "hook-pa55" not in str(config.model_dump())


@pytest.mark.parametrize(("table", "expected"), [
    ({"urls": []}, "integrations[0].notify.urls: List should have at least 1 item"),
    ({"urls": [""]}, "integrations[0].notify.urls[0]: is empty"),
    ({"urls": ["env:KOPPEL_UNSET_URL"]}, "integrations[0].notify.urls[0]: environment variable KOPPEL_UNSET_URL"),
    ({"urls": ["json://x"], "events": ["failure", "outage"]}, "integrations[0].notify.events[1]: Input should be"),
    ({"urls": ["json://x"], "window_seconds": -1}, "integrations[0].notify.window_seconds"),
    ({"urls": ["json://x"], "colour": "red"}, "integrations[0].notify.colour: unknown key"),
])  # fmt: skip
def test_notify_config_problems_name_their_key_path(table, expected):
    with pytest.raises(ConfigError) as caught:
        make(table)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_apprise_urls_it_does_not_understand_are_reported_without_the_url():
    config = make({"urls": ["json://127.0.0.1:8080/in", "nosuch://user:pw-in-url@host", "just text",
                            "slack://T1/B2/C3"]})  # fmt: skip
    problems = url_problems(config)
    assert [p.split(":")[0] for p in problems] == ["integrations[0].notify.urls[1]", "integrations[0].notify.urls[2]"]
    assert "nosuch:// URL" in problems[0] and "no scheme://" in problems[1]
    assert not any("pw-in-url" in p for p in problems)


def test_config_check_reports_a_malformed_notify_url(tmp_path: Path, monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "koppel.toml"
    path.write_text(
        '[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:WC"\n'
        '[[systems]]\nid = "exact"\nkind = "woocommerce"\nbase_url = "https://shop.example"\n'
        'credentials = { consumer_key = "env:WC", consumer_secret = "env:WC" }\n'
        '[[integrations]]\nid = "shop-exact"\nsource = "shop"\ntarget = "exact"\nflows = ["orders"]\n'
        '[integrations.notify]\nurls = ["env:HOOK_URL", "mailto:/broken:secret-pw@"]\nevents = ["failure"]\n'
    )
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "integrations[0].notify.urls[1]: apprise does not understand this" in err
    assert "secret-pw" not in err and "hook-pa55" not in err


# -- grouping, window, dedupe ------------------------------------------------------------------------


def test_failures_of_one_reason_are_one_message_after_the_window(rconn, clock):
    config = make({"urls": ["json://127.0.0.1:9/a", "json://127.0.0.1:9/b"], "window_seconds": 300})
    run, recorder = dispatcher(rconn, config, clock)
    for order in ("4711", "4712", "4713"):
        fail(rconn, clock, order)
        clock.now += 10
    fail(rconn, clock, "4714", reason="order …: line(s) without SKU: Mug")
    assert run.run().sent == 0 and recorder.sent == []  # still collecting
    clock.now = T0 + 301
    assert run.run().sent == 2  # the SKU group, to both URLs; the other group's window is not over yet
    assert {url for url, _, _ in recorder.sent} == {"json://127.0.0.1:9/a", "json://127.0.0.1:9/b"}
    _, title, body = recorder.sent[0]
    assert title == "Koppel shop-exact: 3 orders failed for integration shop-exact"
    assert "SKU(s) X-1 do not exist as items in Exact Online" in body
    assert "Records: order 4711, order 4712, order 4713" in body
    assert "`koppel replay --integration shop-exact`" in body
    clock.now = T0 + 331
    assert run.run().sent == 2
    assert "1 order failed" in recorder.sent[2][1] and "line(s) without SKU" in recorder.sent[2][2]
    assert run.run().sent == 0  # nothing is sent twice


def test_the_same_problem_is_not_sent_again_before_repeat_seconds(rconn, clock):
    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0, "repeat_seconds": 3600})
    run, recorder = dispatcher(rconn, config, clock)
    fail(rconn, clock, "1001")
    assert run.run().sent == 1
    for minute in range(1, 6):  # the problem goes on: a failure a minute
        clock.now = T0 + 60 * minute
        fail(rconn, clock, f"100{minute + 1}")
        assert run.run().sent == 0
    clock.now = T0 + 3601
    assert run.run().sent == 1
    assert "5 orders failed" in recorder.sent[1][1]  # what came in meanwhile, in one message


def test_examples_are_capped_and_the_rest_counted(rconn, clock):
    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0})
    run, recorder = dispatcher(rconn, config, clock)
    for n in range(12):
        fail(rconn, clock, str(5000 + n))
    run.run()
    body = recorder.sent[0][2]
    assert "order 5000, order 5001, order 5002, order 5003, order 5004 and 7 more" in body


def test_only_the_configured_events_are_sent_and_unwanted_groups_are_forgotten(rconn, clock):
    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0, "events": ["consent"]})
    run, recorder = dispatcher(rconn, config, clock)
    fail(rconn, clock, "1")
    notify.record(rconn, "consent", "Exact Online refused the refresh_token grant (400 invalid_grant)",
                  system="exact", fix="run `koppel connect exact`", now=clock.now)  # fmt: skip
    assert run.run().sent == 1
    _, title, body = recorder.sent[0]
    assert title == "Koppel shop-exact: system exact must be connected again (integration shop-exact uses it)"
    assert "koppel connect exact" in body
    assert rconn.zcard(notify.OPEN) == 0  # the failure group nobody is told about is gone too


def test_a_system_problem_reaches_every_integration_using_the_system(rconn, clock):
    other = {"id": "bc-exact", "source": "bc", "target": "exact", "flows": ["stock"],
             "notify": {"urls": ["json://127.0.0.1:9/other"], "window_seconds": 0}}  # fmt: skip
    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0}, second=other)
    run, recorder = dispatcher(rconn, config, clock)
    notify.record(rconn, "budget_low", "Exact Online division 7 has used over 90% of its 5000 daily API calls",
                  system="exact", now=clock.now)  # fmt: skip
    assert run.run().sent == 2
    assert sorted(url for url, _, _ in recorder.sent) == ["json://127.0.0.1:9/a", "json://127.0.0.1:9/other"]


def test_a_failed_delivery_is_one_log_line_without_secrets_and_is_retried(rconn, clock, caplog):
    config = make({"urls": ["env:HOOK_URL"], "window_seconds": 0})
    run, recorder = dispatcher(rconn, config, clock)
    fail(rconn, clock, "1")
    recorder.failing = True
    with caplog.at_level(logging.INFO, logger="koppel.notify"):
        outcome = run.run()
    assert outcome.failed == 1 and outcome.sent == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert "integration shop-exact: notify.urls[0] (JSON): failure message not delivered" in lines[0]
    assert "next try in 60 s" in lines[0] and "hook-pa55" not in lines[0] and "koppel:" not in lines[0]
    recorder.failing = False
    assert run.run().sent == 0  # not due yet
    clock.now += 61
    assert run.run().sent == 1
    assert "1 order failed" in recorder.sent[0][1]


def test_a_delivery_that_keeps_failing_is_given_up_after_the_last_try(rconn, clock, caplog):
    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0})
    run, recorder = dispatcher(rconn, config, clock)
    recorder.failing = True
    fail(rconn, clock, "1")
    failed = 0
    for _ in range(RETRY_ATTEMPTS + 2):
        failed += run.run().failed
        clock.now += 3601
    assert failed == RETRY_ATTEMPTS
    assert "given up after 8 tries" in caplog.text
    assert rconn.zcard("koppel:notify:outbox") == 0


def test_a_failure_record_groups_on_the_reason_without_the_records_own_id(rconn, monkeypatch, clock):
    from gateway.envelope import Envelope, Event
    from workers import runtime
    from workers.jobs import notify_failure

    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0})
    rt = runtime.Runtime(config=config, connection=rconn)
    for ident in ("4711", "4712"):
        envelope = Envelope.wrap(Event("order.created", "order", ident, f"k-{ident}", {}), source="woocommerce",
                                 endpoint="shop")  # fmt: skip
        notify_failure(rt, config.integrations[0], envelope, "orders", f"order {ident}: line(s) without SKU: Mug")
    run, recorder = dispatcher(rconn, config, clock)
    assert run.run().sent == 1
    _, title, body = recorder.sent[0]
    assert "2 orders failed" in title and "order …: line(s) without SKU: Mug" in body
    assert "Records: order 4711, order 4712" in body
    assert "/console/integrations/shop-exact/failed" in body


# -- producers without a worker ----------------------------------------------------------------------


def test_the_exact_budget_nearly_spent_is_recorded_once_a_minute(rconn, clock, monkeypatch):
    from connectors.exactonline import ratelimit

    monkeypatch.setattr(ratelimit, "_told_at", {})
    limiter = RateLimiter(rconn, 7, Limits(), clock=clock, system_id="exact")
    reset = str(int((T0 + 3600) * 1000))
    headers = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "499", "X-RateLimit-Reset": reset}
    limiter.observe(headers | {"X-RateLimit-Remaining": "501"})
    assert rconn.zcard(notify.OPEN) == 0  # above the mark
    limiter.observe(headers)
    limiter.observe(headers | {"X-RateLimit-Remaining": "498"})  # the same minute: not again
    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0})
    run, recorder = dispatcher(rconn, config, clock)
    assert run.run().sent == 1
    _, title, body = recorder.sent[0]
    assert "daily API budget of exact is nearly spent" in title
    assert "division 7 has used over 90% of its 5000 daily API calls" in body and "499 calls are left" in body


def test_a_polled_stream_without_success_for_too_long_is_a_stalled_poller(rconn, clock):
    config = parse_config({
        "systems": [{"id": "exact", "kind": "exactonline", "credentials": {"client_secret": "env:EXACT_SECRET"},
                     "settings": {"client_id": "app"}},
                    {"id": "bc", "kind": "businesscentral"}],
        "integrations": [{"id": "exact-bc", "source": "exact", "target": "bc", "flows": ["orders"],
                          "notify": {"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0,
                                     "poller_stalled_seconds": 600}}],
    }, environ=ENV)  # fmt: skip
    run, recorder = dispatcher(rconn, config, clock)
    assert run.run().stalled == 0  # watching starts now
    [stream, *_] = polled_streams(config)["exact"]
    assert stream_polls(rconn, "exact")[stream].watched == clock.now
    clock.now += 300
    note_poll_outcome(rconn, "exact", stream, error="Exact answered 503", at=clock.now)
    assert run.run().stalled == 0
    clock.now += 301
    outcome = run.run()
    assert outcome.stalled >= 1 and outcome.sent >= 1
    [(_, title, body)] = [m for m in recorder.sent if f"stream {stream} " in m[2]]
    assert "polling exact stopped advancing" in title
    assert f"stream {stream} has had no successful poll since" in body and "Exact answered 503" in body


def test_an_integration_the_system_switched_off_is_a_consent_notification(rconn, clock):
    from workers.switches import switch_off

    config = make({"urls": ["json://127.0.0.1:9/a"], "window_seconds": 0})
    switch_off(rconn, "shop-exact", "Squarespace: the extension was uninstalled")
    run, recorder = dispatcher(rconn, config, clock)
    clock.now = 4_000_000_000.0  # after the real time the switch was recorded at
    assert run.run().sent == 1
    _, title, body = recorder.sent[0]
    assert title == "Koppel shop-exact: integration shop-exact needs its system connected again"
    assert "the integration was switched off: Squarespace: the extension was uninstalled" in body
    assert "`koppel integrations on shop-exact`" in body


def test_the_worker_keeps_one_dispatch_scheduled_only_when_an_integration_has_notifications(rconn):
    from gateway.ingest import make_queue
    from workers.notifier import JOB_IDS, schedule_dispatch

    assert schedule_dispatch(rconn, make()) is None
    config = make({"urls": ["json://127.0.0.1:9/a"]})
    assert schedule_dispatch(rconn, config) == JOB_IDS[0]
    assert schedule_dispatch(rconn, config) is None  # a second worker starting: nothing more
    assert make_queue(rconn, "koppel").scheduled_job_registry.get_job_ids() == [JOB_IDS[0]]
