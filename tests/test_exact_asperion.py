"""Exact Online ⇄ Asperion end to end, through both sandboxes over real HTTP (uvicorn), real Redis, the real
poller and the generic flows: products Exact → Asperion (types, item group, picture, price, update switches),
customers Asperion → Exact (company or person, tables, addresses compared), and orders both ways as each
document type, with the rules of every order flow and the loop guard between the two."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from connectors.asperion.auth import OAuthApp as AsperionApp
from connectors.asperion.sandbox import connect_sandbox as connect_asperion
from connectors.asperion.sandbox import create_sandbox as asperion_sandbox
from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox
from connectors.exactonline.sandbox import create_sandbox as exact_sandbox
from gateway import keys
from gateway.config import Config, parse_config
from gateway.ingest import JOB_FUNC, make_queue
from gateway.stack import LiveServer, serve
from workers import runtime
from workers.inbox import pump_for
from workers.jobs import process_event
from workers.pollers import poll

pytestmark = pytest.mark.integration

REDIRECT = "https://koppel.example/oauth/exact/callback"
ASPERION_REDIRECT = "https://koppel.example/oauth/asperion/callback"
ENV = {"EXACT_CLIENT_SECRET": "sandbox-secret", "ASPERION_SECRET": "asperion-sandbox-secret"}
SKUS = ["EX-MUG", "EX-KOFFIE"]
ORDER_TABLES = {
    "vat_codes": {"default": "HOOG", "entries": {"NL:21": "HOOG", "9": "LAAG"}},
    "payment_methods": {"entries": {"IDEAL": "iDEAL"}},
    "shipping_methods": {"entries": {"POST": "PostNL"}},
    "cost_centres": {"entries": {"EX-MUG": "CC-SERVIES", "NL": "CC-NL"}},
    "cost_units": {"entries": {"NL": "KD-WEB"}},
    "revenue_accounts": {"default": "8000", "entries": {"NL": "8000", "BE": "8010"}},
}
EXACT_TABLES = {
    "vat_codes": {"default": "2", "entries": {"BE:vat": "7", "21": "2", "9": "1"}},
    "revenue_accounts": {"default": "8000", "entries": {"BE": "8010", "NL": "8000"}},
    "customer_classifications": {"entries": {"company": "B2B", "person": "B2C"}},
    "cost_centres": {"entries": {"EX-MUG": "CC-SERVIES"}},
    "cost_units": {"entries": {"NL": "KD-WEB"}},
}


def make_config(exact_url: str, asperion_url: str, settings: dict[str, dict[str, Any]]) -> Config:
    def integration(ident: str, source: str, target: str, flow: str, tables: dict[str, Any]) -> dict[str, Any]:
        return {"id": ident, "source": source, "target": target, "flows": [flow],
                "settings": settings.get(ident, {}), "tables": tables}  # fmt: skip

    return parse_config(
        {
            "systems": [
                {"id": "exact", "kind": "exactonline", "base_url": exact_url,
                 "credentials": {"client_secret": "env:EXACT_CLIENT_SECRET"},
                 "settings": {"client_id": "koppel-sandbox"}},
                {"id": "asperion", "kind": "asperion", "base_url": asperion_url,
                 "credentials": {"client_secret": "env:ASPERION_SECRET"},
                 "settings": {"client_id": "koppel-sandbox", "tenant_id": "1001", "identity_url": asperion_url,
                              "redirect_uri": ASPERION_REDIRECT}},
            ],
            "integrations": [
                integration("products", "exact", "asperion", "products", {"article_groups": {"entries": {}}}),
                integration("customers", "asperion", "exact", "customers", EXACT_TABLES),
                integration("exact-orders", "exact", "asperion", "orders", ORDER_TABLES),
                integration("asperion-orders", "asperion", "exact", "orders", EXACT_TABLES),
            ],
        },
        environ=ENV,
    )  # fmt: skip


@dataclass
class Env:
    exact: LiveServer
    asperion: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    # -- Exact ---------------------------------------------------------------------------------------------

    def exact_control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.exact.url}/sandbox/{action}", json=body).raise_for_status().json()

    def exact_rows(self, path: str) -> list[dict[str, Any]]:
        return self.sandbox.store.rows(self.sandbox.config.divisions[0], path)

    def exact_account(self, email: str) -> dict[str, Any]:
        [found] = [a for a in self.exact_rows("crm/Accounts") if str(a.get("Email")).lower() == email.lower()]
        return found

    def code_id(self, path: str, code: str) -> str:
        return str(next(r["ID"] for r in self.exact_rows(path) if r["Code"] == code))

    def account(self, **fields: Any) -> str:
        record = {"Name": "Bakkerij De Korenaar B.V.", "Email": "inkoop@korenaar.example", "VATNumber": "NL001234567B01",
                  "AddressLine1": "Molenstraat 12", "Postcode": "3511 AB", "City": "Utrecht", "Country": "NL"} | fields
        return str(self.exact_control("seed", {"entity": "crm/Accounts", "records": [record]})["ids"][0])  # fmt: skip

    def exact_order(self, lines: list[tuple[str, int, float]], account: str | None = None, **header: Any) -> str:
        """A sales order entered in Exact: lines are (item code, quantity, unit price excl. VAT)."""
        items = self.exact_control("seed/items", {"skus": [code for code, _, _ in lines]})["items"]
        order = {"OrderedBy": account or self.account(), "SalesOrderLines": [
            {"Item": items[code], "Quantity": quantity, "UnitPrice": price} for code, quantity, price in lines
        ]} | header  # fmt: skip
        return str(self.exact_control("seed", {"entity": "salesorder/SalesOrders", "records": [order]})["ids"][0])

    # -- Asperion ------------------------------------------------------------------------------------------

    def asperion_control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.asperion.url}/sandbox/{action}", json=body).raise_for_status().json()

    def records(self, resource: str) -> list[dict[str, Any]]:
        answer = self.http.get(f"{self.asperion.url}/sandbox/records", params={"resource": resource})
        return list(answer.raise_for_status().json()["records"])

    def articles(self) -> dict[str, dict[str, Any]]:
        return {a["code"]: a for a in self.records("articles")}

    def relation(self, **fields: Any) -> dict[str, Any]:
        record = {"relationType": "Company", "companyName": "Bakkerij De Korenaar B.V.", "firstName": "Els",
                  "lastName": "de Vries", "email": "inkoop@korenaar.example", "vatNumber": "NL001234567B01",
                  "address": {"street": "Molenstraat", "houseNumber": "12", "postalCode": "3511 AB",
                              "city": "Utrecht", "countryCode": "NL"}} | fields  # fmt: skip
        return self.seeded("relations", record)

    def asperion_order(self, lines: list[tuple[str, int, float]], relation: dict[str, Any] | None = None,
                       resource: str = "salesorders", **header: Any) -> dict[str, Any]:  # fmt: skip
        """A sales order (or invoice) entered in Asperion: lines are (article code, quantity, unit price)."""
        relation = relation or self.relation()
        record = {"relationId": relation["id"], "lines": [
            {"articleCode": code, "quantity": quantity, "unitPrice": price, "vatPercentage": 21}
            for code, quantity, price in lines
        ]} | header  # fmt: skip
        return self.seeded(resource, record)

    def seeded(self, resource: str, record: dict[str, Any]) -> dict[str, Any]:
        [ident] = self.asperion_control("seed", {"resource": resource, "records": [record]})["ids"]
        return next(r for r in self.records(resource) if r["id"] == ident)

    # -- Koppel --------------------------------------------------------------------------------------------

    def process_polled(self, system: str, stream: str, integration: str) -> list[dict[str, Any]]:
        """Poll a stream (the real poller job), then run every queued `process_event` job."""
        poll(system, stream)
        pump_for(self.conn, self.rt.config.gateway).drain(timeout=10)
        queue = make_queue(self.conn, self.rt.config.gateway.queue)
        jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
        events = [job for job in jobs if job is not None and job.func_name == JOB_FUNC]
        for job in events:
            queue.remove(job)
        return [process_event(job.args[0])["integrations"][integration] for job in events]


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """Settings per integration id by indirect parametrisation."""
    settings = getattr(request, "param", {})
    exact_app = exact_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
    exact = serve(exact_app, name="Exact Online sandbox")
    asperion = serve(asperion_sandbox(), name="Asperion sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            rt = runtime.Runtime(config=make_config(exact.url, asperion.url, settings), connection=rconn)
            monkeypatch.setattr(runtime, "_runtime", rt)
            connect_sandbox(http, OAuthApp(exact.url, "koppel-sandbox", "sandbox-secret", REDIRECT), rconn, "exact")
            app = AsperionApp(asperion.url, "koppel-sandbox", "asperion-sandbox-secret", ASPERION_REDIRECT)
            connect_asperion(http, app, rconn, "asperion")
            e = Env(exact, asperion, exact_app.state.sandbox, http, rconn, rt)
            articles = [{"code": s, "description": s, "salesPrice": 1, "isStockArticle": s != "SHIPPING"}
                        for s in (*SKUS, "SHIPPING")]  # fmt: skip
            e.asperion_control("seed/articles", {"articles": articles})
            e.exact_control("seed/items", {"skus": SKUS})
            e.exact_control("seed/items", {"skus": ["SHIPPING"], "stock": None})
            e.exact_control("seed", {"entity": "crm/AccountClassifications", "records": [
                {"Code": "B2B", "Description": "Zakelijk"}, {"Code": "B2C", "Description": "Particulier"}]})
            e.exact_control("seed", {"entity": "hrm/Costcenters", "records": [{"Code": "CC-SERVIES"}]})
            e.exact_control("seed", {"entity": "hrm/Costunits", "records": [{"Code": "KD-WEB"}]})
            try:
                yield e
            finally:
                rt.close()
    finally:
        asperion.stop()
        exact.stop()


# -- products Exact → Asperion ---------------------------------------------------------------------------------


def seed_items(env: Env) -> list[str]:
    [group] = env.exact_control("seed", {"entity": "logistics/ItemGroups",
                                         "records": [{"Code": "SERVIES", "Description": "Servies"}]})["ids"]  # fmt: skip
    items = [{"Code": "EX-BORD", "Description": "Bord wit", "ExtraDescription": "Bord, 27 cm", "StandardSalesPrice": 6.5,
              "IsStockItem": True, "Barcode": "8712345000024", "ItemGroup": group, "PictureName": "bord.png",
              "Picture": "iVBORw0KGgo="},
             {"Code": "EX-GRAVEREN", "Description": "Graveren", "StandardSalesPrice": 12, "IsStockItem": False}]  # fmt: skip
    return list(env.exact_control("seed", {"entity": "logistics/Items", "records": items})["ids"])


def test_exact_items_become_articles_with_price_group_picture_and_type(env: Env) -> None:
    seed_items(env)
    results = env.process_polled("exact", "Items", "products")
    created = sorted(r["number"] for r in results if r["outcome"] == "created")
    assert {"EX-BORD", "EX-GRAVEREN"} <= set(created), results
    articles = env.articles()
    bord, graveren = articles["EX-BORD"], articles["EX-GRAVEREN"]
    # the sales price is read from logistics/Items: the Sync API's Items carry none
    assert Decimal(str(bord["salesPrice"])) == Decimal("6.5") and Decimal(str(graveren["salesPrice"])) == 12
    assert bord["articleGroupCode"] == "SERVIES"  # the Exact item group's code
    # the item's picture as the URL Exact serves it from [U: Asperion's image field]
    assert bord["imageUrl"].startswith(f"{env.exact.url}/docs/ItemPicture/")
    assert env.http.get(bord["imageUrl"]).status_code == 200
    assert (bord["isStockArticle"], graveren["isStockArticle"]) == (True, False)  # a non-stock item: a service
    assert "imageUrl" not in graveren and graveren.get("articleGroupCode") is None
    assert env.process_polled("exact", "Items", "products") == []  # nothing new: nothing sent


@pytest.mark.parametrize("env", [{"products": {"product_update": {"prices": False}}}], indirect=True)
def test_update_switches_keep_what_is_switched_off(env: Env) -> None:
    [bord, _] = seed_items(env)
    env.process_polled("exact", "Items", "products")
    article = env.articles()["EX-BORD"]
    env.asperion_control("update", {"resource": "articles", "id": article["id"], "fields": {"salesPrice": 7.95}})
    env.exact_control("update", {"entity": "logistics/Items", "id": bord,
                                 "fields": {"Description": "Bord wit 27 cm", "StandardSalesPrice": 5}})  # fmt: skip
    [result] = env.process_polled("exact", "Items", "products")
    assert result["outcome"] == "updated", result
    after = env.articles()["EX-BORD"]
    assert after["description"] == "Bord wit 27 cm"  # description: on
    assert Decimal(str(after["salesPrice"])) == Decimal("7.95")  # prices: off in settings.product_update
