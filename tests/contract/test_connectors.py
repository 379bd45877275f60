"""The contract every registered connector keeps, run over `registry.kinds()`: a new connector folder is
picked up by these tests without an edit here. Each connector is driven through its own sandbox's
harness (`Connector.sandbox`, connectors/sandboxkit/harness.py); a test a connector cannot take yet
(no sandbox, no target, a sandbox that sends no webhooks) is skipped naming why.

- its Settings model, handler and source/target declarations hang together;
- `normalise` is total over its realistic fixtures (tests/fixtures/<kind>/) for every flow it reads;
- its client against its sandbox: refused credentials are AuthFailed, many records are looked up at
  once, an unknown record is NotFound, a 429 storm is waited out, a polled stream is read across its
  pages and resumed from its cursor;
- writes are idempotent on replay: each flow it takes, run twice on the same record, writes once;
- the webhooks its sandbox sends verify with its own handler and become events of resources it reads.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors import registry
from connectors.contract import Canonical, Connector, Source, Target
from connectors.sandboxkit.harness import Harness
from gateway.config import Endpoint, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import AuthFailed, NotFound
from gateway.model import Customer, Order, OrderLine, Product
from gateway.stack import LiveServer, serve
from handlers import handler_for
from handlers.base import Incoming
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures"
FLOW_OF_FIXTURE = {"sales_order": "orders", "order": "orders", "customer": "customers", "account": "customers",
                   "product_variable": "products", "item": "products", "stock": "stock"}  # fmt: skip
"""Which flow a fixture file feeds, by the start of its name (lists such as contacts.json feed none)."""

KINDS = registry.kinds()


def connector(kind: str) -> Connector:
    return registry.get(kind)


def harness(kind: str) -> Harness:
    path = connector(kind).sandbox
    if path is None:
        pytest.skip(f"{kind} has no sandbox yet")
    found: Harness = registry.resolve(path)
    return found


def fixtures(kind: str) -> list[tuple[str, Path]]:
    found = []
    for path in sorted((FIXTURES / kind).glob("*.json")):
        flow = next((f for prefix, f in FLOW_OF_FIXTURE.items() if path.stem.startswith(prefix)), None)
        if flow is not None:
            found.append((flow, path))
    return found


# -- declarations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_connector_declares_what_it_gives_and_takes_coherently(kind):
    found = connector(kind)
    assert found.kind == kind and found.title
    assert found.source is not None or found.target is not None
    if found.source is not None:
        assert found.source.kind == kind and found.reads
    if found.target is not None:
        assert found.target.kind == kind and found.writes and found.target.documents
    if found.handler is not None:
        assert callable(handler_for(kind))
    assert found.settings.model_json_schema()["type"] == "object"


@pytest.mark.parametrize("kind", KINDS)
def test_normalise_is_total_over_realistic_fixtures(kind):
    source = connector(kind).source
    if source is None:
        pytest.skip(f"{kind} is not a source")
    cases = [(flow, path) for flow, path in fixtures(kind) if flow in source.reads()]
    if not cases:
        pytest.skip(f"no fixtures for {kind} in tests/fixtures/{kind}/")
    reader = source(None, None)
    expected = {"orders": Order, "customers": Customer, "products": Product}
    for flow, path in cases:
        record = reader.normalise(flow, json.loads(path.read_text(encoding="utf-8")))
        assert isinstance(record, expected.get(flow, object)), path.name
        assert record.source == kind, path.name


# -- the client against its sandbox -------------------------------------------------------------------------


@dataclass
class Sandboxed:
    kind: str
    harness: Harness
    live: LiveServer
    http: httpx.Client
    conn: redis.Redis

    def runtime(self, *, valid: bool = True, integrations: list[dict[str, Any]] | None = None,
                extra_endpoints: list[dict[str, Any]] | None = None) -> runtime.Runtime:  # fmt: skip
        entry, environ = self.harness.system(self.live.url, valid)
        config = parse_config(
            {"endpoints": extra_endpoints or [], "systems": [entry], "integrations": integrations or []},
            environ={**environ, "CONTRACT_HOOK": "hook-secret"},
            kinds=registry.kinds(),
        )
        if valid:
            self.harness.connect(self.live.url, self.http, self.conn, entry["id"])
        return runtime.Runtime(config=config, connection=self.conn)

    def target(self, rt: runtime.Runtime) -> Target:
        return rt.target(rt.config.systems[0].id)


@pytest.fixture
def sandboxed(request: pytest.FixtureRequest, rconn: redis.Redis) -> Iterator[Sandboxed]:
    kind = request.param
    found = harness(kind)
    live = serve(found.app(), name=f"{kind} sandbox")
    try:
        with httpx.Client(timeout=30) as http:
            yield Sandboxed(kind, found, live, http, rconn)
    finally:
        live.stop()


def targets() -> list[str]:
    return [kind for kind in KINDS if connector(kind).target is not None]


@pytest.mark.parametrize("sandboxed", targets(), indirect=True)
def test_refused_credentials_are_auth_failed(sandboxed):
    rt = sandboxed.runtime(valid=False)
    try:
        with pytest.raises(AuthFailed):
            sandboxed.target(rt).find_items(["CONTRACT-1"])
    finally:
        rt.close()


@pytest.mark.parametrize("sandboxed", targets(), indirect=True)
def test_many_records_are_looked_up_at_once_and_the_missing_left_out(sandboxed):
    if sandboxed.harness.seed_items is None:
        pytest.skip(f"the {sandboxed.kind} sandbox cannot seed items")
    skus = [f"CONTRACT-{n:03d}" for n in range(130)]
    sandboxed.harness.seed_items(sandboxed.live.url, sandboxed.http, skus)
    rt = sandboxed.runtime()
    try:
        found = sandboxed.target(rt).find_items([*skus, "CONTRACT-NONE"])
    finally:
        rt.close()
    assert sorted(found) == skus and len(set(found.values())) == len(skus)


@pytest.mark.parametrize("sandboxed", targets(), indirect=True)
def test_an_unknown_record_is_not_found(sandboxed):
    if "products" not in connector(sandboxed.kind).writes:
        pytest.skip(f"{sandboxed.kind} takes no products: it has no record to update")
    rt = sandboxed.runtime()
    try:
        with pytest.raises(NotFound):
            sandboxed.target(rt).update_product(sandboxed.harness.missing_id(), {"description": "x"})
    finally:
        rt.close()


@pytest.mark.parametrize("sandboxed", targets(), indirect=True)
def test_a_429_storm_is_waited_out(sandboxed):
    rt = sandboxed.runtime()
    try:
        target = sandboxed.target(rt)
        target.find_items(["CONTRACT-WARM"])  # authorised and warm before the storm
        before = target.calls
        fault = {"status": 429, "times": 2, "retry_after": 1}
        sandboxed.http.post(f"{sandboxed.live.url}/sandbox/fail", json=fault).raise_for_status()
        assert target.find_items(["CONTRACT-NONE"]) == {}
        assert target.calls - before >= 3  # two refused, then answered
    finally:
        rt.close()


# -- writes idempotent on replay, through the flows ---------------------------------------------------------


class CanonicalSource(Source):
    """A source whose records are already canonical: the contract's way of feeding any target."""

    kind = "contract"
    title = "Contract"
    resources: ClassVar[Mapping[str, str]] = {"order": "orders", "customer": "customers", "product": "products"}

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        model = {"orders": Order, "customers": Customer, "products": Product}[flow]
        return model.model_validate(record)


