"""Flows through the sandboxes with Asperion on one side, over real HTTP (uvicorn), real Redis, the real poller
and the generic flows: products Exact Online → Asperion (articles created, then updated, never twice) and
customers Asperion → Exact Online (a company relation and a person become accounts)."""

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
from connectors.exactonline.sandbox import connect_sandbox
from connectors.exactonline.sandbox import create_sandbox as exact_sandbox
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


def make_config(exact_url: str, asperion_url: str) -> Config:
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
                {"id": "exact-to-asperion", "source": "exact", "target": "asperion", "flows": ["products"],
                 "settings": {}},
                {"id": "asperion-to-exact", "source": "asperion", "target": "exact", "flows": ["customers"]},
            ],
        },
        environ=ENV,
    )  # fmt: skip


@dataclass
class Env:
    exact: LiveServer
    asperion: LiveServer
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    def exact_control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.exact.url}/sandbox/{action}", json=body).raise_for_status().json()

    def asperion_control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.asperion.url}/sandbox/{action}", json=body).raise_for_status().json()

    def articles(self) -> dict[str, dict[str, Any]]:
        answer = self.http.get(f"{self.asperion.url}/sandbox/records", params={"resource": "articles"})
        return {a["code"]: a for a in answer.raise_for_status().json()["records"]}

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
def env(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    exact = serve(exact_sandbox(redirect_uris=(REDIRECT,), rate_limits=False), name="Exact Online sandbox")
    asperion = serve(asperion_sandbox(), name="Asperion sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            rt = runtime.Runtime(config=make_config(exact.url, asperion.url), connection=rconn)
            monkeypatch.setattr(runtime, "_runtime", rt)
            connect_sandbox(http, OAuthApp(exact.url, "koppel-sandbox", "sandbox-secret", REDIRECT), rconn, "exact")
            app = AsperionApp(asperion.url, "koppel-sandbox", "asperion-sandbox-secret", ASPERION_REDIRECT)
            connect_asperion(http, app, rconn, "asperion")
            try:
                yield Env(exact, asperion, http, rconn, rt)
            finally:
                rt.close()
    finally:
        asperion.stop()
        exact.stop()


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
