"""Exact Online ⇄ Asperion end to end, through both sandboxes over real HTTP (uvicorn), real Redis, the real
poller and the generic flows: products Exact → Asperion (types, item group, picture, price, update switches),
customers Asperion → Exact (company or person, tables, addresses compared), and orders both ways as each
document type, with the rules of every order flow and the loop guard between the two."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis

from connectors import registry
from gateway import keys
from gateway.config import Config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from tests import pairs_support as pairs
from transforms import validate_integration
from workers.jobs import run_event

pytestmark = pytest.mark.integration

SKUS = ["EX-MUG", "EX-KOFFIE"]
ORDER_TABLES = {
    "vat_codes": {"default": "HOOG", "entries": {"NL:21": "HOOG", "9": "LAAG"}},
    "payment_methods": {"entries": {"00": "iDEAL"}},
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

    return pairs.pair_config(
        [pairs.exact_system(exact_url, **settings.get("exact-system", {})), pairs.asperion_system(asperion_url)],
        [
            integration("products", "exact", "asperion", "products", {"article_groups": {"entries": {}}}),
            integration("customers", "asperion", "exact", "customers", EXACT_TABLES),
            integration("exact-orders", "exact", "asperion", "orders", ORDER_TABLES),
            integration("asperion-orders", "asperion", "exact", "orders", EXACT_TABLES),
        ],
    )  # fmt: skip


class Env(pairs.ExactAsperion):
    # -- Exact ---------------------------------------------------------------------------------------------

    def exact_rows(self, path: str) -> list[dict[str, Any]]:
        return self.sandbox.store.rows(self.sandbox.config.divisions[0], path)

    def exact_account(self, email: str) -> dict[str, Any]:
        [found] = [a for a in self.exact_rows("crm/Accounts") if str(a.get("Email")).lower() == email.lower()]
        return found

    def code_id(self, path: str, code: str) -> str:
        return str(next(r["ID"] for r in self.exact_rows(path) if r["Code"] == code))

    def account(self, **fields: Any) -> str:
        record = {"Name": "Bakkerij De Korenaar B.V.", "Email": "inkoop@korenaar.example",
                  "VATNumber": "NL001234567B01", "AddressLine1": "Molenstraat 12", "Postcode": "3511 AB",
                  "City": "Utrecht", "Country": "NL"} | fields
        return str(self.exact_control("seed", {"entity": "crm/Accounts", "records": [record]})["ids"][0])  # fmt: skip

    def exact_order(self, lines: list[tuple[str, int, float]], account: str | None = None, **header: Any) -> str:
        """A sales order entered in Exact: lines are (item code, quantity, unit price excl. VAT)."""
        items = self.exact_control("seed/items", {"skus": [code for code, _, _ in lines]})["items"]
        order = {"OrderedBy": account or self.account(), "SalesOrderLines": [
            {"Item": items[code], "Quantity": quantity, "UnitPrice": price} for code, quantity, price in lines
        ]} | header  # fmt: skip
        return str(self.exact_control("seed", {"entity": "salesorder/SalesOrders", "records": [order]})["ids"][0])

    # -- Asperion ------------------------------------------------------------------------------------------

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


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """Settings per integration id by indirect parametrisation ("exact-system": the Exact system's)."""
    settings = getattr(request, "param", {})
    with pairs.exact_and_asperion(Env, lambda e, a: make_config(e, a, settings), rconn, monkeypatch) as e:
        articles = [{"code": s, "description": s, "salesPrice": 1, "isStockArticle": s != "SHIPPING"}
                    for s in (*SKUS, "SHIPPING")]  # fmt: skip
        e.asperion_control("seed/articles", {"articles": articles})
        e.exact_control("seed/items", {"skus": SKUS})
        e.exact_control("seed/items", {"skus": ["SHIPPING"], "stock": None})
        e.exact_control("seed", {"entity": "crm/AccountClassifications", "records": [
            {"Code": "B2B", "Description": "Zakelijk"}, {"Code": "B2C", "Description": "Particulier"}]})
        e.exact_control("seed", {"entity": "hrm/Costcenters", "records": [{"Code": "CC-SERVIES"}]})
        e.exact_control("seed", {"entity": "hrm/Costunits", "records": [{"Code": "KD-WEB"}]})
        yield e


# -- products Exact → Asperion ---------------------------------------------------------------------------------


def seed_items(env: Env) -> list[str]:
    groups = {"entity": "logistics/ItemGroups", "records": [{"Code": "SERVIES", "Description": "Servies"}]}
    [group] = env.exact_control("seed", groups)["ids"]
    items = [{"Code": "EX-BORD", "Description": "Bord wit", "ExtraDescription": "Bord, 27 cm",
              "StandardSalesPrice": 6.5, "IsStockItem": True, "Barcode": "8712345000024", "ItemGroup": group,
              "PictureName": "bord.png", "Picture": "iVBORw0KGgo="},
             {"Code": "EX-GRAVEREN", "Description": "Graveren", "StandardSalesPrice": 12, "IsStockItem": False}]
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


def test_an_items_webhook_is_read_through_the_api_with_price_group_and_picture(env: Env) -> None:
    [bord, _] = seed_items(env)
    event = Event("Items.Update", "Items", bord, f"k{uuid.uuid4()}",
                  {"Topic": "Items", "Action": "Update", "Division": env.sandbox.config.divisions[0], "Key": bord})
    envelope = Envelope.wrap(event, source="exactonline", endpoint="exact")
    result = run_event(env.rt, env.rt.config.integrations[0], envelope).as_dict()
    assert result["outcome"] == "created", result
    article = env.articles()["EX-BORD"]
    assert Decimal(str(article["salesPrice"])) == Decimal("6.5") and article["articleGroupCode"] == "SERVIES"
    assert article["imageUrl"].startswith(f"{env.exact.url}/docs/ItemPicture/")


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


NAMED = {"exact-system": {"item_attributes": {"Class_01": "Kleur", "Class_03": "", "FreeTextField_01": "Materiaal",
                                              "FreeBoolField_01": "Vaatwasserbestendig"}}}  # fmt: skip
CLASSES = {"Class_01": "WIT", "Class_02": "A", "Class_03": "INTERN", "FreeTextField_01": "Porselein",
           "FreeTextField_02": "niet genoemd", "FreeBoolField_01": True}  # fmt: skip


@pytest.mark.parametrize("env", [NAMED], indirect=True)
def test_item_classes_and_named_free_fields_become_the_articles_properties_and_follow_changes(env: Env) -> None:
    [bord, _] = seed_items(env)
    env.exact_control("update", {"entity": "logistics/Items", "id": bord, "fields": CLASSES})
    [created] = [r for r in env.process_polled("exact", "Items", "products") if r["number"] == "EX-BORD"]
    assert created["outcome"] == "created", created
    # Class_03 named "" and the unnamed free text field stay behind; Class_02 has no name: "Class 2"
    assert env.articles()["EX-BORD"]["properties"] == [
        {"name": "Kleur", "value": "WIT"}, {"name": "Class 2", "value": "A"},
        {"name": "Materiaal", "value": "Porselein"}, {"name": "Vaatwasserbestendig", "value": "true"},
    ]  # fmt: skip
    env.exact_control("update", {"entity": "logistics/Items", "id": bord,
                                 "fields": {"Class_01": "ZWART", "Class_02": None}})  # fmt: skip
    # the change told by a webhook: the item read through the REST API carries the same fields
    event = Event("Items.Update", "Items", bord, f"k{uuid.uuid4()}",
                  {"Topic": "Items", "Action": "Update", "Division": env.sandbox.config.divisions[0], "Key": bord})
    envelope = Envelope.wrap(event, source="exactonline", endpoint="exact")
    result = run_event(env.rt, env.rt.config.integrations[0], envelope).as_dict()
    assert result["outcome"] == "updated", result
    assert env.articles()["EX-BORD"]["properties"] == [
        {"name": "Kleur", "value": "ZWART"}, {"name": "Materiaal", "value": "Porselein"},
        {"name": "Vaatwasserbestendig", "value": "true"},
    ]  # fmt: skip
    assert [r["outcome"] for r in env.process_polled("exact", "Items", "products")] == ["skipped"]  # seen already


@pytest.mark.parametrize("env", [NAMED | {"products": {"product_update": {"attributes": False}}}], indirect=True)
def test_with_the_attributes_switch_off_an_update_keeps_asperions_properties(env: Env) -> None:
    [bord, _] = seed_items(env)
    env.exact_control("update", {"entity": "logistics/Items", "id": bord, "fields": CLASSES})
    env.process_polled("exact", "Items", "products")
    article = env.articles()["EX-BORD"]
    assert article["properties"][0] == {"name": "Kleur", "value": "WIT"}  # a create writes every field
    mine = [{"name": "Kleur", "value": "Gebroken wit"}]
    env.asperion_control("update", {"resource": "articles", "id": article["id"], "fields": {"properties": mine}})
    env.exact_control("update", {"entity": "logistics/Items", "id": bord,
                                 "fields": {"Class_01": "ZWART", "Description": "Bord wit 27 cm"}})  # fmt: skip
    [result] = env.process_polled("exact", "Items", "products")
    assert result["outcome"] == "updated", result
    after = env.articles()["EX-BORD"]
    assert after["description"] == "Bord wit 27 cm" and after["properties"] == mine


# -- customers Asperion → Exact --------------------------------------------------------------------------------

BE_COMPANY = {"companyName": "Brouwerij Ünal BV", "firstName": "Zoë", "lastName": "Peeters",
              "email": "inkoop@unal.example", "vatNumber": "BE0123456789",
              "address": {"street": "Wetstraat", "houseNumber": "16", "postalCode": "1000", "city": "Brussel",
                          "countryCode": "BE"}}  # fmt: skip
NL_PERSON = {"relationType": "Person", "companyName": None, "firstName": "Jan", "lastName": "Jansen",
             "email": "jan@example.nl", "vatNumber": None,
             "address": {"street": "Dorpsstraat", "houseNumber": "3", "postalCode": "1234 AB", "city": "Ergens",
                         "countryCode": "NL"}}  # fmt: skip


def test_relations_become_accounts_company_or_person_with_the_tables_per_country(env: Env) -> None:
    delivery = {"street": "Kaai", "houseNumber": "7", "houseNumberAddition": "B", "postalCode": "2000",
                "city": "Antwerpen", "countryCode": "BE"}  # fmt: skip
    env.relation(**BE_COMPANY, deliveryAddress=delivery)
    env.relation(**NL_PERSON)
    results = env.process_polled("asperion", "relations", "customers")
    assert sorted(r["outcome"] for r in results) == ["created", "created"], results
    company = env.exact_account("inkoop@unal.example")
    assert (company["Name"], company["VATNumber"], company["Country"]) == ("Brouwerij Ünal BV", "BE0123456789", "BE")
    assert company["AddressLine1"] == "Wetstraat 16"
    assert company["SalesVATCode"] == "7"  # vat_codes "BE:vat": a Belgian company with a VAT number
    assert company["GLAccountSales"] == env.code_id("financial/GLAccounts", "8010")  # revenue_accounts "BE"
    assert company["Classification1"] == env.code_id("crm/AccountClassifications", "B2B")
    [contact] = [c for c in env.exact_rows("crm/Contacts") if c.get("Account") == company["ID"]]
    assert (contact["FirstName"], contact["LastName"]) == ("Zoë", "Peeters")
    [address] = [a for a in env.exact_rows("crm/Addresses") if a.get("Account") == company["ID"]]
    assert (address["AddressLine1"], address["City"], address["Main"]) == ("Kaai 7 B", "Antwerpen", True)
    person = env.exact_account("jan@example.nl")
    assert person["Name"] == "Jan Jansen"
    assert person["SalesVATCode"] == "2"  # the table's default row
    assert person["GLAccountSales"] == env.code_id("financial/GLAccounts", "8000")
    assert person["Classification1"] == env.code_id("crm/AccountClassifications", "B2C")
    assert not [c for c in env.exact_rows("crm/Contacts") if c.get("Account") == person["ID"]]
    assert not [a for a in env.exact_rows("crm/Addresses") if a.get("Account") == person["ID"]]  # one address


def test_a_relation_changed_elsewhere_than_its_address_costs_nothing_and_a_new_address_is_written(env: Env) -> None:
    relation = env.relation(**BE_COMPANY)
    env.process_polled("asperion", "relations", "customers")
    account = env.exact_account("inkoop@unal.example")
    env.exact_control("update", {"entity": "crm/Accounts", "id": account["ID"],
                                 "fields": {"Name": "Brouwerij Ünal (Brussel)"}})  # a bookkeeper's edit  # fmt: skip
    # an edit in Asperion Koppel does not carry (remarks): the addresses and fields compare equal, nothing is sent
    env.asperion_control("update", {"resource": "relations", "id": relation["id"], "fields": {"remarks": "VIP"}})
    [same] = env.process_polled("asperion", "relations", "customers")
    assert (same["outcome"], same["calls"]) == ("skipped", 0), same
    # the relation moves: its new address is written, the bookkeeper's name survives
    moved = {**BE_COMPANY["address"], "street": "Kaai", "houseNumber": "7", "postalCode": "2000", "city": "Antwerpen"}
    env.asperion_control("update", {"resource": "relations", "id": relation["id"], "fields": {"address": moved}})
    [result] = env.process_polled("asperion", "relations", "customers")
    assert result["outcome"] == "updated", result
    after = env.exact_account("inkoop@unal.example")
    assert (after["AddressLine1"], after["Postcode"], after["City"]) == ("Kaai 7", "2000", "Antwerpen")
    assert after["Name"] == "Brouwerij Ünal (Brussel)" and after["ID"] == account["ID"]  # one account, updated


# -- orders Exact → Asperion -----------------------------------------------------------------------------------

ASPERION_DOCUMENTS = {"sales_order": "salesorders", "sales_invoice": "salesinvoices",
                      "financial_mutation": "financialmutations"}  # fmt: skip


def exact_orders(env: Env) -> list[dict[str, Any]]:
    return env.process_polled("exact", "SalesOrderHeaders", "exact-orders")


@pytest.mark.parametrize("env", [pytest.param({"exact-orders": {"document_type": d}}, id=d)
                                 for d in ASPERION_DOCUMENTS], indirect=True)  # fmt: skip
def test_an_exact_order_is_booked_once_as_each_asperion_document_type(env: Env) -> None:
    document = env.rt.config.integrations[2].settings["document_type"]
    order_id = env.exact_order([("EX-MUG", 2, 7.5), ("EX-KOFFIE", 1, 12.0), ("SHIPPING", 1, 4.95)],
                               PaymentCondition="00", ShippingMethodCode="POST")
    [result] = exact_orders(env)
    assert (result["outcome"], result["document"]) == ("created", document), result
    [booked] = env.records(ASPERION_DOCUMENTS[document])
    assert str(booked["id"]) == result["target_id"] and booked["reference"] == result["number"]
    [relation] = env.records("relations")  # the customer, found by e-mail: created, a company (a VAT number)
    assert (relation["email"], relation["relationType"]) == ("inkoop@korenaar.example", "Company")
    assert booked["relationId"] == relation["id"]
    lines = booked["lines"]  # in Exact's line order
    if document == "financial_mutation":  # revenue on the ledger account of the country, no articles
        assert [(line["ledgerAccount"], Decimal(str(line["amount"]))) for line in lines] == [
            ("8000", Decimal("15")), ("8000", Decimal("12")), ("8000", Decimal("4.95"))]
    else:  # articles by code; the shipping line on the SHIPPING service article
        articles = {a["id"]: a["code"] for a in env.records("articles")}
        assert [(articles[line["articleId"]], line["quantity"], Decimal(str(line["unitPrice"]))) for line in lines] == [
            ("EX-MUG", 2, Decimal("7.5")), ("EX-KOFFIE", 1, Decimal("12")), ("SHIPPING", 1, Decimal("4.95"))]
    # tables: VAT code by country and rate, cost centre by SKU else country, cost unit by country
    assert [line.get("vatCode") for line in lines] == ["HOOG", "HOOG", "HOOG"]
    assert [line.get("costCenter") for line in lines] == ["CC-SERVIES", "CC-NL", "CC-NL"]
    assert [line.get("costUnit") for line in lines] == ["KD-WEB", "KD-WEB", "KD-WEB"]
    if document != "financial_mutation":  # tables payment_methods and (sales orders) shipping_methods
        assert booked["paymentMethod"] == "iDEAL"
        assert booked.get("shippingMethod") == ("PostNL" if document == "sales_order" else None)
    assert "koppel_origin" not in booked  # kept by Koppel, never sent
    assert exact_orders(env) == []  # polled again: nothing new
    # changed in Exact: a new version of the order, which is in Asperion already: skipped, never booked twice
    env.exact_control("update", {"entity": "salesorder/SalesOrders", "id": order_id, "fields": {"Remarks": "snel"}})
    [again] = exact_orders(env)
    assert again["outcome"] == "skipped" and again["reason"] == "already in Asperion", again
    assert len(env.records(ASPERION_DOCUMENTS[document])) == 1


def test_the_customer_is_found_by_e_mail_and_a_person_is_a_person(env: Env) -> None:
    existing = env.relation(email="jan@example.nl", relationType="Person", companyName=None, vatNumber=None)
    person = env.account(Name="Piet Pieters", Email="piet@example.nl", VATNumber=None)
    env.exact_order([("EX-MUG", 1, 7.5)], account=person)
    env.exact_order([("EX-MUG", 1, 7.5)], account=env.account(Name="Jan Jansen", Email="jan@example.nl",
                                                                VATNumber=None))  # fmt: skip
    results = exact_orders(env)
    assert [r["outcome"] for r in results] == ["created", "created"], results
    relations = {r["email"]: r for r in env.records("relations")}
    assert relations["piet@example.nl"]["relationType"] == "Person"
    assert (relations["piet@example.nl"]["firstName"], relations["piet@example.nl"]["lastName"]) == ("Piet", "Pieters")
    assert len(relations) == 2  # jan@example.nl was there: found, not made again
    jan = relations["jan@example.nl"]  # and updated to what Exact's account says of him
    assert (jan["id"], jan["firstName"], jan["lastName"]) == (existing["id"], "Jan", "Jansen")
    by_relation = {o["relationId"] for o in env.records("salesorders")}
    assert by_relation == {relations["piet@example.nl"]["id"], existing["id"]}


@pytest.mark.parametrize("env", [{"exact-orders": {"default_debtor": "WEBSHOP"}}], indirect=True)
def test_with_a_default_debtor_every_order_is_booked_on_it(env: Env) -> None:
    debtor = env.relation(code="WEBSHOP", companyName="Webwinkel", email="boekhouding@example.nl")
    env.exact_order([("EX-MUG", 1, 7.5)])
    [result] = exact_orders(env)
    assert result["outcome"] == "created", result
    [order] = env.records("salesorders")
    assert order["relationId"] == debtor["id"] and len(env.records("relations")) == 1


def test_an_item_asperion_lacks_fails_the_order_naming_it(env: Env) -> None:
    env.exact_order([("EX-MUG", 1, 7.5), ("EX-ONLY", 1, 3.0)])
    with pytest.raises(PermanentError, match=r"SKU\(s\) EX-ONLY do not exist as items in Asperion"):
        exact_orders(env)
    assert env.records("salesorders") == []


@pytest.mark.parametrize("env", [{"exact-orders": {"order_statuses": ["complete"]}}], indirect=True)
def test_only_the_configured_exact_statuses_are_booked_into_asperion(env: Env) -> None:
    order_id = env.exact_order([("EX-MUG", 1, 7.5)])
    [open_] = exact_orders(env)
    assert (open_["outcome"], open_["reason"]) == ("skipped", "status 'open' is not synced")
    env.exact_control("update", {"entity": "salesorder/SalesOrders", "id": order_id, "fields": {"Status": 21}})
    [done] = exact_orders(env)
    assert done["outcome"] == "created", done


# -- orders Asperion → Exact -----------------------------------------------------------------------------------

EXACT_DOCUMENTS: dict[str, tuple[str, str, str]] = {
    "sales_order": ("salesorder/SalesOrders", "OrderID", "salesorder/SalesOrderLines"),
    "sales_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines"),
    "direct_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines"),
    "sales_entry": ("salesentry/SalesEntries", "EntryID", "salesentry/SalesEntryLines"),
}


