"""The admin API (/api/v1/, docs/api.md): over the real gateway app with a config file and a real Redis."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.routing import Mount, Route

from connectors import registry
from connectors.woocommerce.sandbox import create_sandbox
from gateway.activity import Activity, ActivityLog
from gateway.api import OPERATIONS, PREFIX, document, openapi
from gateway.app import create_app
from gateway.checks import check_file
from gateway.stack import serve

pytestmark = pytest.mark.integration

TOKEN = "api-admin-token-5d2"
ENV = {"ADMIN_TOKEN": TOKEN, "T_HOOK": "hook-s3cret", "T_KEY": "ck_api", "T_SECRET": "cs_api-s3cret"}
AUTH = {"authorization": f"Bearer {TOKEN}"}

CONFIG = """\
# Koppel test config: comments and layout must survive the API's changes.
[gateway]
admin_token = "env:ADMIN_TOKEN"   # the API's Bearer token
public_url = "http://127.0.0.1:9/"

# where the shop's webhooks arrive
[[endpoints]]
id = "shop-hooks"
kind = "woocommerce"
secret = "env:T_HOOK"  # the webhook secret
system = "shop"

# the shop's API
[[systems]]
id = "shop"
kind = "woocommerce"
base_url = "SHOP_URL"
[systems.credentials]
consumer_key = "env:T_KEY"
consumer_secret = "env:T_SECRET"

[[systems]]
id = "other"
kind = "woocommerce"
base_url = "SHOP_URL"   # the same sandbox
[systems.credentials]
consumer_key = "env:T_KEY"
consumer_secret = "env:T_SECRET"

# orders into the other shop
[[integrations]]
id = "hooks-to-other"
source = "shop-hooks"
target = "other"
flows = ["orders"]  # only orders
"""
COMMENTS = [line[line.index("#") :] for line in CONFIG.splitlines() if "#" in line]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def write(path: Path, shop_url: str = "http://127.0.0.1:9") -> Path:
    path.write_text(CONFIG.replace("SHOP_URL", shop_url), encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path, env: None) -> Path:
    return write(tmp_path / "koppel.toml")


class Api(httpx.Client):
    """An HTTP client of a gateway served on a free port (real HTTP, its lifespan run), and the gateway's app."""

    app: Any


@contextmanager
def client_for(path: Path, redis_url: str, config_path: Path | None = None) -> Iterator[Api]:
    app = create_app(registry.load(path), redis_url, config_path=config_path)
    live = serve(app)
    try:
        with Api(base_url=live.url, timeout=30) as client:
            client.app = app
            yield client
    finally:
        live.stop()


@pytest.fixture
def api(config_file: Path, redis_url: str) -> Iterator[Api]:
    with client_for(config_file, redis_url, config_file) as client:
        client.headers.update(AUTH)
        yield client


def etag(api: Api) -> str:
    answer = api.get(f"{PREFIX}/endpoints")
    assert answer.status_code == 200
    return answer.headers["etag"]


def assert_no_secret(text: str) -> None:
    for name in ("T_HOOK", "T_KEY", "T_SECRET", "ADMIN_TOKEN"):
        assert ENV[name] not in text


# -- access ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}],
                         ids=["none", "wrong", "basic"])  # fmt: skip
def test_every_route_needs_the_admin_token(config_file, redis_url, headers):
    with client_for(config_file, redis_url, config_file) as client:
        for op in OPERATIONS:
            path = PREFIX + op.path.replace("{id}", "shop")
            answer = client.request(op.method, path, headers=headers, json={})
            assert answer.status_code == 401, (op.method, path)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.json()["error"] == "unauthorized"


def test_without_an_admin_token_the_api_is_off(tmp_path, redis_url, env):
    path = write(tmp_path / "k.toml")
    path.write_text(path.read_text().replace('admin_token = "env:ADMIN_TOKEN"', ""))
    with client_for(path, redis_url, path) as client:
        answer = client.get(f"{PREFIX}/endpoints", headers=AUTH)
    assert answer.status_code == 403 and "gateway.admin_token" in answer.json()["message"]


# -- the OpenAPI document ---------------------------------------------------------------------------------------


