"""Every default order mapping of every target reconciles with the source order's total, for every source
order fixture (tests/fixtures/<source>/): the order is normalised, its discounts arranged as the target's
flow arranges them (`separate_discounts`, the target's `discount_lines`), mapped with every id resolved to
a placeholder, and the payload's lines are summed as the target books them.

How a target books decides what can be checked:

- amounts excl. and incl. VAT given per line (Exact sales entries, Asperion financial mutations):
  both sums equal the source's totals to the cent;
- unit prices * quantities at the order's basis (Exact: net; Asperion: net or gross as the header's
  `pricesIncludeVat`; Winstore: gross; WooCommerce: net line totals): the sum at that basis equals the
  source's total at that basis, within `LINE_ROUNDING` per line (the target rounds quantity * unit price
  to the cent; Winstore's unit prices are whole cents, so a unit price carries up to half a cent per unit:
  `LINE_ROUNDING` * quantity there);
- Business Central picks the basis itself (the document's `pricesIncludeTax` follows the customer's Prices
  Including VAT; the connector sends the line's `unitPrice` or `unitPriceIncludingTax` accordingly): each
  basis on which every line gives its price is checked as above (a basis some line lacks is one the
  connector refuses to book, failing the order for such a customer), and at least one basis must be whole;
- where the target computes the VAT itself from a rate the payload names (Exact's VAT code, which the
  test's `vat_codes` table spells as the rate; Asperion's `vatPercentage`), that VAT — rounded per line,
  as those systems do — brings the lines to the source's total incl. VAT within `VAT_ROUNDING` per line;
- where the target computes VAT from its own setup (Business Central's posting groups and items, a net
  WooCommerce order), only the basis the payload carries is checked: the other side is the target's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from connectors.asperion.normalise import normalise_document
from connectors.businesscentral.connector import priced_line
from connectors.businesscentral.normalise import normalise_sales_order as normalise_bc
from connectors.businesscentral.sandbox.store import Store as BCStore
from connectors.exactonline.normalise import normalise_sales_order as normalise_exact
from connectors.squarespace.normalise import normalise_order as normalise_squarespace
from connectors.winstore.normalise import normalise_order as normalise_winstore
from connectors.woocommerce.normalise import normalise_order as normalise_woocommerce
from gateway.model import Order, separate_discounts
from tests.mapping_support import FIXTURES, fixture, integration
from transforms import build_mapping
from transforms.registry import documents

CENT = Decimal("0.01")
LINE_ROUNDING = Decimal("0.005")
"""Per line: the target rounds quantity * unit price to the cent."""
VAT_ROUNDING = Decimal("0.005")
"""Per line: a target computing VAT rounds each line's VAT to the cent."""
RATES = ("0", "5.5", "6", "7", "9", "10", "19", "20", "21")

NORMALISERS: dict[str, Callable[[Any], Order]] = {
    "woocommerce": normalise_woocommerce,
    "squarespace": normalise_squarespace,
    "businesscentral": normalise_bc,
    "exactonline": normalise_exact,
    "winstore": normalise_winstore,
    "asperion": normalise_document,
}
ORDER_FIXTURES = {
    "woocommerce": ["order_company_coupon.json", "order_person_de.json"],
    "squarespace": ["order.json"],
    "businesscentral": ["sales_order.json"],
    "exactonline": ["sales_order.json"],
    "winstore": ["order_till_company.json"],
    "asperion": ["sales_order.json"],
}
TARGETS = sorted(p.name for p in (Path(__file__).parents[1] / "transforms" / "defaults" / "orders").iterdir()
                 if p.is_dir() and not p.name.startswith("_"))  # fmt: skip


