"""Live reload (gateway/live.py): what a new config changes, the file watch, the refusal of an invalid
file, the announcement to other processes, the worker runtime's swap between jobs, and the gateway's
`app.state.reload_config` over real HTTP (uvicorn) and real Redis."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.checks import check_file, check_parts
from gateway.config import Config, parse_config
from gateway.live import CHANNEL, Changes, LiveConfig, Reloader, effective
from gateway.stack import serve
from tests.conftest import woo_headers, woo_order
from tests.samples import SECRETS
from workers.runtime import Runtime

SHOP = """
[gateway]
max_body_bytes = 65536
queue = "koppel"

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:WC_SECRET"
"""

SHOP2 = """
[[endpoints]]
id = "shop2"
kind = "woocommerce"
secret = "env:WC_SECRET"
"""

INVALID = """
[[endpoints]]
id = "shop2"
kind = "woocommerce"
secret = "pasted-secret-value"

[[integrations]]
id = "shop-to-nowhere"
source = "shop"
target = "shop"
flows = ["orderz"]
"""


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def write(path: Path, text: str) -> None:
    """As an editor that writes in place would (the watch must not take a half-written file)."""
    path.write_text(text, encoding="utf-8")


def loaded(path: Path) -> Config:
    config, problems = check_file(path)
    assert config is not None and not problems, problems
    return config


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


class Applied:
    """A process's `apply`: the configs handed to it, with their changes."""

    def __init__(self, config: Config) -> None:
        self.live = LiveConfig(config)
        self.seen: list[Changes] = []
        self.live.on_swap(lambda new, changes: self.seen.append(changes))


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "koppel.toml"
    write(path, SHOP)
    return path


# -- what a new config changes ---------------------------------------------------------------------------


def test_changes_name_ids_and_restart_only_settings_keep_their_running_values(file: Path) -> None:
    running = loaded(file)
    write(file, SHOP.replace('queue = "koppel"', 'queue = "other"').replace("65536", "131072") + SHOP2)
    new, changes = effective(running, loaded(file))

    assert changes.added == {"endpoints": ["shop2"]} and not changes.removed and not changes.changed
    assert changes.settings == ["gateway.max_body_bytes"]
    assert changes.restart == ["gateway.queue"]
    assert new.gateway.queue == "koppel" and new.gateway.max_body_bytes == 131072
    assert new.endpoint("shop2") is not None  # the lookup by id works on the copy
    assert changes.describe() == "endpoints added: shop2; settings changed: gateway.max_body_bytes"

    write(file, SHOP.replace('"env:WC_SECRET"', '"env:SQ_SECRET"'))  # a secret changed: named by id only
    _, changes = effective(running, loaded(file))
    assert changes.changed == {"endpoints": ["shop"]}
    assert SECRETS["SQ_SECRET"] not in changes.describe() and "SQ_SECRET" not in changes.describe()


def test_an_unchanged_file_changes_nothing(file: Path) -> None:
    _, changes = effective(loaded(file), loaded(file))
    assert changes.empty and not changes.restart


# -- reloading ---------------------------------------------------------------------------------------


def test_reload_applies_a_sound_file_and_refuses_an_invalid_one(file: Path, caplog: pytest.LogCaptureFixture) -> None:
    process = Applied(loaded(file))
    reloader = Reloader(file, process.live, process.live.swap, check_parts, interval=0)

    assert reloader.reload() == []
    assert process.seen == []  # nothing changed: nothing applied

    write(file, SHOP + SHOP2)
    with caplog.at_level(logging.INFO, logger="koppel.config"):
        assert reloader.reload() == []
    assert process.live.config.endpoint("shop2") is not None
    assert [c.added for c in process.seen] == [{"endpoints": ["shop2"]}]
    assert any("reloaded" in r.getMessage() and "endpoints added: shop2" in r.getMessage() for r in caplog.records)

    caplog.clear()
    write(file, SHOP + INVALID)
    with caplog.at_level(logging.INFO, logger="koppel.config"):
        problems = reloader.reload()
    assert any(p.startswith("endpoints[1].secret:") for p in problems), problems
    assert any(p.startswith("integrations[0].flows[0]:") for p in problems), problems
    assert len(process.seen) == 1  # not applied
    assert process.live.config.endpoint("shop2") is not None  # the running config stays
    [line] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "refused" in line.getMessage() and "the running config stays" in line.getMessage()
    assert "endpoints[1].secret" in line.getMessage() and "integrations[0].flows[0]" in line.getMessage()
    assert "pasted-secret-value" not in line.getMessage()


def test_a_file_that_cannot_be_read_is_refused(file: Path) -> None:
    process = Applied(loaded(file))
    reloader = Reloader(file, process.live, process.live.swap, check_parts, interval=0)
    file.unlink()
    [problem] = reloader.reload()
    assert "no such file" in problem
    assert process.live.config.endpoint("shop") is not None


