"""Products Winstore → Exact Online (simple): Winstore's articles, polled by date (the real poller), created or
updated as Exact items by article number (Code) through the generic products flow and the default item mapping,
both sandboxes over real HTTP (uvicorn) and real Redis. Winstore has no variants, categories or images; its
VAT rate, brand, article group and unit reach Exact through mapping tables."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import redis

from connectors import registry
from gateway.config import Config
from tests import pairs_support as pairs

pytestmark = pytest.mark.integration

DIVISION = 1234567
INTEGRATION = "winstore-to-exact"
TABLES = {
    "vat_codes": {"entries": {"21": "2", "9": "1"}},
    "features": {"entries": {"brand": "FreeTextField_01", "supplier": "FreeTextField_02", "group": "ItemGroup"}},
    "item_groups": {"entries": {"KOF": "COFFEE"}},
    "units": {"entries": {"zak": "bag"}},
}
COFFEE = {"ArtNr": "KOP-KOF-1KG", "Description": "Koffie 1 kg", "SalesPrice": "24.90", "VatPercentage": "9",
          "Gtin": "8712345000024", "Brand": "Baristo", "SupplierId": "17", "ArticleGroup": "KOF",
          "Unit": "zak"}  # fmt: skip


def make_config(exact_url: str, ws_url: str, settings: dict[str, Any]) -> Config:
    return pairs.pair_config(
        [pairs.exact_system(exact_url, rate_limit={"enabled": False}), pairs.winstore_system(ws_url)],
        [
            {"id": INTEGRATION, "source": "winstore", "target": "exact", "flows": ["products"],
             "settings": settings, "tables": TABLES},
        ],
    )  # fmt: skip


class Env(pairs.ExactWinstore):
    def article(self, **fields: Any) -> None:
        """An article created or changed in Winstore (found by ArtNr)."""
        self.http.post(f"{self.winstore.url}/sandbox/articles", json={"articles": [fields]}).raise_for_status()

    def process_polled(self) -> list[dict[str, Any]]:
        """Poll Winstore's articles (the real poller job), then run every queued `process_event` job."""
        return pairs.run_polled(self.conn, self.rt, "winstore", "articles", INTEGRATION)

    def items(self) -> dict[str, dict[str, Any]]:
        return {r["Code"]: r for r in self.sandbox.store.rows(DIVISION, "logistics/Items")}

    def groups(self) -> dict[str, dict[str, Any]]:
        return {r["Code"]: r for r in self.sandbox.store.rows(DIVISION, "logistics/ItemGroups")}

    def writes(self) -> int:
        counts = self.sandbox.counters.by_endpoint()
        return sum(n for name, n in counts.items() if name.startswith(("POST", "PUT")) and "logistics/Item" in name)


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    settings = getattr(request, "param", {})
    with pairs.exact_and_winstore(Env, partial(make_config, settings=settings), rconn, monkeypatch) as env:
        yield env


def test_an_article_becomes_an_item_with_its_price_excl_vat_vat_code_and_features(env):
    env.article(**COFFEE)
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    item = env.items()["KOP-KOF-1KG"]
    assert result["target_id"] == item["ID"]
    assert (item["Description"], item["Barcode"], item["SalesVatCode"]) == ("Koffie 1 kg", "8712345000024", "1")
    assert item["StandardSalesPrice"] == 22.844  # 24.90 incl. 9 % VAT, as Exact's price excl. VAT
    assert item["IsStockItem"] is True and item["IsSalesItem"] is True
    assert (item["FreeTextField_01"], item["FreeTextField_02"]) == ("Baristo", "17")  # brand, supplier
    assert (item["ItemGroupCode"], item["Unit"]) == ("COFFEE", "bag")
    assert env.groups()["COFFEE"]["Description"] == "KOF"
    assert not item.get("Picture") and not item.get("PictureName")  # Winstore has no images
    assert env.conn.hget("koppel:cache:exact:items", "KOP-KOF-1KG").decode() == item["ID"]  # what orders read


def test_an_article_without_the_optional_fields_is_an_item_all_the_same(env):
    env.article(ArtNr="KOP-TASSE", Description="Tasse blauw", SalesPrice="12.10")
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    item = env.items()["KOP-TASSE"]
    assert (item["Description"], item["StandardSalesPrice"], item["SalesVatCode"]) == ("Tasse blauw", 10.0, "2")
    assert not item.get("ItemGroup") and not item.get("FreeTextField_01") and env.groups() == {}


def test_a_changed_article_updates_its_item_and_an_unchanged_one_costs_no_write(env):
    env.article(**COFFEE)
    [created] = env.process_polled()
    env.article(ArtNr="KOP-KOF-1KG", Description="Koffie bonen 1 kg", SalesPrice="27.25")
    [updated] = env.process_polled()
    assert (updated["outcome"], updated["target_id"]) == ("updated", created["target_id"]), updated
    item = env.items()["KOP-KOF-1KG"]
    assert (item["Description"], item["StandardSalesPrice"]) == ("Koffie bonen 1 kg", 25.0)
    writes = env.writes()
    assert writes >= 2  # the create and the update
    env.article(ArtNr="KOP-KOF-1KG", SupplierArtNr="BAR-1000")  # a new change date; nothing Exact is sent changes
    [again] = env.process_polled()
    assert (again["outcome"], again["calls"], again["reason"]) == ("skipped", 0, "unchanged since Koppel last sent it")
    assert env.writes() == writes and len(env.items()) == 1


@pytest.mark.parametrize("env", [{"product_update": {"prices": False}}], indirect=True)
def test_an_update_leaves_the_groups_switched_off(env):
    env.article(**COFFEE)
    env.process_polled()
    env.article(ArtNr="KOP-KOF-1KG", Description="Koffie bonen 1 kg", SalesPrice="27.25")
    [updated] = env.process_polled()
    assert updated["outcome"] == "updated", updated
    item = env.items()["KOP-KOF-1KG"]
    assert (item["Description"], item["StandardSalesPrice"]) == ("Koffie bonen 1 kg", 22.844)


def test_config_check_accepts_the_pair():
    assert registry.config_problems(make_config("http://127.0.0.1:1", "http://127.0.0.1:2", {})) == []