@pytest.fixture
def canonical_source() -> Iterator[None]:
    registry.register(Connector(kind="contract", title="Contract", source=CanonicalSource,
                                handler="tests.contract.test_connectors:no_webhooks"))  # fmt: skip
    yield
    registry.unregister("contract")


def no_webhooks(incoming: Incoming, endpoint: Endpoint) -> Any:
    raise AssertionError("the contract source sends no webhooks")


ORDER_LINE = OrderLine(
    sku="CONTRACT-L1",
    name="Line",
    quantity="2",
    unit_price_excl="5.00",
    net_unit_price_excl="5.00",
    total_excl="10.00",
    tax_total="2.10",
    total_incl="12.10",
    tax_rate="21",
)
RECORDS: dict[str, Any] = {
    "customers": Customer(
        source="contract",
        id="c1",
        email="contract@example.com",
        company_name="Contract BV",
        contact={"first_name": "Ann", "last_name": "Smit"},
    ),
    "products": Product(source="contract", id="p1", sku="CONTRACT-P1", name="Contract product", price_excl="10.00"),
    "orders": Order(
        source="contract",
        id="o1",
        number="C-1001",
        status="processing",
        customer=Customer(source="contract", email="order@example.com", contact={"first_name": "Bo"}),
        lines=[ORDER_LINE],
    ),
}
RESOURCE = {"orders": "order", "customers": "customer", "products": "product"}


def writable(kind: str) -> list[tuple[str, str]]:
    target = connector(kind).target
    if target is None:
        return []
    flows = [f for f in ("customers", "products", "orders") if f in target.writes]
    return [(kind, flow) for flow in flows if not (flow == "orders" and "book" not in target.order_modes)]


@pytest.mark.parametrize(("sandboxed", "flow"), [case for kind in KINDS for case in writable(kind)],
                         indirect=["sandboxed"])  # fmt: skip