def test_restart_only_settings_are_told_once_and_kept(file: Path, caplog: pytest.LogCaptureFixture) -> None:
    process = Applied(loaded(file))
    reloader = Reloader(file, process.live, process.live.swap, check_parts, interval=0)
    write(file, SHOP.replace('queue = "koppel"', 'queue = "other"') + SHOP2)
    with caplog.at_level(logging.INFO, logger="koppel.config"):
        assert reloader.reload() == []
        assert reloader.reload() == []
    told = [r.getMessage() for r in caplog.records if "needs a restart" in r.getMessage()]
    assert len(told) == 1 and "gateway.queue" in told[0]
    assert process.live.config.gateway.queue == "koppel"
    assert process.live.config.endpoint("shop2") is not None


def test_the_watch_takes_an_edit_skips_a_touch_and_tells_a_refusal_once(
    file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process = Applied(loaded(file))
    reloader = Reloader(file, process.live, process.live.swap, check_parts, interval=0.05)
    reloader.start()
    try:
        with caplog.at_level(logging.INFO, logger="koppel.config"):
            write(file, SHOP + SHOP2)
            wait_for(lambda: process.live.config.endpoint("shop2") is not None)
            now = time.time() + 5
            os.utime(file, (now, now))  # touched, not changed
            write(file, SHOP + INVALID)
            wait_for(lambda: any("refused" in r.getMessage() for r in caplog.records))
            time.sleep(0.3)  # several more looks at the same invalid file
        assert len(process.seen) == 1
        assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
        assert process.live.config.endpoint("shop2") is not None
    finally:
        reloader.stop()


def test_another_process_announcing_a_change_makes_this_one_read_its_file_at_once(file: Path, redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    announcer, listener = Applied(loaded(file)), Applied(loaded(file))
    # The listener's own watch looks only every minute: the announcement is what makes it read the file.
    heard = Reloader(file, listener.live, listener.live.swap, check_parts, connection=connection, interval=60)
    says = Reloader(file, announcer.live, announcer.live.swap, check_parts, connection=connection, interval=0)
    heard.start()
    try:
        wait_for(lambda: connection.pubsub_numsub(CHANNEL)[0][1] >= 1)
        write(file, SHOP + SHOP2)
        assert says.reload() == []
        wait_for(lambda: listener.live.config.endpoint("shop2") is not None, timeout=5)
    finally:
        heard.stop()
        connection.close()


def test_the_watch_survives_redis_going_away(file: Path) -> None:
    process = Applied(loaded(file))
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
    reloader = Reloader(file, process.live, process.live.swap, check_parts, connection=gone, interval=0.05)
    reloader.start()
    try:
        write(file, SHOP + SHOP2)
        wait_for(lambda: process.live.config.endpoint("shop2") is not None)
        assert reloader.reload() == []  # the announcement fails quietly
    finally:
        reloader.stop()


# -- the worker runtime --------------------------------------------------------------------------------


def test_the_runtime_swaps_between_jobs_and_drops_what_was_built_from_changed_items(file: Path, redis_url: str) -> None:
    running = loaded(file)
    rt = Runtime(config=running, connection=redis.Redis.from_url(redis_url))
    for key in ("http", "context", "source:shop", "woocommerce:shop", "mapping:shop-to-exact:orders:exactonline",
                "tables:other", "source:kept"):  # fmt: skip
        rt.cache[key] = object()
    write(file, SHOP.replace('"env:WC_SECRET"', '"env:SQ_SECRET"'))
    new, changes = effective(running, loaded(file))
    changes = Changes(changes.added, changes.removed, {**changes.changed, "integrations": ["shop-to-exact"]})

    swapped = threading.Event()
    with rt.job():  # a job is running: the swap waits for its end
        thread = threading.Thread(target=lambda: (rt.swap(new, changes), swapped.set()))
        thread.start()
        assert not swapped.wait(0.3)
        assert rt.config is running
    thread.join(5)
    assert swapped.is_set() and rt.config is new
    assert sorted(rt.cache) == ["context", "http", "source:kept", "tables:other"]


# -- the gateway ------------------------------------------------------------------------------------


@pytest.fixture
def gateway_app(file: Path, redis_url: str) -> Iterator[tuple[str, Callable[[], list[str]]]]:
    app = create_app(loaded(file), redis_url, config_path=file)
    live = serve(app)
    try:
        yield live.url, app.state.reload_config
    finally:
        live.stop()


def post(url: str, endpoint: str, order_id: int) -> httpx.Response:
    body = woo_order(order_id)
    return httpx.post(f"{url}/webhooks/{endpoint}", content=body, headers=woo_headers(body), timeout=10)


def test_the_gateway_serves_a_new_endpoint_once_reload_config_applied_it(
    gateway_app: tuple[str, Callable[[], list[str]]], file: Path
) -> None:
    url, reload_config = gateway_app
    assert post(url, "shop2", 1).status_code == 404
    write(file, SHOP + SHOP2)
    assert reload_config() == []
    assert post(url, "shop2", 2).status_code == 202
    assert post(url, "shop", 3).status_code == 202

    write(file, SHOP + INVALID)
    problems = reload_config()
    assert any("endpoints[1].secret" in p for p in problems)
    assert post(url, "shop2", 4).status_code == 202  # the running config stays

    write(file, SHOP)  # shop2 removed
    assert reload_config() == []
    assert post(url, "shop2", 5).status_code == 404


def test_reload_config_without_a_config_file_says_so(redis_url: str, file: Path) -> None:
    app = create_app(loaded(file), redis_url)
    assert app.state.config_path is None
    [problem] = app.state.reload_config()
    assert "without a config file" in problem


EXACT = """
[[systems]]
id = "exact"
kind = "exactonline"

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders"]
"""

BROKEN_MAPPING = """
[integrations.mappings.orders.exactonline]
Description = "$left(("
"""


def test_a_problem_the_running_file_had_already_does_not_stop_a_reload_a_new_one_does(file: Path) -> None:
    write(file, SHOP + EXACT)
    _, already = check_file(file)
    assert already  # `koppel config check` finds more than a process refuses at start (the Exact settings)
    config, problems = check_parts(file)[0], check_parts(file)[1]
    assert config is not None and problems == []
    process = Applied(config)
    reloader = Reloader(file, process.live, process.live.swap, check_parts, interval=0)

    write(file, SHOP + SHOP2 + EXACT)
    assert reloader.reload() == []
    assert process.live.config.endpoint("shop2") is not None

    write(file, SHOP + SHOP2 + EXACT + BROKEN_MAPPING)
    problems = reloader.reload()
    assert problems and all(p.startswith("integrations[0].mappings") for p in problems), problems
    assert process.live.config.integrations[0].mappings == {}


def test_a_poll_or_webhook_check_the_reloaded_config_no_longer_asks_for_ends_its_chain(
    file: Path, redis_url: str
) -> None:
    from workers import pollers, runtime, subscriptions

    connection = redis.Redis.from_url(redis_url)
    runtime.install(Runtime(config=loaded(file), connection=connection))  # no polled source, no managed webhooks
    try:
        assert pollers.poll("exact", "SalesOrderHeaders") == {"ended": "the config no longer polls this stream"}
        assert "ended" in subscriptions.check("shop")
        queue_jobs = connection.keys("rq:job:*")
        assert queue_jobs == []  # no next poll or check scheduled
    finally:
        runtime.install(None)  # type: ignore[arg-type]
        connection.close()


def metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=10).text


def test_a_request_in_flight_finishes_with_the_config_it_started_with(
    gateway_app: tuple[str, Callable[[], list[str]]], file: Path
) -> None:
    url, reload_config = gateway_app
    write(file, SHOP + SHOP2)
    assert reload_config() == []
    body = woo_order(7)
    half = len(body) // 2
    reloaded = threading.Event()

    def slowly() -> Iterator[bytes]:  # the body's second half is sent once shop2 is gone from the config
        yield body[:half]
        assert reloaded.wait(10)
        yield body[half:]

    answer: list[httpx.Response] = []
    headers = woo_headers(body) | {"content-length": str(len(body))}
    sender = threading.Thread(
        target=lambda: answer.append(httpx.post(f"{url}/webhooks/shop2", content=slowly(), headers=headers, timeout=10))
    )
    sender.start()
    wait_for(lambda: 'koppel_webhooks_received_total{endpoint="shop2",kind="woocommerce"} 1.0' in metrics(url))
    # Its headers are in: the gateway took shop2's config and waits for the body.
    write(file, SHOP)
    assert reload_config() == []
    reloaded.set()
    sender.join(10)
    assert answer[0].status_code == 202  # accepted under the config it started with
    assert post(url, "shop2", 8).status_code == 404  # the next request reads the new one


IDS = st.sampled_from(["a", "b", "c", "d", "e"])


def _config(endpoints: dict[str, int]) -> Config:
    """Endpoints by id, each with a body cap standing for its settings."""
    data = {"endpoints": [{"id": i, "kind": "woocommerce", "secret": "env:WC_SECRET", "max_body_bytes": cap}
                          for i, cap in endpoints.items()]}  # fmt: skip
    return parse_config(data, environ=SECRETS)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(IDS, st.sampled_from([2048, 4096])),
    st.dictionaries(IDS, st.sampled_from([2048, 4096])),
)
def test_changes_are_exactly_the_ids_added_removed_and_changed(old: dict[str, int], new: dict[str, int]) -> None:
    applied, changes = effective(_config(old), _config(new))
    assert changes.added.get("endpoints", []) == [i for i in new if i not in old]
    assert changes.removed.get("endpoints", []) == [i for i in old if i not in new]
    assert changes.changed.get("endpoints", []) == [i for i in new if i in old and old[i] != new[i]]
    assert changes.empty == (old == new)
    assert changes.stale() == {i for i in old if i not in new or old[i] != new[i]}
    assert {e.id: e.max_body_bytes for e in applied.endpoints} == new
    assert all(applied.endpoint(i) is not None for i in new)