def test_the_openapi_document_describes_exactly_the_mounted_routes(api):
    answer = api.get(f"{PREFIX}/openapi.json")
    assert answer.status_code == 200
    spec = answer.json()
    assert spec == json.loads(json.dumps(openapi())) and spec["openapi"].startswith("3.1")
    mount = next(r for r in api.app.routes if isinstance(r, Mount) and r.path == PREFIX)  # type: ignore[attr-defined]
    mounted = {(PREFIX + r.path, m.lower()) for r in mount.routes if isinstance(r, Route)
               for m in r.methods or () if m != "HEAD"}  # fmt: skip
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert mounted == documented and len(mounted) == 6 * 3 + 6

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    names = {f"#/components/schemas/{name}" for name in spec["components"]["schemas"]}
    assert set(refs(spec)) <= names
    secret = spec["components"]["schemas"]["Endpoint"]["properties"]["secret"]
    assert secret["pattern"].startswith("^env:")


# -- reading --------------------------------------------------------------------------------------------------


def test_items_are_read_from_the_file_with_its_etag_and_secrets_as_references(api, config_file):
    listed = api.get(f"{PREFIX}/systems")
    assert listed.status_code == 200
    assert listed.headers["etag"] == document.etag_of(config_file.read_bytes())
    assert [s["id"] for s in listed.json()["items"]] == ["shop", "other"]
    one = api.get(f"{PREFIX}/systems/shop")
    assert one.json()["credentials"] == {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}
    assert one.headers["etag"] == listed.headers["etag"]
    assert_no_secret(listed.text + one.text)
    missing = api.get(f"{PREFIX}/integrations/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_a_literal_secret_written_in_the_file_by_hand_is_never_shown(api, config_file):
    text = config_file.read_text() + "\n[integrations.settings]\nlimit = inf\n"
    text += '\n[integrations.notify]\nurls = ["json://user:pa55word@hooks.example/x"]\n'
    config_file.write_text(text)
    answer = api.get(f"{PREFIX}/integrations/hooks-to-other")
    assert answer.status_code == 200
    assert "pa55word" not in answer.text and answer.json()["notify"]["urls"] == [document.HIDDEN]
    assert answer.json()["settings"] == {"limit": "inf"}  # TOML's inf, which JSON has not


def test_unknown_routes_and_methods_answer_json(api):
    assert api.get(f"{PREFIX}/nothing").json()["error"] == "not_found"
    answer = api.post(f"{PREFIX}/endpoints/shop-hooks", json={})
    assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"


# -- changing -------------------------------------------------------------------------------------------------

NEW_ENDPOINT = {"id": "shop2", "kind": "woocommerce", "secret": "env:T_HOOK", "max_body_bytes": 65536}


def test_a_created_endpoint_is_written_with_the_files_comments_kept(api, config_file):
    tag = etag(api)
    answer = api.post(f"{PREFIX}/endpoints", json=NEW_ENDPOINT, headers={"if-match": tag})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["item"] == NEW_ENDPOINT and body["reload"] == {"status": "applied", "problems": []}
    assert api.app.state.config.endpoint("shop2") is not None  # live at once (gateway/live.py)
    assert answer.headers["location"] == f"{PREFIX}/endpoints/shop2"
    text = config_file.read_text()
    assert answer.headers["etag"] == body["etag"] == document.etag_of(text.encode())
    assert all(comment in text for comment in COMMENTS)
    assert tomllib.loads(text)["endpoints"][1] == NEW_ENDPOINT
    assert text.index("shop2") < text.index("# the shop's API")  # in its section, before the next one's comment
    assert check_file(config_file)[1] == []
    assert api.get(f"{PREFIX}/endpoints/shop2").json() == NEW_ENDPOINT
    assert not [p for p in config_file.parent.iterdir() if p.name != config_file.name]  # no temporary file left


def test_a_change_needs_the_current_etag(api, config_file):
    before = config_file.read_bytes()
    blind = api.post(f"{PREFIX}/endpoints", json=NEW_ENDPOINT)
    assert blind.status_code == 428 and blind.json()["error"] == "precondition_required"
    tag = etag(api)
    config_file.write_text(config_file.read_text() + "# edited by hand meanwhile\n")
    stale = api.patch(f"{PREFIX}/integrations/hooks-to-other", json={"enabled": False}, headers={"if-match": tag})
    assert stale.status_code == 409 and stale.json()["error"] == "changed"
    assert config_file.read_bytes() == before + b"# edited by hand meanwhile\n"


def test_a_literal_secret_is_refused_naming_its_key_never_echoing_it(api, config_file):
    before = config_file.read_bytes()
    tag = etag(api)
    item = {**NEW_ENDPOINT, "secret": "plain-s3cret-value"}
    answer = api.post(f"{PREFIX}/endpoints", json=item, headers={"if-match": tag})
    assert answer.status_code == 422 and answer.json()["error"] == "literal_secret"
    assert "secret" in answer.json()["message"] and "plain-s3cret-value" not in answer.text
    system = {"credentials": {"consumer_secret": "cs_live_123"}}
    answer = api.patch(f"{PREFIX}/systems/shop", json=system, headers={"if-match": tag})
    assert answer.status_code == 422 and "credentials.consumer_secret" in answer.json()["message"]
    assert "cs_live_123" not in answer.text
    assert config_file.read_bytes() == before


def test_a_change_that_makes_the_config_invalid_is_refused_with_key_paths_and_the_file_untouched(api, config_file):
    before = config_file.read_bytes()
    tag = etag(api)
    item = {"id": "bad", "source": "shop-hooks", "target": "nowhere", "flows": ["orders"]}
    answer = api.post(f"{PREFIX}/integrations", json=item, headers={"if-match": tag})
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_config"
    assert "integrations[1].target: 'nowhere' is not a system" in answer.json()["problems"]
    unknown = api.put(f"{PREFIX}/endpoints/shop-hooks", json={**NEW_ENDPOINT, "id": "shop-hooks", "colour": "red"},
                      headers={"if-match": tag})  # fmt: skip
    assert unknown.status_code == 422 and "endpoints[0].colour: unknown key" in unknown.json()["problems"]
    assert config_file.read_bytes() == before
    assert [p.name for p in config_file.parent.iterdir()] == [config_file.name]


def test_patch_merges_and_keeps_the_items_comments(api, config_file):
    answer = api.patch(f"{PREFIX}/integrations/hooks-to-other", json={"enabled": False, "settings": {"a": 1}},
                       headers={"if-match": etag(api), "content-type": "application/merge-patch+json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["item"] == {"id": "hooks-to-other", "source": "shop-hooks", "target": "other",
                                     "flows": ["orders"], "enabled": False, "settings": {"a": 1}}  # fmt: skip
    text = config_file.read_text()
    assert 'flows = ["orders"]  # only orders' in text and all(c in text for c in COMMENTS)
    removed = api.patch(f"{PREFIX}/integrations/hooks-to-other", json={"settings": None},
                        headers={"if-match": answer.headers["etag"]})  # fmt: skip
    assert removed.status_code == 200 and "settings" not in tomllib.loads(config_file.read_text())["integrations"][0]


def test_put_replaces_an_item_and_its_id_cannot_change(api, config_file):
    tag = etag(api)
    item = {"id": "other", "kind": "woocommerce", "base_url": "http://127.0.0.1:10",
            "credentials": {"consumer_key": "env:T_KEY", "consumer_secret": "env:T_SECRET"}}  # fmt: skip
    renamed = api.put(f"{PREFIX}/systems/other", json={**item, "id": "else"}, headers={"if-match": tag})
    assert renamed.status_code == 422
    nulls = api.put(f"{PREFIX}/systems/other", json={**item, "base_url": None}, headers={"if-match": tag})
    assert nulls.status_code == 422 and "base_url" in nulls.json()["problems"][0]
    answer = api.put(f"{PREFIX}/systems/other", json=item, headers={"if-match": tag})
    assert answer.status_code == 200, answer.text
    text = config_file.read_text()
    assert tomllib.loads(text)["systems"][1] == item
    assert 'base_url = "http://127.0.0.1:10"   # the same sandbox' in text  # a changed value keeps its comment
    assert all(c in text for c in COMMENTS)


def test_deleting_a_system_still_named_is_refused_naming_what_names_it(api, config_file):
    tag = etag(api)
    answer = api.delete(f"{PREFIX}/systems/shop", headers={"if-match": tag})
    assert answer.status_code == 409 and answer.json()["error"] == "referenced"
    assert "endpoint 'shop-hooks' (system)" in answer.json()["message"]
    answer = api.delete(f"{PREFIX}/systems/other", headers={"if-match": tag})
    assert answer.status_code == 409 and "integration 'hooks-to-other' (target)" in answer.json()["message"]
    gone = api.delete(f"{PREFIX}/integrations/hooks-to-other", headers={"if-match": tag})
    assert gone.status_code == 200 and gone.json()["item"] is None
    gone = api.delete(f"{PREFIX}/systems/other", headers={"if-match": gone.headers["etag"]})
    assert gone.status_code == 200
    data = tomllib.loads(config_file.read_text())
    assert [s["id"] for s in data["systems"]] == ["shop"] and "integrations" not in data
    assert check_file(config_file)[1] == []


def test_a_successful_write_is_applied_through_the_gateways_reload_hook(api, config_file):
    calls: list[str] = []
    api.app.state.reload_config = lambda: calls.append(config_file.read_text()) or []  # type: ignore[attr-defined]
    answer = api.post(f"{PREFIX}/endpoints", json=NEW_ENDPOINT, headers={"if-match": etag(api)})
    assert answer.json()["reload"] == {"status": "applied", "problems": []}
    assert len(calls) == 1 and "shop2" in calls[0]  # called after the file was written
    api.app.state.reload_config = lambda: ["systems[0]: refused"]  # type: ignore[attr-defined]
    answer = api.delete(f"{PREFIX}/endpoints/shop2", headers={"if-match": answer.headers["etag"]})
    assert answer.status_code == 200 and answer.json()["reload"] == {
        "status": "refused",
        "problems": ["systems[0]: refused"],
    }


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "malformed_json"),
        (b"\xff\xfe", {"content-type": "application/json"}, 400, "malformed_json"),
        (b"id=x", {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (b"[1, 2]", {"content-type": "application/json"}, 422, "invalid_body"),
        (b'{"id": 7, "kind": "woocommerce"}', {"content-type": "application/json"}, 422, "invalid_body"),
        (b"[" * 100_000, {"content-type": "application/json"}, 400, "malformed_json"),
        (b'{"id": "x", "n": NaN}', {"content-type": "application/json"}, 400, "malformed_json"),
        (b" " * (1024 * 1024 + 1), {"content-type": "application/json"}, 413, "too_large"),
    ],
    ids=["malformed", "not-utf8", "form", "array", "id-not-a-string", "deep", "nan", "too-large"],
)
def test_bad_bodies_are_clear_errors(api, config_file, content, headers, status, error):
    before = config_file.read_bytes()
    answer = api.post(f"{PREFIX}/endpoints", content=content, headers={**headers, "if-match": etag(api)})
    assert answer.status_code == status and answer.json()["error"] == error
    assert config_file.read_bytes() == before


def test_a_file_the_api_cannot_edit_is_said_so(api, config_file):
    config_file.write_text(config_file.read_text().replace("[[integrations]]", "[integrations]"))
    item = {"id": "x", "source": "shop-hooks", "target": "other", "flows": ["orders"]}
    answer = api.post(f"{PREFIX}/integrations", json=item, headers={"if-match": "*"})
    assert answer.status_code == 409 and "[[integrations]]" in answer.json()["message"]
    config_file.write_text("[[endpoints]\n")
    answer = api.get(f"{PREFIX}/endpoints")
    assert answer.status_code == 409 and "not valid TOML" in answer.json()["message"]


def test_without_a_config_path_the_file_calls_say_so(config_file, redis_url):
    with client_for(config_file, redis_url, None) as client:
        client.headers.update(AUTH)
        for answer in (client.get(f"{PREFIX}/endpoints"),
                       client.post(f"{PREFIX}/endpoints", json=NEW_ENDPOINT, headers={"if-match": "*"})):  # fmt: skip
            assert answer.status_code == 503 and answer.json()["error"] == "no_config_file"
            assert "--config" in answer.json()["message"]
        checked = client.post(f"{PREFIX}/config/validate", json={"toml": config_file.read_text()})
        assert checked.status_code == 200 and checked.json() == {"valid": True, "problems": []}


# -- validating -------------------------------------------------------------------------------------------------


def test_validate_reports_what_config_check_reports_and_changes_nothing(api, config_file):
    before = config_file.read_bytes()
    data = tomllib.loads(config_file.read_text())
    data["integrations"][0]["target"] = "nowhere"
    data["endpoints"][0]["kind"] = "nokind"
    answer = api.post(f"{PREFIX}/config/validate", json={"document": data})
    assert answer.status_code == 200
    result = answer.json()
    bad = config_file.parent / "bad.toml"
    bad.write_text(tomlkit.dumps(data))
    assert result["valid"] is False and result["problems"] == check_file(bad)[1] != []
    bad.unlink()
    change = {"op": "create", "section": "integrations",
              "item": {"id": "x", "source": "shop-hooks", "target": "other", "flows": ["teleport"]}}  # fmt: skip
    answer = api.post(f"{PREFIX}/config/validate", json={"change": change})
    assert answer.json()["valid"] is False and answer.json()["problems"][0].startswith("integrations[1].flows[0]")
    assert answer.headers["etag"] == document.etag_of(before)
    ok = api.post(
        f"{PREFIX}/config/validate", json={"change": {**change, "item": {**change["item"], "flows": ["orders"]}}}
    )
    assert ok.json() == {"valid": True, "problems": []}
    broken = api.post(f"{PREFIX}/config/validate", json={"toml": "[[endpoints]\nid = 1"})
    assert broken.json()["valid"] is False and "not valid TOML" in broken.json()["problems"][0]
    assert str(Path("/tmp")) not in broken.text  # the temporary file is not named
    secret = api.post(f"{PREFIX}/config/validate", json={"document": {"endpoints": [{**NEW_ENDPOINT, "secret": "x"}]}})
    assert secret.status_code == 422 and "endpoints[0].secret" in secret.json()["problems"][0]
    two = api.post(f"{PREFIX}/config/validate", json={"toml": CONFIG, "document": {}})
    assert two.status_code == 422 and two.json()["error"] == "invalid_body"
    assert config_file.read_bytes() == before


# -- operations -------------------------------------------------------------------------------------------------


def test_health_and_activity_of_an_integration(api, rconn):
    log = ActivityLog(rconn)
    for number, outcome in enumerate(["created", "failed", "updated"]):
        log.record(Activity(integration="hooks-to-other", flow="orders", topic="order.created",
                            resource_id=str(number), outcome=outcome, received_at=1e9 + number,
                            done_at=1e9 + number + 0.5, reason="mail jan@example.nl" if outcome == "failed" else "",
                            job_id=f"job-{number}"))  # fmt: skip
    health = api.get(f"{PREFIX}/integrations/hooks-to-other/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["integration"] == "hooks-to-other" and body["switched_off"] is None and body["failed_jobs"] == 0
    assert body["last_event"]["resource_id"] == "2" and body["inbox"]["depth"] == 0
    activity = api.get(f"{PREFIX}/integrations/hooks-to-other/activity", params={"limit": 2})
    assert [e["resource_id"] for e in activity.json()["entries"]] == ["2", "1"]
    failed = api.get(f"{PREFIX}/integrations/hooks-to-other/activity", params={"outcome": "failed"}).json()
    assert [e["job_id"] for e in failed["entries"]] == ["job-1"]
    assert "jan@example.nl" not in json.dumps(failed)
    assert api.get(f"{PREFIX}/integrations/hooks-to-other/activity", params={"limit": "x"}).status_code == 422
    assert api.get(f"{PREFIX}/integrations/hooks-to-other/activity", params={"outcome": "won"}).status_code == 422
    assert api.get(f"{PREFIX}/integrations/nope/health").status_code == 404


def test_replay_requeues_failed_jobs(api, config_file, rconn, redis_url):
    from workers.worker import run_worker

    queue = Queue("koppel", connection=rconn, serializer=JSONSerializer)
    job = queue.enqueue("workers.jobs.process_event", {"not": "an envelope"}, meta={"endpoint": "shop-hooks"})
    run_worker(registry.load(config_file), redis_url, burst=True)
    assert job.id in queue.failed_job_registry.get_job_ids()
    assert api.get(f"{PREFIX}/integrations/hooks-to-other/health").json()["failed_jobs"] == 1
    answer = api.post(f"{PREFIX}/replay", json={"integration": "hooks-to-other"})
    assert answer.status_code == 200 and answer.json() == {"requeued": [job.id], "missing": [], "where": {}}
    assert job.id not in queue.failed_job_registry.get_job_ids() and job.id in queue.job_ids
    again = api.post(f"{PREFIX}/replay", json={"jobs": [job.id]})
    assert again.json()["requeued"] == [] and again.json()["missing"] == [job.id]
    assert again.json()["where"][job.id]["state"] == "queued"  # where it is instead: requeued by the first
    assert api.post(f"{PREFIX}/replay", json={"jobs": [job.id], "all": True}).status_code == 422
    assert api.post(f"{PREFIX}/replay", json={"integration": "nope"}).status_code == 404


def test_endpoints_sync_against_the_woocommerce_sandbox(tmp_path, env, redis_url):
    sandbox = create_sandbox(consumer_key=ENV["T_KEY"], consumer_secret=ENV["T_SECRET"])
    live = serve(sandbox)
    try:
        path = write(tmp_path / "k.toml", live.url)
        with client_for(path, redis_url, path) as client:
            client.headers.update(AUTH)
            dry = client.post(f"{PREFIX}/endpoints/sync", json={"dry_run": True})
            assert dry.status_code == 200, dry.text
            plan = dry.json()["endpoints"][0]
            assert dry.json()["dry_run"] is True and {a["action"] for a in plan["actions"]} == {"create"}
            assert not sandbox.state.sandbox.store.webhooks  # a dry run changes nothing
            done = client.post(f"{PREFIX}/endpoints/sync", content=b"")  # no body: a real sync
            assert done.status_code == 200 and done.json()["failures"] == []
            assert len(done.json()["endpoints"][0]["done"]) == len(plan["actions"])
            assert {h["delivery_url"] for h in sandbox.state.sandbox.store.webhooks.values()} == {
                "http://127.0.0.1:9/webhooks/shop-hooks"
            }
            assert_no_secret(dry.text + done.text)
            unknown = client.post(f"{PREFIX}/endpoints/sync", json={"endpoint": "nope"})
            assert unknown.status_code == 404
    finally:
        live.stop()


def test_redis_away_is_a_503_not_a_500(config_file):
    with client_for(config_file, "redis://127.0.0.1:1/0", config_file) as client:
        answer = client.get(f"{PREFIX}/integrations/hooks-to-other/activity", headers=AUTH)
    assert answer.status_code == 503 and answer.json()["error"] == "unavailable"


# -- the document's edits keep what they do not change (property-based) -----------------------------------------

_keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_scalars = st.one_of(st.integers(-(2**40), 2**40), st.booleans(), st.text(max_size=12),
                     st.floats(allow_nan=False, allow_infinity=False, width=32))  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(_scalars, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=8,
)
_comments = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_=st.dictionaries(_keys, _values, max_size=4), comments=st.lists(_comments, min_size=3, max_size=3),
       changed=st.dictionaries(_keys, _scalars, min_size=1, max_size=3))  # fmt: skip
def test_an_edit_keeps_every_comment_and_byte_it_does_not_change(settings_, comments, changed):
    systems = [{"id": f"s{n}", "kind": "woocommerce", "settings": settings_} for n in range(3)]
    doc = tomlkit.document()
    doc.add(tomlkit.comment(comments[0]))
    doc["gateway"] = {"queue": "koppel"}
    aot = tomlkit.aot()
    for system in systems:
        table = tomlkit.table()
        document.sync(table, system)
        table["id"].comment(comments[1])
        aot.append(table)
    doc["systems"] = aot
    doc["integrations"] = tomlkit.aot()
    doc["integrations"].append(tomlkit.table().add("id", "i").add("source", "s0").add("target", "s1"))
    doc["integrations"][0]["id"].comment(comments[2])
    original = tomlkit.dumps(doc)

    same = tomlkit.parse(original)  # the item written back as read: not a byte changes
    for index, item in enumerate(document.items(same, "systems")):
        document.replace(same, "systems", index, document.plain(item))
    assert tomlkit.dumps(same) == original

    edited = tomlkit.parse(original)
    new_settings = document.merge_patch(settings_, changed)
    document.replace(edited, "systems", 1, {**systems[1], "settings": new_settings})
    document.delete(edited, "systems", 2)
    document.create(edited, "systems", {"id": "s9", "kind": "woocommerce", "settings": changed})
    text = tomlkit.dumps(edited)
    parsed = tomllib.loads(text)
    assert parsed["systems"] == [systems[0], {**systems[1], "settings": new_settings},
                                 {"id": "s9", "kind": "woocommerce", "settings": changed}]  # fmt: skip
    assert parsed["gateway"] == {"queue": "koppel"} and parsed["integrations"] == [
        {"id": "i", "source": "s0", "target": "s1"}
    ]
    for comment in comments:
        assert tomlkit.comment(comment).as_string().strip() in text
    first = tomlkit.dumps(tomlkit.parse(original)["systems"][0])  # an item not touched stays byte for byte
    assert first in text


def test_http_round_trip_of_every_item_changes_no_byte(api, config_file):
    before = config_file.read_bytes()
    for section in document.SECTIONS:
        for item in api.get(f"{PREFIX}/{section}").json()["items"]:
            answer = api.put(f"{PREFIX}/{section}/{item['id']}", json=item, headers={"if-match": etag(api)})
            assert answer.status_code == 200, answer.text
    assert config_file.read_bytes() == before


def test_koppel_serve_passes_the_config_path(monkeypatch, config_file):
    import uvicorn

    from gateway import cli

    seen: dict[str, Any] = {}

    def fake_create_app(config, redis_url, *, config_path=None):
        seen["config_path"] = config_path
        raise KeyboardInterrupt  # stop before serving

    monkeypatch.setattr("gateway.app.create_app", fake_create_app)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert cli.main(["serve", "--config", str(config_file)]) == 130
    assert seen["config_path"] == config_file.resolve()


_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["POST", "PUT", "PATCH"]), section=st.sampled_from(document.SECTIONS),
       body=st.one_of(_json, st.dictionaries(st.sampled_from(["id", "kind", "secret", "settings", "credentials",
                                                              "notify", "flows", "source"]), _json)))  # fmt: skip
