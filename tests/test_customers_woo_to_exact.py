"""Customers WooCommerce → Exact Online, against both sandboxes over real HTTP with real Redis.

Customers are made and changed in the WooCommerce sandbox through its REST API; the worker's flow
reads the shop's own JSON (as the customer.created / customer.updated webhooks deliver it) and writes
to the Exact sandbox. What is checked is the Exact sandbox's own state: accounts, contacts, delivery
addresses, and what a bookkeeper changed there surviving Koppel's updates.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.sandbox import ExactSandbox
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.normalise import normalise_customer
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from gateway import keys
from gateway.activity import ActivityLog
from gateway.config import parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import retention, runtime
from workers.jobs import process_event, run_event
from workers.ledger import EARLIER_ATTEMPT, email_key

pytestmark = pytest.mark.integration

WOO_KEY, WOO_SECRET = "ck_customers", "cs_customers"
ENV = pairs.ENV | {"WC_SECRET": "s", "WC_KEY": WOO_KEY, "WC_CONSUMER_SECRET": WOO_SECRET}
TABLES = {
    "vat_codes": {"default": "2", "entries": {"BE:vat": "7", "BE": "2", "21": "2", "9": "1"}},
    "revenue_accounts": {"default": "8000", "entries": {"BE": "8010", "US": "8020"}},
    "customer_classifications": {"entries": {"company": "B2B", "person": "B2C"}},
}
BILLING = {"first_name": "Zoë", "last_name": "Peeters", "company": "Bakkerij Ünal BV", "address_1": "Rue de la Loi 16",
           "address_2": "", "city": "Brussel", "postcode": "1000", "country": "BE", "email": "inkoop@unal.example",
           "phone": "+32 2 123 45 67"}  # fmt: skip
SHIPPING = {"first_name": "Zoë", "last_name": "Peeters", "company": "Bakkerij Ünal BV", "address_1": "Kaai 7",
            "address_2": "Poort B", "city": "Antwerpen", "postcode": "2000", "country": "BE"}  # fmt: skip


@dataclass
class Env:
    exact: LiveServer
    woo: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime
    shop: WooCommerceClient

    @property
    def division(self) -> int:
        return self.sandbox.config.divisions[0]

    def rows(self, path: str) -> list[dict[str, Any]]:
        return self.sandbox.store.rows(self.division, path)

    def account(self, email: str) -> dict[str, Any]:
        [found] = [a for a in self.rows("crm/Accounts") if str(a.get("Email")).lower() == email.lower()]
        return found

    def of_account(self, path: str, account_id: str) -> list[dict[str, Any]]:
        return [r for r in self.rows(path) if r.get("Account") == account_id]

    def code_id(self, path: str, code: str) -> str:
        return str(next(r["ID"] for r in self.rows(path) if r["Code"] == code))

    def seed(self, entity: str, *records: dict[str, Any]) -> list[str]:
        answer = self.http.post(f"{self.exact.url}/sandbox/seed", json={"entity": entity, "records": list(records)})
        return list(answer.raise_for_status().json()["ids"])

    def bookkeeper(self, entity: str, key: str, **fields: Any) -> None:
        """A change made by hand in Exact."""
        body = {"entity": entity, "id": key, "fields": fields}
        self.http.post(f"{self.exact.url}/sandbox/update", json=body).raise_for_status()

    def sync(self, customer: dict[str, Any], topic: str = "customer.updated") -> dict[str, Any]:
        """The customers flow on the shop's JSON of this customer (what its webhook delivers)."""
        payload = self.shop.get_customer(int(customer["id"]))
        event = Event(topic, "customer", str(payload["id"]), f"k{uuid.uuid4()}", payload)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint="shop")
        return run_event(self.rt, self.rt.config.integrations[0], envelope).as_dict()

    def calls(self) -> dict[str, int]:
        return dict(self.rt.target("exact").exact.calls_by_endpoint)


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest) -> Iterator[Env]:
    """`tables` by indirect parametrisation (default TABLES)."""
    tables = getattr(request, "param", {}).get("tables", TABLES)
    with pairs.exact_served() as (exact, sandbox):
        woo = serve(woo_sandbox(consumer_key=WOO_KEY, consumer_secret=WOO_SECRET), name="shop")
        try:
            with httpx.Client(timeout=10) as http:
                config = parse_config(
                    {
                        "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
                        "systems": [pairs.exact_system(exact.url)],
                        "integrations": [
                            {"id": "shop-customers", "source": "shop", "target": "exact", "flows": ["customers"],
                             "tables": tables}
                        ],
                    },
                    environ=ENV,
                )  # fmt: skip
                rt = runtime.Runtime(config=config, connection=rconn)
                pairs.authorise_exact(http, exact, rconn)
                shop = WooCommerceClient(http, base_url=woo.url, consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)
                e = Env(exact, woo, sandbox, http, rconn, rt, shop)
                e.seed("crm/AccountClassifications", {"Code": "B2B", "Description": "Zakelijk"},
                       {"Code": "B2C", "Description": "Particulier"})  # fmt: skip
                try:
                    yield e
                finally:
                    rt.close()
        finally:
            woo.stop()