def test_a_write_replayed_writes_once(sandboxed, flow, canonical_source, monkeypatch):
    if flow == "orders" and sandboxed.harness.seed_items is not None:
        sandboxed.harness.seed_items(sandboxed.live.url, sandboxed.http, ["CONTRACT-L1"])
    system_id = sandboxed.harness.system(sandboxed.live.url, True)[0]["id"]
    rt = sandboxed.runtime(
        extra_endpoints=[{"id": "canonical", "kind": "contract", "secret": "env:CONTRACT_HOOK"}],
        integrations=[{
            "id": "contract", "source": "canonical", "target": system_id, "flows": [flow],
            "settings": {"order_mode": "book"} if flow == "orders" else {},
        }],
    )
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        record = RECORDS[flow].model_dump(mode="json", exclude_computed_fields=True)
        event = Event(f"{RESOURCE[flow]}.updated", RESOURCE[flow], "1", f"k-{uuid.uuid4()}", record)
        envelope = Envelope.wrap(event, source="contract", endpoint="canonical")
        integration = rt.config.integrations[0]
        first = run_event(rt, integration, envelope)
        again = run_event(rt, integration, envelope.model_copy(update={"delivery_key": f"k-{uuid.uuid4()}"}))
        target = sandboxed.target(rt)
        assert first.outcome == "created", first
        assert again.outcome in ("skipped", "updated"), again
        assert again.target_id in ("", first.target_id), again
        if flow == "customers":
            assert target.find_customer("contract@example.com") == first.target_id
        elif flow == "products":
            assert target.find_items(["CONTRACT-P1"]) == {"CONTRACT-P1": first.target_id}
        else:
            document = target.documents[0]
            assert target.find_order(document, "C-1001") == first.target_id
    finally:
        rt.close()


# -- the sandbox's webhooks verify with the connector's handler -----------------------------------------------


def webhook_kinds() -> list[str]:
    return [kind for kind in KINDS if connector(kind).handler is not None]


@pytest.mark.parametrize("sandboxed", webhook_kinds(), indirect=True)
def test_the_sandbox_webhooks_verify_with_the_handler(sandboxed):
    if sandboxed.harness.webhooks is None:
        pytest.skip(f"the {sandboxed.kind} sandbox sends no webhooks yet")
    received: list[Incoming] = []
    lock = threading.Lock()

    async def capture(request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with lock:
            received.append(Incoming(request.method, headers, dict(request.query_params), body))
        return PlainTextResponse("ok")

    receiver = serve(Starlette(routes=[Route("/hook", capture, methods=["POST"])]), name="receiver")
    secret = "c0ffee5ec3e7"  # hex: a Squarespace secret is (its key is the hex-decoded secret)
    try:
        expected = sandboxed.harness.webhooks(sandboxed.live.url, sandboxed.http, f"{receiver.url}/hook", secret)
        deadline = time.monotonic() + 15
        while len(received) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        receiver.stop()
    assert len(received) >= expected
    endpoint = Endpoint.model_validate(
        {"id": "hooks", "kind": sandboxed.kind, "secret": "env:HOOK"}, context={"environ": {"HOOK": secret}}
    )
    source = connector(sandboxed.kind).source
    handler = handler_for(sandboxed.kind)
    events = [event for incoming in received for event in handler(incoming, endpoint).events]
    assert events and all(source is not None and source.flow_of(e.resource) for e in events)
    tampered = received[-1]
    forged_body = sandboxed.harness.forge(tampered.body)
    assert forged_body != tampered.body
    forged = Incoming(tampered.method, tampered.headers, tampered.query, forged_body)
    with pytest.raises(Exception) as refused:
        handler(forged, endpoint)
    assert type(refused.value).__name__ in ("SignatureRejected", "MalformedRequest")


def polled() -> list[str]:
    return [kind for kind in KINDS if connector(kind).source is not None and connector(kind).source.streams]


@pytest.mark.parametrize("sandboxed", polled(), indirect=True)
def test_a_polled_stream_reads_every_change_across_pages_and_resumes_from_its_cursor(sandboxed):
    if sandboxed.harness.seed_items is None or "products" not in connector(sandboxed.kind).source.streams:
        pytest.skip(f"the {sandboxed.kind} sandbox cannot seed a stream of more than a page")
    skus = [f"PAGE-{n:04d}" for n in range(1100)]  # more than a page of any API Koppel polls
    sandboxed.harness.seed_items(sandboxed.live.url, sandboxed.http, skus)
    rt = sandboxed.runtime()
    try:
        source = rt.source(rt.config.systems[0].id)
        stream = source.streams["products"]
        pages = list(source.changes(stream, None))
        keys = [change.delivery_key for changes, _ in pages for change in changes]
        assert len(pages) >= 2 and len(keys) == len(set(keys)) >= len(skus)
        cursor = pages[-1][1]
        # Nothing new since: a source may read an overlap again (WooCommerce), with the same delivery keys.
        again = [c.delivery_key for changes, _ in source.changes(stream, cursor) for c in changes]
        assert set(again) <= set(keys)
    finally:
        rt.close()