def asperion_orders(env: Env, stream: str = "salesorders") -> list[dict[str, Any]]:
    return env.process_polled("asperion", stream, "asperion-orders")


def booked_in_exact(env: Env, document: str, number: str) -> list[dict[str, Any]]:
    path, _, _ = EXACT_DOCUMENTS[document]
    found = [r for r in env.exact_rows(path) if r.get("YourRef") == number]
    if path == "salesinvoice/SalesInvoices":
        found = [r for r in found if (r["Type"] == 8023) == (document == "direct_invoice")]
    return found


@pytest.mark.parametrize("env", [pytest.param({"asperion-orders": {"document_type": d}}, id=d)
                                 for d in EXACT_DOCUMENTS], indirect=True)  # fmt: skip
def test_an_asperion_order_is_booked_once_as_each_exact_document_type(env: Env) -> None:
    document = env.rt.config.integrations[3].settings["document_type"]
    order = env.asperion_order([("EX-MUG", 2, 7.5), ("EX-KOFFIE", 1, 12.0)])
    [result] = asperion_orders(env)
    assert (result["outcome"], result["document"], result["number"]) == ("created", document,
                                                                       order["orderNumber"]), result  # fmt: skip
    [booked] = booked_in_exact(env, document, order["orderNumber"])
    _, key, line_path = EXACT_DOCUMENTS[document]
    assert booked[key] == result["target_id"]
    lines = sorted((r for r in env.exact_rows(line_path) if r.get(key) == booked[key]), key=lambda r: r["LineNumber"])
    account = env.exact_account("inkoop@korenaar.example")  # the relation by e-mail: a company account, created
    assert booked["Customer" if document == "sales_entry" else "OrderedBy"] == account["ID"]
    assert account["Name"] == "Bakkerij De Korenaar B.V."
    if document == "sales_entry":  # revenue on G/L accounts (revenue_accounts: NL 8000), no items
        assert sorted(Decimal(str(line["AmountFC"])) for line in lines) == [Decimal("12"), Decimal("15")]
        assert {line["GLAccount"] for line in lines} == {env.code_id("financial/GLAccounts", "8000")}
    else:
        assert sorted((line["ItemCode"], line["Quantity"], Decimal(str(line["UnitPrice"]))) for line in lines) == [
            ("EX-KOFFIE", 1, Decimal("12")), ("EX-MUG", 2, Decimal("7.5"))]
    by_sku = {line.get("ItemCode") or Decimal(str(line["AmountFC"])): line for line in lines}
    mug = by_sku.get("EX-MUG") or by_sku[Decimal("15")]
    assert mug.get("CostCenter") == "CC-SERVIES" and mug.get("CostUnit") == "KD-WEB"  # cost_centres by SKU
    assert mug.get("VATCode") == "2"  # vat_codes by rate: 21 → 2
    assert all(booked_in_exact(env, other, order["orderNumber"]) == [] for other in EXACT_DOCUMENTS
               if other != document)  # fmt: skip
    assert asperion_orders(env) == []  # nothing new
    env.asperion_control("update", {"resource": "salesorders", "id": order["id"], "fields": {"remarks": "x"}})
    [again] = asperion_orders(env)
    assert again["outcome"] == "skipped" and again["reason"] == "already in Exact Online", again


