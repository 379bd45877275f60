"""Stock Business Central → Winstore and Exact Online → Winstore: polled levels set as Winstore's stock of
the article in one warehouse (the assumed PostStock), through the three sandboxes over real HTTP
(uvicorn), real Redis, the real poller and the generic stock flow."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from connectors import registry
from connectors.winstore.sandbox.app import PREFIX
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.stack import LiveServer
from tests import pairs_support as pairs
from workers import runtime

pytestmark = pytest.mark.integration

INTEGRATION = {"bc": "bc-to-winstore", "exact": "exact-to-winstore"}
WAREHOUSES = {"branch": 1, "warehouses": [1, 2], "stock_warehouse": 1}
ARTICLES = [
    {"ArtNr": "KOP-TASSE-BL", "Description": "Tasse blauw", "SalesPrice": "12.10", "stock": {"1": 5, "2": 3}},
    {"ArtNr": "KOP-KOF-1KG", "Description": "Koffie 1 kg", "SalesPrice": "24.90", "stock": {"1": 4}},
    {"ArtNr": "KOP-FILTER", "Description": "Filters", "SalesPrice": "3.50", "Gtin": "8712345000024",
     "stock": {"1": 0}},
]  # fmt: skip


def make_config(urls: dict[str, str], winstore: dict[str, Any], integration: dict[str, Any]) -> Config:
    return pairs.pair_config(
        [
            pairs.bc_system(urls["bc"]),
            pairs.exact_system(urls["exact"]),
            pairs.winstore_system(urls["winstore"], **WAREHOUSES | winstore),
        ],
        [
            {"id": "bc-to-winstore", "source": "bc", "target": "winstore", "flows": ["stock"]} | integration,
            {"id": "exact-to-winstore", "source": "exact", "target": "winstore", "flows": ["stock"]}
            | integration,
        ],
    )  # fmt: skip


@dataclass
class Env:
    bc: LiveServer
    exact: LiveServer
    winstore: LiveServer
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime
    bc_ids: dict[str, str] = field(default_factory=dict)
    """{item number: id} of the items seeded in Business Central."""

    def control(self, system: str, action: str, body: dict[str, Any]) -> Any:
        live = {"bc": self.bc, "exact": self.exact, "winstore": self.winstore}[system]
        return self.http.post(f"{live.url}/sandbox/{action}", json=body).raise_for_status().json()

    def bc_items(self, inventory: dict[str, int]) -> None:
        """Items in Business Central with these numbers, their inventory posted (which BC does not timestamp)."""
        new = [sku for sku in inventory if sku not in self.bc_ids]
        if new:
            self.bc_ids |= self.control("bc", "seed/items", {"skus": new})["items"]
        for sku, quantity in inventory.items():
            self.control("bc", "change", {"entity": "items", "id": self.bc_ids[sku], "fields": {"inventory": quantity}})

    def exact_items(self, stock: dict[str, int]) -> dict[str, str]:
        items: dict[str, str] = {}
        for sku, quantity in stock.items():
            items |= self.control("exact", "seed/items", {"skus": [sku], "stock": quantity})["items"]
        return items

    def process_polled(self, system: str) -> list[dict[str, Any]]:
        """Poll the system's stock (the real poller job), then run every queued `process_event` job; the
        integration's result of each."""
        stream = {"bc": "itemInventory", "exact": "StockPositions"}[system]
        return pairs.run_polled(self.conn, self.rt, system, stream, INTEGRATION[system])

    def by_sku(self, system: str) -> dict[str, dict[str, Any]]:
        return {r["number"]: r for r in self.process_polled(system)}

    def winstore_stock(self, sku: str) -> dict[int, str]:
        """{warehouse: level} of the article, as Winstore's GetStock answers."""
        auth = (pairs.WS_USER, pairs.WS_PASSWORD)
        key = pairs.winstore_article_keys(self.http, self.winstore)[sku]
        rows = self.http.get(f"{self.winstore.url}{PREFIX}/GetStock", params={"type": "byArtikelKey", "artkey": key},
                             auth=auth).raise_for_status().json()  # fmt: skip
        return {row["Warehouse"]: row["Stock"] for row in rows}

    def stock_posts(self) -> int:
        counters = self.http.get(f"{self.winstore.url}/sandbox/counters").raise_for_status().json()
        return int(counters["by_endpoint"].get("POST PostStock", 0))


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    given = getattr(request, "param", {})
    with (
        pairs.bc_served() as (bc, _),
        pairs.exact_served() as (exact, _),
        pairs.winstore_served(ARTICLES) as winstore,
        httpx.Client(timeout=10) as http,
    ):
        urls = {"bc": bc.url, "exact": exact.url, "winstore": winstore.url}
        config = make_config(urls, given.get("winstore", {}), given.get("integration", {}))
        with pairs.installed(config, rconn, monkeypatch) as rt:
            pairs.authorise_exact(http, exact, rconn)
            yield Env(bc, exact, winstore, http, rconn, rt)