def test_no_body_makes_the_api_answer_5xx_or_leave_a_broken_file(api, config_file, method, section, body):
    path = f"{PREFIX}/{section}" + (
        "" if method == "POST" else f"/{document.items(tomlkit.parse(config_file.read_text()), section)[0]['id']}"
    )
    answer = api.request(method, path, json=body, headers={"if-match": etag(api)})
    assert answer.status_code < 500, answer.text
    assert check_file(config_file)[1] == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["gateway", "endpoints", "systems", "integrations", "x"]), _json))
def test_no_document_makes_validate_answer_5xx(api, body):
    answer = api.post(f"{PREFIX}/config/validate", json={"document": body})
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["valid"] is (answer.json()["problems"] == [])


def test_sections_written_as_inline_arrays_are_edited_in_place():
    doc = document.parse(
        'endpoints = [\n  {id = "a", kind = "woocommerce", secret = "env:A"},  # the first\n]\n'
        'systems = [{id = "s", kind = "woocommerce", credentials = {k = "env:K"}}]  # one line\n'
    )
    document.create(doc, "endpoints", {"id": "b", "kind": "woocommerce", "secret": "env:B", "x": {"y": [{"z": 1}]}})
    document.replace(doc, "systems", 0, {"id": "s", "kind": "woocommerce", "credentials": {"k": "env:K2"}})
    text = tomlkit.dumps(doc)
    assert "# the first" in text and "# one line" in text and "[[" not in text
    assert tomllib.loads(text) == {
        "endpoints": [
            {"id": "a", "kind": "woocommerce", "secret": "env:A"},
            {"id": "b", "kind": "woocommerce", "secret": "env:B", "x": {"y": [{"z": 1}]}},
        ],
        "systems": [{"id": "s", "kind": "woocommerce", "credentials": {"k": "env:K2"}}],
    }
    document.delete(doc, "endpoints", 0)
    assert [e["id"] for e in tomllib.loads(tomlkit.dumps(doc))["endpoints"]] == ["b"]