@pytest.mark.parametrize("env", [{"asperion-orders": {"order_documents": ["sales_invoice"],
                                                      "document_type": "sales_invoice"}}], indirect=True)  # fmt: skip
def test_asperion_sales_invoices_are_read_when_chosen_and_a_person_updates_the_account(env: Env) -> None:
    [known] = env.exact_control("seed", {"entity": "crm/Accounts", "records": [
        {"Name": "J. Jansen", "Email": "jan@example.nl", "AddressLine1": "Oude weg 1", "City": "Elders",
         "Country": "NL", "Status": "C"}]})["ids"]  # fmt: skip
    invoice = env.asperion_order([("EX-MUG", 1, 7.5)], resource="salesinvoices", relation=env.relation(**NL_PERSON))
    [result] = asperion_orders(env, "salesinvoices")
    assert result["outcome"] == "created", result
    [booked] = booked_in_exact(env, "sales_invoice", invoice["invoiceNumber"])
    assert booked["OrderedBy"] == known  # found by e-mail, and updated from the relation (addresses differ)
    account = env.exact_account("jan@example.nl")
    assert (account["Name"], account["AddressLine1"], account["City"]) == ("Jan Jansen", "Dorpsstraat 3", "Ergens")
    assert not [c for c in env.exact_rows("crm/Contacts") if c.get("Account") == known]  # a person: no contact