@dataclass(frozen=True)
class Booked:
    """How one document books its lines: where they are, and what they mean."""

    lines: str
    unit: str | None = None
    """The unit price field (* `quantity`); None for documents that give line amounts."""
    quantity: str = "quantity"
    amount: str | None = None
    """The line amount field (excl. VAT), when the document gives amounts."""
    vat_amount: str | None = None
    gross: Callable[[Mapping[str, Any]], bool] = lambda payload: False
    """Whether unit prices include VAT (by the payload's header)."""
    unit_incl: str | None = None
    """A unit price incl. VAT beside `unit` (then excl. VAT), of which the target uses one by its own setting."""
    rate: str | None = None
    """The field naming the line's VAT rate, for targets that compute the VAT themselves."""
    whole_cents: bool = False
    """Unit prices rounded to the cent: each unit may carry half a cent."""


BOOKED: dict[tuple[str, str], Booked] = {
    ("exactonline", "sales_order"): Booked("SalesOrderLines", "UnitPrice", "Quantity", rate="VATCode"),
    ("exactonline", "sales_invoice"): Booked("SalesInvoiceLines", "UnitPrice", "Quantity", rate="VATCode"),
    ("exactonline", "direct_invoice"): Booked("SalesInvoiceLines", "UnitPrice", "Quantity", rate="VATCode"),
    ("exactonline", "sales_entry"): Booked("SalesEntryLines", amount="AmountFC", vat_amount="VATAmountFC"),
    ("businesscentral", "sales_order"): Booked("salesOrderLines", "unitPrice", unit_incl="unitPriceIncludingTax"),
    ("businesscentral", "sales_invoice"): Booked("salesInvoiceLines", "unitPrice", unit_incl="unitPriceIncludingTax"),
    ("asperion", "sales_order"): Booked("lines", "unitPrice", gross=lambda p: bool(p["pricesIncludeVat"]),
                                        rate="vatPercentage"),
    ("asperion", "sales_invoice"): Booked("lines", "unitPrice", gross=lambda p: bool(p["pricesIncludeVat"]),
                                          rate="vatPercentage"),
    ("asperion", "financial_mutation"): Booked("lines", amount="amount", vat_amount="vatAmount"),
    ("winstore", "order"): Booked("positions", "single_price", "amount", gross=lambda p: True, whole_cents=True),
    ("woocommerce", "order"): Booked("line_items", amount="total"),
}  # fmt: skip
"""WooCommerce: line_items, shipping_lines and fee_lines carry net totals (`amount`); see `_lines`."""


def _cases() -> list[Any]:
    cases = []
    for source, names in ORDER_FIXTURES.items():
        for name in names:
            for target in TARGETS:
                for document in documents("orders", target):
                    ident = f"{source}/{Path(name).name}->{target}/{document}"
                    cases.append(pytest.param(source, name, target, document, id=ident))
    return cases


def test_every_target_document_and_source_fixture_is_covered() -> None:
    shipped = {(t, d) for t in TARGETS for d in documents("orders", t)}
    assert shipped == set(BOOKED), "a default order mapping without a reconciliation rule: add it to BOOKED"
    assert set(ORDER_FIXTURES) == set(NORMALISERS)
    for source, names in ORDER_FIXTURES.items():
        for name in names:
            assert (FIXTURES / source / name).is_file()


def _order(source: str, name: str) -> Order:
    order = NORMALISERS[source](fixture(f"{source}/{name}"))
    assert order.total_incl is not None or order.total_excl is not None, f"{source}/{name}: the source gives no total"
    return order


def _context(order: Order) -> dict[str, Any]:
    skus = [line.sku for line in order.lines if line.sku] + ["SHIPPING", "FEE", "DISCOUNT"]
    return {
        "account": "1001", "customer": "999999", "branch": "1", "warehouse": "WAREHOUSE", "origin": "src:1",
        "items": {sku: f"ITEM-{sku}" for sku in skus}, "gl_accounts": {"8000": "GL-8000"},
    }  # fmt: skip