# -- Business Central → Winstore ----------------------------------------------------------------------------


def test_bc_inventory_becomes_the_articles_level_in_the_stock_warehouse(env):
    env.bc_items({"KOP-TASSE-BL": 12})
    [result] = env.process_polled("bc")
    assert (result["outcome"], result["number"], result["reason"]) == ("updated", "KOP-TASSE-BL", "stock 5 → 12")
    assert env.winstore_stock("KOP-TASSE-BL") == {1: "12", 2: "3"}  # warehouse 2 keeps its own
    env.bc_items({"KOP-TASSE-BL": 9})  # a sale posted in BC
    [later] = env.process_polled("bc")
    assert (later["outcome"], later["reason"]) == ("updated", "stock 12 → 9")
    assert env.winstore_stock("KOP-TASSE-BL") == {1: "9", 2: "3"}


def test_a_bc_level_winstore_holds_already_is_not_written(env):
    env.bc_items({"KOP-KOF-1KG": 4})
    [result] = env.process_polled("bc")
    assert (result["outcome"], result["reason"]) == ("skipped", "Winstore already has 4")
    assert env.stock_posts() == 0


def test_a_bc_item_winstore_lacks_is_skipped_with_a_warning_naming_it(env, caplog):
    env.bc_items({"BC-ONLY-1": 7, "KOP-FILTER": 30})
    with caplog.at_level(logging.WARNING, logger="koppel.flows.stock"):
        results = env.by_sku("bc")
    assert (results["BC-ONLY-1"]["outcome"], results["BC-ONLY-1"]["reason"]) == (
        "skipped", "SKU BC-ONLY-1 does not exist in Winstore")  # fmt: skip
    assert results["KOP-FILTER"]["outcome"] == "updated"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["stock of SKU BC-ONLY-1 not sent: winstore system winstore has no product with it"]
    assert env.stock_posts() == 1


MINUS_TWO = {"amount": {"_expr": "$round($sub(available, 2), 0)", "_type": "integer", "_required": True}}


@pytest.mark.parametrize("env", [{"integration": {"mappings": {"stock": {"winstore": MINUS_TWO}}}}], indirect=True)
def test_the_formula_is_the_integrations_mapping(env):
    env.bc_items({"KOP-TASSE-BL": 12})
    env.exact_items({"KOP-KOF-1KG": 10})
    assert env.process_polled("bc")[0]["reason"] == "stock 5 → 10"  # two kept back
    assert env.process_polled("exact")[0]["reason"] == "stock 4 → 8"
    assert env.winstore_stock("KOP-TASSE-BL")[1] == "10" and env.winstore_stock("KOP-KOF-1KG")[1] == "8"