def new_customer(env: Env, **fields: Any) -> dict[str, Any]:
    vat = [{"key": "_billing_vat_number", "value": "be 0123.456.789"}]
    body = {"email": BILLING["email"], "first_name": "Zoë", "last_name": "Peeters", "billing": BILLING,
            "shipping": SHIPPING, "meta_data": vat}  # fmt: skip
    return env.shop.create_customer({**body, **fields})


def test_a_company_becomes_an_account_with_its_contact_delivery_address_and_table_defaults(env: Env) -> None:
    customer = new_customer(env)
    result = env.sync(customer, "customer.created")
    assert result["outcome"] == "created", result

    account = env.account(BILLING["email"])
    assert result["target_id"] == account["ID"]
    assert account["Name"] == "Bakkerij Ünal BV"
    assert account["VATNumber"] == "BE0123456789"  # from _billing_vat_number, normalised
    assert (account["AddressLine1"], account["Postcode"], account["City"], account["Country"]) == (
        "Rue de la Loi 16", "1000", "Brussel", "BE")  # fmt: skip
    assert account["SalesVATCode"] == "7"  # vat_codes "BE:vat": a Belgian company with a VAT number
    assert account["GLAccountSales"] == env.code_id("financial/GLAccounts", "8010")  # revenue_accounts "BE"
    assert account["Classification1"] == env.code_id("crm/AccountClassifications", "B2B")
    [contact] = env.of_account("crm/Contacts", account["ID"])
    assert (contact["FirstName"], contact["LastName"], contact["Email"]) == ("Zoë", "Peeters", BILLING["email"])
    [delivery] = env.of_account("crm/Addresses", account["ID"])
    assert (delivery["Type"], delivery["Main"]) == (4, True)
    assert (delivery["AddressLine1"], delivery["AddressLine2"], delivery["Postcode"], delivery["City"]) == (
        "Kaai 7", "Poort B", "2000", "Antwerpen")  # fmt: skip

    again = env.sync(customer)
    assert (again["outcome"], again["calls"]) == ("skipped", 0)


def test_a_person_is_an_account_without_contact_and_the_table_defaults_apply(env: Env) -> None:
    billing = {**BILLING, "company": "", "country": "DE", "email": "jorg@example.de"}
    customer = new_customer(env, email="jorg@example.de", billing=billing, shipping={}, meta_data=[])
    assert env.sync(customer, "customer.created")["outcome"] == "created"
    account = env.account("jorg@example.de")
    assert account["Name"] == "Zoë Peeters"
    assert account["SalesVATCode"] == "2"  # the table's default row
    assert account["GLAccountSales"] == env.code_id("financial/GLAccounts", "8000")  # the default row
    assert account["Classification1"] == env.code_id("crm/AccountClassifications", "B2C")
    assert env.of_account("crm/Contacts", account["ID"]) == []
    assert env.of_account("crm/Addresses", account["ID"]) == []  # no shipping address: none made