@pytest.mark.parametrize("env", [{"asperion-orders": {"order_statuses": ["approved"],
                                                      "default_debtor": "DEB-WEB"}}], indirect=True)  # fmt: skip
def test_asperion_status_filter_default_debtor_and_missing_items(env: Env) -> None:
    [debtor] = env.exact_control("seed", {"entity": "crm/Accounts", "records": [
        {"Code": "DEB-WEB", "Name": "Webwinkel debiteur", "Status": "C"}]})["ids"]  # fmt: skip
    order = env.asperion_order([("EX-MUG", 1, 7.5)])
    [open_] = asperion_orders(env)
    assert (open_["outcome"], open_["reason"]) == ("skipped", "status 'open' is not synced")
    env.asperion_control("update", {"resource": "salesorders", "id": order["id"], "fields": {"status": "Approved"}})
    [booked] = asperion_orders(env)
    assert booked["outcome"] == "created", booked
    [in_exact] = booked_in_exact(env, "sales_order", order["orderNumber"])
    assert in_exact["OrderedBy"] == debtor  # the default debtor, no account made for the relation
    assert [a for a in env.exact_rows("crm/Accounts") if a.get("Email") == "inkoop@korenaar.example"] == []
    env.seeded("articles", {"code": "AS-ONLY", "description": "Alleen in Asperion"})
    env.asperion_order([("AS-ONLY", 1, 2.0)], status="Approved")
    with pytest.raises(PermanentError, match=r"SKU\(s\) AS-ONLY do not exist as items in Exact Online"):
        asperion_orders(env)


