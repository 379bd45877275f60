"""Products Winstore → Business Central: Winstore's articles, polled by date (the real poller), created or updated
as BC items by article number through the generic products flow, both sandboxes over real HTTP (uvicorn) and
real Redis: update switches per field group, publish or draft, the article's group, brand, unit and VAT rate
through mapping tables, an unchanged article costing no write."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from connectors import registry
from connectors.businesscentral.sandbox import BusinessCentralSandbox, SandboxConfig
from connectors.businesscentral.sandbox import create_sandbox as bc_sandbox
from connectors.winstore.sandbox import create_sandbox as winstore_sandbox
from connectors.winstore.sandbox.app import PREFIX
from gateway.config import Config, parse_config
from gateway.errors import PermanentError
from gateway.ingest import JOB_FUNC, make_queue
from gateway.stack import LiveServer, serve
from transforms import validate_integration
from workers import runtime
from workers.inbox import pump_for
from workers.jobs import process_event
from workers.pollers import poll

pytestmark = pytest.mark.integration

BC_SECRET = "bc-products-secret"
WS_USER, WS_PASSWORD = "koppel", "winstore-secret"
ENV = {"BC_SECRET": BC_SECRET, "WS_USER": WS_USER, "WS_PASSWORD": WS_PASSWORD}
INTEGRATION = "winstore-to-bc"
TABLES = {
    "features": {"entries": {"group": "itemCategory", "brand": "displayName2"}},
    "item_categories": {"entries": {"KOF": "COFFEE"}},
    "units": {"entries": {"stuk": "PCS", "zak": "BAG"}},
    "product_posting_groups": {"entries": {"9": "FOOD", "21": "RETAIL"}},
}
COFFEE = {"ArtNr": "kop-kof-1kg", "Description": "Koffie 1 kg", "SalesPrice": "24.90", "VatPercentage": "9",
          "Gtin": "8712345000024", "Brand": "Baristo", "ArticleGroup": "KOF", "Unit": "zak",
          "SupplierId": "17"}  # fmt: skip


def make_config(bc_url: str, ws_url: str, settings: dict[str, Any], tables: dict[str, Any]) -> Config:
    sandbox = SandboxConfig()
    return parse_config(
        {
            "systems": [
                {"id": "bc", "kind": "businesscentral", "base_url": bc_url,
                 "credentials": {"client_secret": "env:BC_SECRET"},
                 "settings": {"tenant": sandbox.tenant, "client_id": sandbox.client_id, "company": "CRONUS NL",
                              "login_url": bc_url}},
                {"id": "winstore", "kind": "winstore", "base_url": ws_url + PREFIX,
                 "credentials": {"username": "env:WS_USER", "password": "env:WS_PASSWORD"}},
            ],
            "integrations": [
                {"id": INTEGRATION, "source": "winstore", "target": "bc", "flows": ["products"],
                 "settings": settings, "tables": tables},
            ],
        },
        environ=ENV,
    )  # fmt: skip


@dataclass
class Env:
    bc: LiveServer
    winstore: LiveServer
    sandbox: BusinessCentralSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    def article(self, **fields: Any) -> None:
        """An article created or changed in Winstore (found by ArtNr)."""
        body = {"articles": [fields]}
        self.http.post(f"{self.winstore.url}/sandbox/articles", json=body).raise_for_status()

    def process_polled(self) -> list[dict[str, Any]]:
        """Poll Winstore's articles (the real poller job), then run every queued `process_event` job."""
        poll("winstore", "articles")
        pump_for(self.conn, self.rt.config.gateway).drain(timeout=10)
        queue = make_queue(self.conn, self.rt.config.gateway.queue)
        jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
        events = [job for job in jobs if job is not None and job.func_name == JOB_FUNC]
        for job in events:
            queue.remove(job)
        return [process_event(job.args[0])["integrations"][INTEGRATION] for job in events]

    def items(self) -> dict[str, dict[str, Any]]:
        company = self.sandbox.company()
        return {r["number"]: r for r in self.sandbox.store.records[company]["items"].values()}

    def categories(self) -> dict[str, dict[str, Any]]:
        company = self.sandbox.company()
        return {r["code"]: r for r in self.sandbox.store.records[company]["itemCategories"].values()}

    def change_in_bc(self, number: str, **fields: Any) -> None:
        """What a user does in Business Central."""
        body = {"entity": "items", "id": self.items()[number]["id"], "fields": fields}
        self.http.post(f"{self.bc.url}/sandbox/change", json=body).raise_for_status()

    def patches(self) -> int:
        return sum(n for name, n in self.sandbox.counters.by_endpoint().items() if name.startswith("PATCH items"))


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    given = getattr(request, "param", {})
    bc_app = bc_sandbox(client_secret=BC_SECRET)
    bc = serve(bc_app, name="Business Central sandbox")
    winstore = serve(winstore_sandbox(username=WS_USER, password=WS_PASSWORD), name="Winstore sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            config = make_config(bc.url, winstore.url, given.get("settings", {}), given.get("tables", TABLES))
            rt = runtime.Runtime(config=config, connection=rconn)
            monkeypatch.setattr(runtime, "_runtime", rt)
            try:
                yield Env(bc, winstore, bc_app.state.sandbox, http, rconn, rt)
            finally:
                rt.close()
    finally:
        winstore.stop()
        bc.stop()


def test_an_article_becomes_an_item_with_its_group_brand_unit_and_posting_group_from_tables(env):
    env.article(**COFFEE)
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    item = env.items()["KOP-KOF-1KG"]  # BC upper-cases item numbers; matched case-insensitively
    assert result["target_id"] == item["id"]
    assert (item["displayName"], item["displayName2"], item["gtin"]) == ("Koffie 1 kg", "Baristo", "8712345000024")
    assert (item["unitPrice"], item["priceIncludesTax"]) == (24.9, True)  # a till's price: VAT included
    assert (item["itemCategoryCode"], item["baseUnitOfMeasureCode"]) == ("COFFEE", "BAG")
    assert item["generalProductPostingGroupCode"] == "FOOD"  # by the VAT rate, 9 %
    assert item["blocked"] is False  # product_status "publish", the default
    assert env.categories()["COFFEE"]["displayName"] == "KOF"
    # what the orders flow reads: the item's id under the article number
    assert env.conn.hget("koppel:cache:bc:items", "kop-kof-1kg").decode() == item["id"]


def test_an_article_without_group_or_unit_leaves_those_to_bc(env):
    env.article(ArtNr="KOP-TASSE", Description="Tasse", SalesPrice="12.10")
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    item = env.items()["KOP-TASSE"]
    assert (item["itemCategoryCode"], item["baseUnitOfMeasureCode"]) == ("", "PCS")  # BC's template values
    assert item["generalProductPostingGroupCode"] == "RETAIL"  # 21 %, the sandbox's default VAT rate
    assert env.categories() == {}


def test_an_article_number_longer_than_a_bc_item_number_fails_naming_it_rather_than_being_cut(env):
    env.article(ArtNr="KOP-KOFFIE-ESPRESSO-1KG", Description="Espresso 1 kg", SalesPrice="26.90")  # 23 characters
    with pytest.raises(PermanentError) as failed:
        env.process_polled()
    assert str(failed.value) == (
        "winstore product KOP-KOFFIE-ESPRESSO-1KG: cannot be mapped with winstore-to-bc: products -> "
        "businesscentral (item); number: SKU KOP-KOFFIE-ESPRESSO-1KG is longer than the 20 characters of a "
        "Business Central item number: shorten it in the source, or map number to a code of your own")
    assert env.items() == {}  # not "KOP-KOFFIE-ESPRESSO-" (another 23-character number would be the same item)


def test_a_changed_article_updates_the_item_but_not_what_bc_keeps_by_default(env):
    env.article(**COFFEE)
    [created] = env.process_polled()
    env.change_in_bc("KOP-KOF-1KG", baseUnitOfMeasureCode="KG", generalProductPostingGroupCode="TRADE")
    env.article(
        ArtNr="kop-kof-1kg", Description="Koffie bonen 1 kg", SalesPrice="26.50", Unit="stuk", VatPercentage="21"
    )
    [result] = env.process_polled()
    assert (result["outcome"], result["target_id"]) == ("updated", created["target_id"]), result
    item = env.items()["KOP-KOF-1KG"]
    assert (item["displayName"], item["unitPrice"]) == ("Koffie bonen 1 kg", 26.5)
    # the unit and the posting group are BC's once the item exists (update groups off by default)
    assert (item["baseUnitOfMeasureCode"], item["generalProductPostingGroupCode"]) == ("KG", "TRADE")
    assert len(env.items()) == 1


@pytest.mark.parametrize("env", [{"settings": {"product_update": {"prices": False, "unit": True}}}], indirect=True)
def test_update_switches_turn_field_groups_off_and_on(env):
    env.article(**COFFEE)
    env.process_polled()
    env.article(ArtNr="kop-kof-1kg", Description="Koffie bonen 1 kg", SalesPrice="26.50", Unit="stuk")
    [result] = env.process_polled()
    assert result["outcome"] == "updated", result
    item = env.items()["KOP-KOF-1KG"]
    assert item["displayName"] == "Koffie bonen 1 kg"  # description: on by default
    assert item["unitPrice"] == 24.9  # prices switched off: what BC holds stays
    assert item["baseUnitOfMeasureCode"] == "PCS"  # unit switched on


@pytest.mark.parametrize("env", [{"settings": {"product_status": "draft"}}], indirect=True)
def test_draft_creates_items_blocked_and_an_update_leaves_a_released_item_released(env):
    env.article(**COFFEE)
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    assert env.items()["KOP-KOF-1KG"]["blocked"] is True  # until someone in BC has checked it
    env.change_in_bc("KOP-KOF-1KG", blocked=False)  # released
    env.article(ArtNr="kop-kof-1kg", SalesPrice="26.50")
    [updated] = env.process_polled()
    assert updated["outcome"] == "updated", updated
    item = env.items()["KOP-KOF-1KG"]
    assert (item["unitPrice"], item["blocked"]) == (26.5, False)


def test_an_article_changed_in_no_field_the_mapping_sends_costs_no_write(env):
    env.article(**COFFEE)
    env.process_polled()
    before = env.items()["KOP-KOF-1KG"]["@odata.etag"]
    env.article(ArtNr="kop-kof-1kg", SupplierArtNr="BAR-1000")  # a new change date; nothing BC is sent changes
    [result] = env.process_polled()
    assert (result["outcome"], result["calls"]) == ("skipped", 0), result
    assert result["reason"] == "unchanged since Koppel last sent it"
    assert env.items()["KOP-KOF-1KG"]["@odata.etag"] == before and env.patches() == 0


def test_an_inactive_article_does_not_travel_unless_unpublished_products_are_synced(env):
    env.article(**COFFEE | {"Active": False})
    [result] = env.process_polled()
    assert (result["outcome"], result["reason"]) == ("skipped", "not published (settings.sync_unpublished_products "
                                                                 "= false)")  # fmt: skip
    assert env.items() == {}


@pytest.mark.parametrize("env", [{"settings": {"sync_unpublished_products": True}}], indirect=True)
def test_an_inactive_article_synced_all_the_same_is_created_blocked(env):
    env.article(**COFFEE | {"Active": False})
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    assert env.items()["KOP-KOF-1KG"]["blocked"] is True


def test_config_check_accepts_the_pair_and_names_a_wrong_product_status_or_switch():
    def problems(settings: dict[str, Any]) -> list[str]:
        config = make_config("http://127.0.0.1:1", "http://127.0.0.1:2", settings, TABLES)
        found = registry.config_problems(config)
        return found + validate_integration(config.integrations[0], 0, target_kind="businesscentral")

    assert problems({"product_status": "draft", "product_update": {"status": True}}) == []
    assert problems({"product_status": "hidden"}) == [
        "integrations[0].settings.product_status: must be one of 'publish', 'draft' (new items created released, "
        "or blocked until someone releases them)"
    ]
    assert problems({"product_update": {"units": False}}) == [
        "integrations[0].settings.product_update.units: unknown field group; the groups are description, prices, "
        "barcode, image, item_group, unit, posting_group, status, other"
    ]
