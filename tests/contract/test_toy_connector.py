"""A new connector costs one folder: a toy system defined in this test alone — its webhook handler,
Source, Target and default mappings — registered at run time, takes orders from its own webhooks
through the real gateway, inbox and worker, exactly once, with no edit anywhere outside this file."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pytest

from connectors import registry
from connectors.contract import Canonical, Connector, Source, Target
from gateway.activity import ActivityLog
from gateway.app import create_app
from gateway.config import Endpoint, parse_config
from gateway.envelope import Event
from gateway.errors import SignatureRejected
from gateway.model import Customer, Order, OrderLine
from gateway.stack import serve
from handlers.base import Incoming, Outcome
from workers.worker import run_worker

pytestmark = pytest.mark.integration

BOOKED: dict[str, dict[str, Any]] = {}
CUSTOMERS: dict[str, dict[str, Any]] = {}
ITEMS = {"TOY-1": "item-1", "TOY-2": "item-2"}

ORDER_MAPPING = """
description = "Toy order"
resource = "orders"
record = "order"
default = true

[fields]
customer = { _expr = "$id('account')", _required = true }
reference = { _expr = "number", _type = "string", _required = true }

[fields.lines]
_each = "lines"
item = { _expr = "$id('items', sku)", _required = true }
quantity = { _expr = "quantity", _type = "decimal" }
"""

CUSTOMER_MAPPING = """
description = "Toy customer"
resource = "customers"
record = "customer"
default = true

