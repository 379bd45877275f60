"""Flows through the sandboxes with Asperion on one side, over real HTTP (uvicorn), real Redis, the real poller
and the generic flows: products Exact Online → Asperion (articles created, then updated, never twice) and
customers Asperion → Exact Online (a company relation and a person become accounts)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from gateway.config import Config
from tests import pairs_support as pairs

pytestmark = pytest.mark.integration


def make_config(exact_url: str, asperion_url: str) -> Config:
    return pairs.pair_config(
        [pairs.exact_system(exact_url), pairs.asperion_system(asperion_url)],
        [
            {"id": "exact-to-asperion", "source": "exact", "target": "asperion", "flows": ["products"],
             "settings": {}},
            {"id": "asperion-to-exact", "source": "asperion", "target": "exact", "flows": ["customers"]},
        ],
    )  # fmt: skip


@pytest.fixture
def env(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[pairs.ExactAsperion]:
    with pairs.exact_and_asperion(pairs.ExactAsperion, make_config, rconn, monkeypatch) as e:
        yield e


def test_exact_items_become_asperion_articles_once_and_a_change_updates_them(env):
    items = [{"Code": "EX-MUG", "Description": "Mok blauw", "StandardSalesPrice": 7.5, "SalesVatCode": "2",
              "IsStockItem": True, "Barcode": "8712345000017"},
             {"Code": "EX-INSTALL", "Description": "Installatie", "StandardSalesPrice": 50, "SalesVatCode": "2",
              "IsStockItem": False}]  # fmt: skip
    ids = env.exact_control("seed", {"entity": "logistics/Items", "records": items})["ids"]
    results = env.process_polled("exact", "Items", "exact-to-asperion")
    assert sorted(r["outcome"] for r in results) == ["created", "created"], results
    articles = env.articles()
    mug = articles["EX-MUG"]
    assert (mug["description"], mug["ean"]) == ("Mok blauw", "8712345000017")
    assert mug["isStockArticle"] is True and articles["EX-INSTALL"]["isStockArticle"] is False
    assert mug["currentStock"] == 0  # read only in Asperion: never written
    # the sales price is read from logistics/Items (the Sync API's Items carry none)
    assert Decimal(str(mug["salesPrice"])) == Decimal("7.5")
    env.asperion_control("update", {"resource": "articles", "id": mug["id"], "fields": {"salesPrice": 9.95}})
    # the item is renamed in Exact: the article is updated, not created again
    renamed = {"entity": "logistics/Items", "id": ids[0], "fields": {"Description": "Mok donkerblauw"}}
    env.exact_control("update", renamed)
    again = env.process_polled("exact", "Items", "exact-to-asperion")
    assert [r["outcome"] for r in again] == ["updated"], again
    after = env.articles()
    assert len(after) == 2 and after["EX-MUG"]["description"] == "Mok donkerblauw"
    # Exact's price is the one that counts (settings.product_update.prices switches that off)
    assert after["EX-MUG"]["id"] == mug["id"] and Decimal(str(after["EX-MUG"]["salesPrice"])) == Decimal("7.5")


def test_asperion_relations_become_exact_accounts_company_or_person(env):
    env.asperion_control("seed", {"resource": "relations", "records": [
        {"relationType": "Company", "companyName": "Bakkerij De Korenaar B.V.", "firstName": "Els",
         "lastName": "de Vries", "email": "inkoop@korenaar.nl", "vatNumber": "NL001234567B01",
         "address": {"street": "Molenstraat", "houseNumber": "12", "postalCode": "3511 AB", "city": "Utrecht",
                     "countryCode": "NL"}},
        {"relationType": "Person", "firstName": "Jan", "lastName": "Jansen", "email": "jan@example.nl",
         "address": {"street": "Dorpsstraat", "houseNumber": "3", "postalCode": "1234 AB", "city": "Ergens",
                     "countryCode": "NL"}},
        {"relationType": "Company", "companyName": "Leverancier BV", "email": "sales@leverancier.nl",
         "isCustomer": False},
    ]})  # fmt: skip
    results = env.process_polled("asperion", "relations", "asperion-to-exact")
    assert sorted(r["outcome"] for r in results) == ["created", "created"], results
    exact = env.rt.target("exact")
    company = exact.find_customer("inkoop@korenaar.nl")
    person = exact.find_customer("jan@example.nl")
    assert company and person and company != person
    assert exact.find_customer("sales@leverancier.nl") is None  # a supplier is no customer
    # polled again with nothing new: the overlap's changes are the same deliveries, processed once
    assert env.process_polled("asperion", "relations", "asperion-to-exact") == []