# -- the loop guard --------------------------------------------------------------------------------------------


def test_an_order_booked_from_exact_into_asperion_never_travels_back(env: Env) -> None:
    order_id = env.exact_order([("EX-MUG", 1, 7.5)])
    [booked] = exact_orders(env)
    assert booked["outcome"] == "created", booked
    [back] = asperion_orders(env)  # the Asperion sales order Koppel made, polled
    assert back["outcome"] == "skipped", back
    assert back["reason"] == f"Koppel booked it from Exact Online order {booked['number']}; not booked back into " \
                             "Exact Online"  # the booking integration's ledger holds it
    # without the ledger (lost, or another integration booked it), the document's recorded origin stops it
    env.conn.delete(keys.ledger("exact-orders", "orders"))
    env.asperion_control("update", {"resource": "salesorders", "id": int(booked["target_id"]),
                                    "fields": {"remarks": "gewijzigd"}})  # fmt: skip
    [again] = asperion_orders(env)
    assert again["outcome"] == "skipped", again
    assert again["reason"] == f"Koppel made it from Exact Online order {order_id} (exact:{order_id}); not booked back"
    assert len(env.exact_rows("salesorder/SalesOrders")) == 1  # only the original


def test_an_order_booked_from_asperion_into_exact_never_travels_back(env: Env) -> None:
    order = env.asperion_order([("EX-MUG", 1, 7.5)])
    [booked] = asperion_orders(env)
    assert booked["outcome"] == "created", booked
    [back] = exact_orders(env)  # the Exact sales order Koppel made, polled
    assert back["outcome"] == "skipped", back
    assert back["reason"] == f"Koppel booked it from Asperion order {order['orderNumber']}; not booked back into " \
                             "Asperion"
    assert len(env.records("salesorders")) == 1