def test_an_update_writes_only_what_the_shop_changed_and_the_bookkeepers_edits_survive(env: Env) -> None:
    customer = new_customer(env)
    env.sync(customer, "customer.created")
    account = env.account(BILLING["email"])
    # The bookkeeper renames the account, adds a phone number and remarks, and blocks nothing else.
    env.bookkeeper("crm/Accounts", account["ID"], Name="Bakkerij Ünal (Brussel)", Phone="+32 2 999 99 99",
                   Remarks="betaalt altijd laat")  # fmt: skip
    # The shop's customer moves: a new billing address, the same shipping address.
    env.shop.update_customer(int(customer["id"]), {"billing": {"address_1": "Wetstraat 1", "postcode": "1040"}})
    before = env.calls()
    result = env.sync(customer)
    assert result["outcome"] == "updated", result
    assert result["calls"] == 1  # one PUT: no read, no contact or address call
    assert {k: v - before.get(k, 0) for k, v in env.calls().items() if v != before.get(k, 0)} == {
        "PUT crm/Accounts": 1}  # fmt: skip

    account = env.account(BILLING["email"])
    assert (account["AddressLine1"], account["Postcode"], account["City"]) == ("Wetstraat 1", "1040", "Brussel")
    assert account["Name"] == "Bakkerij Ünal (Brussel)"  # the shop did not change the name
    assert account["Phone"] == "+32 2 999 99 99"  # nor the phone number
    assert account["Remarks"] == "betaalt altijd laat"
    assert len(env.of_account("crm/Contacts", account["ID"])) == 1
    assert len(env.of_account("crm/Addresses", account["ID"])) == 1


def test_a_changed_shipping_address_becomes_the_main_delivery_address_and_the_old_one_stays(env: Env) -> None:
    customer = new_customer(env)
    env.sync(customer, "customer.created")
    account_id = env.account(BILLING["email"])["ID"]
    [old] = env.of_account("crm/Addresses", account_id)
    env.shop.update_customer(int(customer["id"]), {"shipping": {"address_1": "Meir 50", "address_2": ""}})
    result = env.sync(customer)
    assert result["outcome"] == "updated"
    addresses = {a["AddressLine1"]: a for a in env.of_account("crm/Addresses", account_id)}
    assert set(addresses) == {"Kaai 7", "Meir 50"}  # orders booked earlier keep pointing at the old one
    assert addresses["Meir 50"]["Main"] and not addresses["Kaai 7"]["Main"]
    assert addresses["Meir 50"].get("AddressLine2") is None and addresses["Kaai 7"]["ID"] == old["ID"]
    # Moving back makes the old address the main one again: found by its fields, not created twice.
    env.shop.update_customer(int(customer["id"]), {"shipping": {"address_1": "Kaai 7", "address_2": "Poort B"}})
    assert env.sync(customer)["outcome"] == "updated"
    addresses = {a["AddressLine1"]: a for a in env.of_account("crm/Addresses", account_id)}
    assert len(addresses) == 2 and addresses["Kaai 7"]["Main"] and not addresses["Meir 50"]["Main"]