@pytest.mark.parametrize("env", [{"winstore": {"stock_warehouse": 2}}], indirect=True)
def test_the_level_goes_into_the_chosen_warehouse(env):
    env.bc_items({"KOP-TASSE-BL": 12})
    [result] = env.process_polled("bc")
    assert (result["outcome"], result["reason"]) == ("updated", "stock 3 → 12")
    assert env.winstore_stock("KOP-TASSE-BL") == {1: "5", 2: "12"}


@pytest.mark.parametrize("env", [{"winstore": {"stock_warehouse": None}}], indirect=True)
def test_without_a_warehouse_to_write_the_event_fails_naming_the_setting(env):
    env.bc_items({"KOP-TASSE-BL": 12})
    problems = registry.config_problems(env.rt.config)
    assert problems == ["integrations[0].target: winstore takes stock into one warehouse: set "
                        "systems.settings.stock_warehouse (the warehouse number)",
                        "integrations[1].target: winstore takes stock into one warehouse: set "
                        "systems.settings.stock_warehouse (the warehouse number)"]  # fmt: skip
    with pytest.raises(PermanentError, match=r"systems\.winstore\.settings\.stock_warehouse: required to write stock"):
        env.process_polled("bc")
    assert env.winstore_stock("KOP-TASSE-BL") == {1: "5", 2: "3"}


# -- Exact Online → Winstore ----------------------------------------------------------------------------------


def test_exact_stock_less_its_reservations_becomes_the_winstore_level(env):
    items = env.exact_items({"KOP-TASSE-BL": 20})
    order = {"OrderedBy": env.control("exact", "seed", {"entity": "crm/Accounts", "records": [{"Name": "Jörg"}]})
             ["ids"][0], "SalesOrderLines": [{"Item": items["KOP-TASSE-BL"], "Quantity": 3}]}  # fmt: skip
    env.control("exact", "seed", {"entity": "salesorder/SalesOrders", "records": [order]})  # reserves 3
    [result] = env.process_polled("exact")
    assert (result["outcome"], result["reason"]) == ("updated", "stock 5 → 17")  # 20 on hand minus 3 reserved
    assert env.winstore_stock("KOP-TASSE-BL") == {1: "17", 2: "3"}


def test_an_exact_level_winstore_holds_is_not_written_and_a_count_is(env):
    env.exact_items({"KOP-KOF-1KG": 4})
    [same] = env.process_polled("exact")
    assert (same["outcome"], same["reason"]) == ("skipped", "Winstore already has 4")
    assert env.stock_posts() == 0
    env.control("exact", "stock", {"sku": "KOP-KOF-1KG", "quantity": 11})  # a stock count in Exact
    [counted] = env.process_polled("exact")
    assert (counted["outcome"], counted["reason"]) == ("updated", "stock 4 → 11")
    assert env.winstore_stock("KOP-KOF-1KG") == {1: "11"}


def test_an_exact_item_winstore_lacks_is_skipped_naming_it_and_a_gtin_finds_its_article(env, caplog):
    env.exact_items({"EXACT-ONLY-1": 5, "8712345000024": 6})
    with caplog.at_level(logging.WARNING, logger="koppel.flows.stock"):
        results = env.by_sku("exact")
    assert (results["EXACT-ONLY-1"]["outcome"], results["EXACT-ONLY-1"]["reason"]) == (
        "skipped", "SKU EXACT-ONLY-1 does not exist in Winstore")  # fmt: skip
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "stock of SKU EXACT-ONLY-1 not sent: winstore system winstore has no product with it"]  # fmt: skip
    assert results["8712345000024"]["outcome"] == "updated"
    assert env.winstore_stock("KOP-FILTER") == {1: "6"}  # the article whose GTIN is Exact's item code


def test_both_pairs_check_clean():
    urls = {"bc": "http://127.0.0.1:1", "exact": "http://127.0.0.1:2", "winstore": "http://127.0.0.1:3"}
    assert registry.config_problems(make_config(urls, {}, {})) == []
    single = make_config(urls, {"warehouses": [2], "stock_warehouse": None}, {})  # the one warehouse read
    assert registry.config_problems(single) == []