def _lines(payload: Mapping[str, Any], target: str, booked: Booked) -> list[Mapping[str, Any]]:
    if target == "woocommerce":
        return [*payload.get("line_items", []), *payload.get("shipping_lines", []), *payload.get("fee_lines", [])]
    found = payload[booked.lines]
    assert isinstance(found, list)
    return found


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


@pytest.mark.parametrize(("source", "name", "target", "document"), _cases())
def test_the_payload_reconciles_with_the_source_orders_total(source: str, name: str, target: str, document: str):
    order = _order(source, name)
    settings = {"document_type": document}
    target_class = registry.get(target).target
    assert target_class is not None
    order = separate_discounts(order, from_lines=target_class.discount_lines_of(settings) == "separate")
    tables = {"vat_codes": {"entries": {rate: rate for rate in RATES}}, "revenue_accounts": {"default": "8000"}}
    mapping = build_mapping(integration(settings=settings, tables=tables), "orders", target)
    payload = mapping.apply(order, _context(order), label=f"{source} order {order.number}")
    booked = BOOKED[(target, document)]
    lines = _lines(payload, target, booked)
    assert lines, "no lines"
    total_incl = order.total_incl
    total_excl = order.total_excl
    if total_excl is None and order.tax_total is not None and total_incl is not None:
        total_excl = total_incl - order.tax_total
    where = f"{source} order {order.number} as {target} {document}"

    if booked.amount is not None:  # amounts per line: net (and VAT) exact to the cent
        net = sum((_d(line[booked.amount]) for line in lines), Decimal(0))
        assert total_excl is not None, f"{where}: the source gives no total excl. VAT"
        assert net == total_excl, f"{where}: lines excl. VAT {net} != the source's {total_excl}"
        if booked.vat_amount is not None and total_incl is not None:  # (Exact's sales orders give only excl.)
            vat = sum((_d(line.get(booked.vat_amount) or 0) for line in lines), Decimal(0))
            assert net + vat == total_incl, f"{where}: lines incl. VAT {net + vat} != the source's {total_incl}"
        # WooCommerce computes the VAT itself from its own tax classes: only the net side is the payload's.
        return

    assert booked.unit is not None
    if booked.unit_incl is None:
        bases = [(booked.unit, booked.gross(payload))]
    else:  # the target picks: every basis all lines give a price on (BC fails the order on another)
        bases = [(unit, gross) for unit, gross in ((booked.unit, False), (booked.unit_incl, True))
                 if all(line.get(unit) is not None for line in lines)]  # fmt: skip
        assert bases, f"{where}: no basis on which every line gives a unit price: Business Central books it for no one"
        given = [gross for gross in (False, True) if _source_prices(order, gross)]
        assert [gross for _, gross in bases] == given, f"{where}: the lines price {bases}, the source gives {given}"
    checked = [_check_basis(where, lines, booked, unit, gross, total_excl, total_incl) for unit, gross in bases]
    if not any(checked):  # an Exact sales order gives its total excl. VAT only; a till's order incl. only
        pytest.skip(f"{where}: the source gives no total on the basis the target books")


def _source_prices(order: Order, gross: bool) -> bool:
    """Whether the (discount-arranged) order gives every line's price on this basis."""
    lines = [line.net_unit_price_incl if gross else line.net_unit_price_excl for line in order.lines]
    others = [item.total_incl if gross else item.total_excl for item in [*order.shipping_lines, *order.fees]
              if item.total_excl is not None or item.total_incl is not None]  # fmt: skip
    discounts = [d.amount_incl if gross else d.amount_excl for d in order.discounts if not d.applied_to_lines]
    return all(value is not None for value in [*lines, *others, *discounts])