def test_an_account_koppel_did_not_write_is_read_and_only_what_differs_is_written(env: Env) -> None:
    # Typed in Exact by hand, with the shop customer's e-mail, its contact person and some own data.
    [account_id] = env.seed("crm/Accounts", {
        "Name": "Bakkerij Ünal BV", "Email": BILLING["email"], "Status": "C", "IsSales": True,
        "VATNumber": "BE0123456789", "AddressLine1": "Rue de la Loi 16", "Postcode": "1000", "City": "Brussel",
        "Country": "BE", "Phone": "+32 2 123 45 67", "SalesVATCode": "7", "Remarks": "vaste klant",
        "GLAccountSales": env.code_id("financial/GLAccounts", "8010"),
        "Classification1": env.code_id("crm/AccountClassifications", "B2B"), "ChamberOfCommerce": None,
    })  # fmt: skip
    env.seed("crm/Contacts", {"Account": account_id, "FirstName": "Zoë", "LastName": "Peeters",
                              "Email": BILLING["email"], "Phone": "+32 2 123 45 67"})  # fmt: skip
    env.seed("crm/Addresses", {"Account": account_id, "Type": 4, "AddressLine1": "Kaai 7", "AddressLine2": "Poort B",
                               "Postcode": "2000", "City": "Antwerpen", "Country": "BE"})  # fmt: skip
    customer = new_customer(env)
    before = env.calls()
    result = env.sync(customer)
    assert (result["outcome"], result["target_id"]) == ("skipped", account_id), result
    assert "already as in Exact Online" in result["reason"]
    spent = {k: v - before.get(k, 0) for k, v in env.calls().items() if v != before.get(k, 0)}
    # find and read the account, its contacts and delivery addresses, the codes' GUIDs (cached a day); no write
    assert spent == {"GET crm/Accounts": 2, "GET crm/Contacts": 1, "GET crm/Addresses": 1,
                     "GET financial/GLAccounts": 1, "GET crm/AccountClassifications": 1}  # fmt: skip
    assert len(env.of_account("crm/Contacts", account_id)) == 1
    assert len(env.of_account("crm/Addresses", account_id)) == 1

    # The bookkeeper's own remark stays; a field the shop holds differently is written, alone.
    env.bookkeeper("crm/Accounts", account_id, Phone="+32 2 000 00 00")
    # Koppel's history of this customer lost (a Redis without its caches)
    env.conn.delete(*(keys.cache("shop-customers", n) for n in ("customers", "customers-sent")),
                    *(keys.cache("exact", n) for n in ("contacts", "delivery-addresses")),
                    *env.conn.scan_iter(keys.cache("shop-customers", "seen:customers", "*")))  # fmt: skip
    before = env.calls()
    assert env.sync(customer)["outcome"] == "updated"
    spent = {k: v - before.get(k, 0) for k, v in env.calls().items() if v != before.get(k, 0)}
    assert spent.get("PUT crm/Accounts") == 1 and "POST crm/Contacts" not in spent
    account = env.account(BILLING["email"])
    assert (account["Phone"], account["Remarks"]) == ("+32 2 123 45 67", "vaste klant")


def test_a_company_contact_is_created_on_update_when_missing_and_never_twice(env: Env) -> None:
    billing = {**BILLING, "company": ""}
    customer = new_customer(env, billing=billing, shipping={})
    env.sync(customer, "customer.created")
    account_id = env.account(BILLING["email"])["ID"]
    assert env.of_account("crm/Contacts", account_id) == []  # a person: no contact
    env.shop.update_customer(int(customer["id"]), {"billing": {"company": "Ünal Groep"}})
    assert env.sync(customer)["outcome"] == "updated"
    assert env.account(BILLING["email"])["Name"] == "Ünal Groep"
    [contact] = env.of_account("crm/Contacts", account_id)
    assert contact["LastName"] == "Peeters"
    env.shop.update_customer(int(customer["id"]), {"billing": {"phone": "+32 470 12 34 56"}})
    assert env.sync(customer)["outcome"] == "updated"
    [contact] = env.of_account("crm/Contacts", account_id)  # updated, not a second one
    assert contact["Phone"] == "+32 470 12 34 56"
    # The bookkeeper deletes the contact; the next change of the contact makes it again, once.
    env.sandbox.store.delete(env.division, "crm/Contacts", contact["ID"])
    renamed = {"last_name": "Peeters-Ünal", "billing": {"last_name": "Peeters-Ünal"}}
    env.shop.update_customer(int(customer["id"]), renamed)
    assert env.sync(customer)["outcome"] == "updated"
    [contact] = env.of_account("crm/Contacts", account_id)
    assert contact["LastName"] == "Peeters-Ünal"


@pytest.mark.parametrize(
    "env", [{"tables": {**TABLES, "customer_classifications": {"entries": {"company": "GROOT"}}}}], indirect=True
)
def test_an_unknown_classification_code_fails_naming_it_and_its_table(env: Env) -> None:
    customer = new_customer(env)
    with pytest.raises(PermanentError) as failed:
        env.sync(customer, "customer.created")
    message = str(failed.value)
    assert "account classification 'GROOT' does not exist in Exact Online" in message
    assert "customer_classifications" in message and "Classification1" in message
    assert [a for a in env.rows("crm/Accounts") if a.get("Email") == BILLING["email"]] == []  # nothing half-made