[fields]
email = { _expr = "email", _required = true }
name = "company_name ?? contact.first_name"
"""


def handle(incoming: Incoming, endpoint: Endpoint) -> Outcome:
    """The toy system signs its webhooks with the bare secret in a header (a toy, not a scheme)."""
    given = incoming.headers.get("x-toy-token", "")
    if not hmac.compare_digest(given.encode(), endpoint.secret.get_secret_value().encode()):
        raise SignatureRejected("x-toy-token does not match", reason="bad_signature")
    ticket = json.loads(incoming.body)
    event = Event("ticket.created", "ticket", str(ticket["id"]), f"ticket:{ticket['id']}:{ticket['rev']}", ticket)
    return Outcome(events=[event])


class ToySource(Source):
    kind = "toy"
    title = "Toy"
    resources: ClassVar[Mapping[str, str]] = {"ticket": "orders"}

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        return Order(
            source="toy",
            id=str(record["id"]),
            number=f"T{record['id']}",
            status="processing",
            customer=Customer(source="toy", email=record["email"], company_name=record.get("company")),
            lines=[OrderLine(sku=sku, quantity=str(quantity)) for sku, quantity in record["lines"].items()],
        )


class ToyTarget(Target):
    kind = "toy"
    title = "Toy"
    writes = frozenset({"orders", "customers"})
    calls_made: ClassVar[int] = 0

    @property
    def calls(self) -> int:
        return ToyTarget.calls_made

    def _call(self) -> None:
        ToyTarget.calls_made += 1

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        self._call()
        return next((key for key, order in BOOKED.items() if order["reference"] == number), None)

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        self._call()
        key = f"order-{len(BOOKED) + 1}"
        BOOKED[key] = dict(payload)
        return key

    def find_customer(self, email: str) -> str | None:
        self._call()
        return next((key for key, c in CUSTOMERS.items() if c["email"] == email), None)

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        self._call()
        key = f"customer-{len(CUSTOMERS) + 1}"
        CUSTOMERS[key] = dict(payload)
        return key

    def update_customer(self, target_id: str, payload: Mapping[str, Any]) -> None:
        self._call()
        CUSTOMERS[target_id] = dict(payload)

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        self._call()
        return {sku: ITEMS[sku] for sku in skus if sku in ITEMS}


@pytest.fixture
def toy() -> Iterator[Connector]:
    BOOKED.clear()
    CUSTOMERS.clear()
    connector = registry.register(
        Connector(
            kind="toy",
            title="Toy",
            source=ToySource,
            target=ToyTarget,
            handler=f"{__name__}:handle",
            mappings={"orders/order": ORDER_MAPPING, "customers/customer": CUSTOMER_MAPPING},
        )
    )
    yield connector
    registry.unregister("toy")


def test_a_connector_defined_in_a_test_takes_orders_through_gateway_and_worker_once(toy, redis_url, rconn):
    config = parse_config(
        {
            "gateway": {"queue": "toy"},
            "endpoints": [{"id": "toy-hooks", "kind": "toy", "secret": "env:TOY_TOKEN"}],
            "systems": [{"id": "toy-erp", "kind": "toy"}],
            "integrations": [{"id": "toy-to-toy", "source": "toy-hooks", "target": "toy-erp", "flows": ["orders"]}],
        },
        environ={"TOY_TOKEN": "t0ken"},
        kinds=registry.kinds(),
    )
    assert registry.config_problems(config) == []
    live = serve(create_app(config, redis_url))
    try:
        with httpx.Client(base_url=live.url, timeout=10) as http:
            ticket = {"id": 7, "rev": 1, "email": "ann@example.com", "company": "Ann BV", "lines": {"TOY-1": 2}}
            body = json.dumps(ticket).encode()
            for _ in range(2):  # the same delivery twice: one event
                assert (
                    http.post("/webhooks/toy-hooks", content=body, headers={"x-toy-token": "t0ken"}).status_code == 202
                )
            assert http.post("/webhooks/toy-hooks", content=body, headers={"x-toy-token": "nope"}).status_code == 401
            replay = json.dumps(ticket | {"rev": 2}).encode()  # a new delivery of the same order
            assert http.post("/webhooks/toy-hooks", content=replay, headers={"x-toy-token": "t0ken"}).status_code == 202
        run_worker(config, redis_url, burst=True)
    finally:
        live.stop()
    assert list(BOOKED.values()) == [
        {"customer": "customer-1", "reference": "T7", "lines": [{"item": "item-1", "quantity": 2}]}
    ]
    assert CUSTOMERS == {"customer-1": {"email": "ann@example.com", "name": "Ann BV"}}
    outcomes = [entry.outcome for entry in ActivityLog(rconn).entries("toy-to-toy")]
    assert outcomes == ["created", "skipped"]


def test_config_check_refuses_a_flow_the_toy_cannot_give_or_take(toy):
    config = parse_config(
        {
            "endpoints": [{"id": "toy-hooks", "kind": "toy", "secret": "env:TOY_TOKEN"}],
            "systems": [{"id": "toy-erp", "kind": "toy"}],
            "integrations": [{"id": "i", "source": "toy-hooks", "target": "toy-erp", "flows": ["stock"]}],
        },
        environ={"TOY_TOKEN": "t0ken"},
        kinds=registry.kinds(),
    )
    assert registry.config_problems(config) == [
        "integrations[0].flows: toy (toy-hooks) cannot give stock",
        "integrations[0].flows: toy (toy-erp) cannot take stock",
    ]


def test_an_unregistered_kind_is_refused_naming_the_known_ones():
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"systems": [{"id": "x", "kind": "toy"}]}, kinds=registry.kinds())
    assert f"systems[0].kind: unknown kind 'toy'; known: {', '.join(registry.kinds())}" in str(info.value)
    assert "businesscentral, exactonline" in str(info.value)


def test_koppel_connectors_lists_a_connector_registered_at_run_time(toy, capsys):
    from gateway.cli import main

    assert main(["connectors", "--json"]) == 0
    rows = {row["kind"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["toy"] == {"kind": "toy", "title": "Toy", "gives": ["orders"], "takes": ["customers", "orders"],
                           "polled": [], "webhooks": True, "oauth": False, "sandbox": False}  # fmt: skip
    assert rows["exactonline"]["oauth"] and rows["woocommerce"]["webhooks"]