def _check_basis(where: str, lines: list[Mapping[str, Any]], booked: Booked, unit: str, gross: bool,
                 total_excl: Decimal | None, total_incl: Decimal | None) -> bool:  # fmt: skip
    """The lines' unit prices (`unit`, incl. VAT if `gross`) reconciled with the source's total on that basis;
    False when the source gives no such total."""
    wanted = total_incl if gross else total_excl
    if wanted is None:
        return False
    on = "incl." if gross else "excl."
    amounts = [_cents(_d(line[unit]) * _d(line.get(booked.quantity, 1))) for line in lines]
    slack = sum(
        (LINE_ROUNDING * (abs(_d(line.get(booked.quantity, 1))) if booked.whole_cents else 1) for line in lines),
        Decimal(0),
    )
    basis = sum(amounts, Decimal(0))
    assert abs(basis - wanted) <= slack, f"{where}: lines {on} VAT {basis} != the source's {wanted} (± {slack})"
    if gross or booked.rate is None:
        return True  # gross: the total incl. VAT is what was checked; no rate: the target's own VAT setup decides
    rates = [line.get(booked.rate) for line in lines]
    unrated = [i for i, (a, r) in enumerate(zip(amounts, rates, strict=True)) if a and r is None]
    assert not unrated, f"{where}: line(s) {unrated} with an amount and no VAT rate: {rates}"
    rates = [r if r is not None else 0 for r in rates]  # a free line: no VAT whatever its rate
    vat = sum((_cents(a * _d(r) / 100) for a, r in zip(amounts, rates, strict=True)), Decimal(0))
    if total_incl is None:
        return True  # the source gives no total incl. VAT: the net side is what it says
    assert abs(basis + vat - total_incl) <= slack + VAT_ROUNDING * len(lines), (
        f"{where}: lines with the VAT the target computes {basis + vat} != the source's {total_incl}"
    )
    return True


@pytest.mark.parametrize("incl", [False, True], ids=["customer-excl-vat", "customer-incl-vat"])
@pytest.mark.parametrize(("document", "entity", "lines_key"), [("sales_order", "salesOrders", "salesOrderLines"),
                                                               ("sales_invoice", "salesInvoices", "salesInvoiceLines")])
def test_a_squarespace_promotion_reaches_business_centrals_totals(document: str, entity: str, lines_key: str,
                                                                  incl: bool):  # fmt: skip
    """The Business Central sandbox's own arithmetic (header, then lines priced on the basis the customer's Prices
    Including VAT gave the document, as the connector writes them) gives the Squarespace order's totals to the
    cent, whichever the customer's setting: the promotion is a line of its own, nothing is lost."""
    store = BCStore(lambda: 1_800_000_000.0)
    company = store.add_company("CRONUS")["id"]
    items = {sku: store.create(company, "items", {"number": sku, "displayName": sku})["id"]
             for sku in ("SQ-CANDLE-L", "SQ-CARD", "SHIPPING", "DISCOUNT")}  # fmt: skip
    customer = store.create(company, "customers", {"displayName": "Marie Dupont"})["id"]
    store.change(company, "customers", customer, {"pricesIncludingVat": incl})  # the customer card, in BC
    order = separate_discounts(_order("squarespace", "order.json"), from_lines=False)
    mapping = build_mapping(integration(settings={"document_type": document}), "orders", "businesscentral")
    payload = json.loads(json.dumps(mapping.apply(order, {"account": customer, "items": items}), default=str))
    header = store.create(company, entity, {k: v for k, v in payload.items() if k != lines_key})
    assert header["pricesIncludeTax"] is incl
    for line in payload[lines_key]:
        store.add_line(company, entity, header["id"], priced_line(line, header["pricesIncludeTax"]))
    booked = store.get(company, entity, header["id"])
    [promotion] = [d for d in order.discounts if not d.applied_to_lines]
    assert promotion.amount_incl is not None and promotion.amount_excl is not None
    price = promotion.amount_incl if incl else promotion.amount_excl
    assert len(booked[lines_key]) == 4 and _d(booked[lines_key][-1]["unitPrice"]) == -price
    assert (_d(booked["totalAmountIncludingTax"]), _d(booked["totalTaxAmount"])) == (order.total_incl, order.tax_total)