@pytest.mark.parametrize(
    "key", ["billing_vat_number", "_billing_vat_number", "vat_number", "_vat_number", "yweu_billing_vat",
            "_billing_vat", "billing_vat_id"],
)  # fmt: skip
def test_the_vat_number_is_read_from_every_meta_key_plugins_store_it_under(key: str) -> None:
    payload = {"id": 7, "email": "a@b.example", "billing": {"company": "X", "email": "a@b.example"},
               "meta_data": [{"id": 1, "key": key, "value": " NL 8547.03.145.B01 "}]}  # fmt: skip
    assert normalise_customer(payload).vat_number == "NL 8547.03.145.B01"


class Killed(BaseException):
    """The worker process dying: no Koppel error, nothing after it runs."""


def test_a_worker_killed_between_the_account_and_its_contact_finishes_the_customer_on_the_retry(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = new_customer(env)
    monkeypatch.setattr(runtime, "_runtime", env.rt)  # as `koppel worker` installs it: jobs find it
    payload = env.shop.get_customer(int(customer["id"]))
    event = Event("customer.created", "customer", str(customer["id"]), "k-created", payload)
    job = Envelope.wrap(event, source="woocommerce", endpoint="shop").model_dump(mode="json")
    client = env.rt.target("exact").exact
    real = client.create_contact

    def killed(fields: dict[str, Any]) -> Any:
        monkeypatch.setattr(client, "create_contact", real)
        raise Killed  # the account is in Exact; its contact person is not

    monkeypatch.setattr(client, "create_contact", killed)
    with pytest.raises(Killed):
        process_event(job)
    [account] = [a for a in env.rows("crm/Accounts") if a.get("Email") == BILLING["email"]]
    assert env.of_account("crm/Contacts", account["ID"]) == []
    flight = keys.in_flight("shop-customers", "customers")
    assert env.conn.hkeys(flight) == [email_key(BILLING["email"]).encode()]  # a digest, not the address
    forgotten = retention.forget(env.conn, env.rt.config, BILLING["email"].upper(), dry_run=True)
    assert flight in forgotten.cached.items  # `koppel forget` finds the mark too

    process_event(job)  # RQ runs the job again
    [entry] = ActivityLog(env.conn).entries("shop-customers")
    assert (entry.outcome, entry.target_id, entry.reason) == ("created", account["ID"], EARLIER_ATTEMPT)
    assert env.account(BILLING["email"])["ID"] == account["ID"]  # still the one account
    [contact] = env.of_account("crm/Contacts", account["ID"])
    assert (contact["FirstName"], contact["LastName"], contact["Email"]) == ("Zoë", "Peeters", BILLING["email"])
    [delivery] = env.of_account("crm/Addresses", account["ID"])
    assert (delivery["Type"], delivery["Main"], delivery["AddressLine1"]) == (4, True, "Kaai 7")
    assert not env.conn.exists(keys.in_flight("shop-customers", "customers"))  # settled

    again = env.sync(customer)  # the next change finds it all as Koppel last sent it
    assert (again["outcome"], again["calls"]) == ("skipped", 0)
    assert len(env.of_account("crm/Contacts", account["ID"])) == 1


def test_a_worker_killed_after_the_contact_person_creates_neither_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the account and its contact person, before the delivery address: each found, none twice."""
    customer = new_customer(env)
    client = env.rt.target("exact").exact
    real = client.create

    def killed(endpoint: Any, fields: Any) -> Any:
        if endpoint.path == "crm/Addresses":
            monkeypatch.setattr(client, "create", real)
            raise Killed
        return real(endpoint, fields)

    monkeypatch.setattr(client, "create", killed)
    with pytest.raises(Killed):
        env.sync(customer, "customer.created")
    account = env.account(BILLING["email"])
    assert len(env.of_account("crm/Contacts", account["ID"])) == 1
    assert env.of_account("crm/Addresses", account["ID"]) == []

    result = env.sync(customer, "customer.created")
    assert (result["outcome"], result["target_id"], result["reason"]) == ("created", account["ID"], EARLIER_ATTEMPT)
    assert env.account(BILLING["email"])["ID"] == account["ID"]
    assert len(env.of_account("crm/Contacts", account["ID"])) == 1
    [delivery] = env.of_account("crm/Addresses", account["ID"])
    assert (delivery["Main"], delivery["AddressLine1"]) == (True, "Kaai 7")