def config_check(settings: dict[str, dict[str, Any]]) -> list[str]:
    """What `koppel config check` says of the pair with these settings."""
    config = make_config("http://127.0.0.1:1", "http://127.0.0.1:2", settings)
    problems = registry.config_problems(config)
    for index, integration in enumerate(config.integrations):
        target = config.system(integration.target)
        problems += validate_integration(integration, index, target_kind=target.kind if target else None)
    return problems


def test_config_check_accepts_the_pair_and_names_a_wrong_document_or_update_group() -> None:
    settings: dict[str, dict[str, Any]] = {
        "products": {"product_update": {"prices": False, "image": True, "attributes": False}},
        "exact-orders": {"document_type": "financial_mutation"},
        "exact-system": {"item_attributes": {"Class_01": "Kleur", "FreeBoolField_05": "Vegan"}},
        "asperion-orders": {"document_type": "sales_entry", "order_documents": ["sales_order", "sales_invoice"]},
    }
    assert config_check(settings) == []
    problems = config_check({"products": {"product_update": {"picture": False}},
                             "exact-orders": {"document_type": "sales_entry"},
                             "exact-system": {"item_attributes": {"FreeTextField_11": "x"}}})  # fmt: skip
    assert any(p.startswith("systems[0] (exact).settings.item_attributes: unknown Exact item field 'FreeTextField_11'")
               for p in problems), problems
    assert any("product_update.picture: unknown field group" in p and "image" in p for p in problems), problems
    assert "integrations[2].settings.document_type: Asperion books sales_order, sales_invoice, financial_mutation" \
        in problems, problems
