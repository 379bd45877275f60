from decimal import Decimal

import pytest

from transforms.addresses import country_code, split_street
from transforms.errors import FunctionError
from transforms.functions import FUNCTIONS, RUN, Run
from transforms.tables import MappingTable

F = FUNCTIONS


@pytest.mark.parametrize(
    ("line", "street", "number", "addition"),
    [
        ("Keizersgracht 123-A", "Keizersgracht", "123", "A"),
        ("Rue de la Loi 16 bte 3", "Rue de la Loi", "16", "bte 3"),
        ("Laan van Meerdervoort 1a", "Laan van Meerdervoort", "1", "a"),
        ("2e Hugo de Grootstraat 7 hs", "2e Hugo de Grootstraat", "7", "hs"),
        ("Kerkstraat 12 II", "Kerkstraat", "12", "II"),
        ("Rue du 11 Novembre 5", "Rue du 11 Novembre", "5", None),
        ("Rue Haute 300 bus 4", "Rue Haute", "300", "bus 4"),
        ("16, rue de la Loi", "rue de la Loi", "16", None),
        ("Straße des 17. Juni 135", "Straße des 17. Juni", "135", None),
        ("Postbus", "Postbus", None, None),
    ],
)
def test_street_split_for_dutch_and_belgian_addresses(line, street, number, addition):
    assert split_street(line) == (street, number, addition)
    assert F["street"](line) == street
    assert F["houseNumber"](line) == number
    assert F["houseNumberAddition"](line) == addition


@pytest.mark.parametrize(
    ("name", "code"),
    [("Nederland", "NL"), ("NLD", "NL"), ("nl", "NL"), ("Belgium", "BE"), ("België", "BE"), ("Belgique", "BE"),
     ("Deutschland", "DE"), ("Verenigd Koninkrijk", "GB"), ("Österreich", "AT"), ("the Netherlands", "NL")],
)  # fmt: skip
def test_country_names_and_codes_become_alpha_2(name, code):
    assert country_code(name) == code
    assert F["country"](name) == code


def test_unknown_country_is_an_error_unless_a_fallback_is_given():
    with pytest.raises(FunctionError, match="not a country"):
        F["country"]("Atlantis")
    assert F["country"]("Atlantis", "XX") == "XX"
    assert F["country"](None) is None


def test_decimal_functions_are_exact_and_round_half_up():
    assert F["round"]("0.125", 2) == "0.13"
    assert F["round"]("2.675") == "2.68"  # a float would give 2.67
    assert F["round"]("-0.125", 2) == "-0.13"
    assert F["round"]("10", 2) == "10.00"
    assert F["add"]("0.1", "0.2") == "0.3"
    assert F["add"](["1.10", "2.20", None]) == "3.30"
    assert F["sub"]("10.00", "0.01") == "9.99"
    assert F["mul"]("10.19", 3) == "30.57"
    assert F["div"]("30.58", 3, 4) == "10.1933"
    assert F["div"]("1", "4") == "0.25"
    assert F["neg"]("5.00") == "-5.00"
    assert F["decimal"]("1E+2") == "100"
    with pytest.raises(FunctionError, match="division by zero"):
        F["div"]("1", "0")
    with pytest.raises(FunctionError, match="not a decimal number"):
        F["round"]("abc")
    with pytest.raises(FunctionError, match="decimal places"):
        F["round"]("1", 11)


def test_text_and_date_functions():
    assert F["coalesce"](None, "", "x") == "x"
    assert F["left"]("Koppel-Tasse „Blau“", 6) == "Koppel"
    assert F["fullName"]("Zoë", None, "Öztürk") == "Zoë Öztürk"
    assert F["joinNonEmpty"](" / ", "a", None, ["b", ""]) == "a / b"
    assert F["vatNumber"]("nl 8547.03.145.B01") == "NL854703145B01"
    assert F["upper"]("straße") == "STRASSE"
    assert F["formatDate"]("2026-03-14T23:30:00Z", "%Y-%m-%d", "Europe/Amsterdam") == "2026-03-15"
    assert F["formatDate"]("2026-03-14T23:30:00Z") == "2026-03-14"
    assert F["formatDate"]("2026-03-14", "%d-%m-%Y") == "14-03-2026"
    with pytest.raises(FunctionError, match="not a time zone"):
        F["formatDate"]("2026-03-14T23:30:00Z", "%Y", "Mars/Olympus")
    with pytest.raises(FunctionError, match="ISO 8601"):
        F["formatDate"]("14/03/2026")


def test_table_lookup_default_fallback_and_errors():
    tables = {"payment_methods": MappingTable.build("payment_methods", {"ideal": "IDEAL"}, default="BANK")}
    tables["vat_codes"] = MappingTable.build("vat_codes", {"NL:21": "2", "21": "3"})
    token = RUN.set(Run(tables=tables))
    try:
        assert F["table"]("payment_methods", "iDEAL") == "IDEAL"  # case-insensitive by default
        assert F["table"]("payment_methods", "paypal") == "BANK"
        assert F["table"]("vat_codes", ["BE:21", "21"]) == "3"
        assert F["table"]("vat_codes", ["BE:6"], None) is None
        with pytest.raises(FunctionError, match="mapping table 'vat_codes' has no entry for 'BE:6' and no default"):
            F["table"]("vat_codes", "BE:6")
        with pytest.raises(FunctionError, match="mapping table 'cost_units' is not configured"):
            F["table"]("cost_units", "x")
    finally:
        RUN.reset(token)


def test_runtime_ids_come_from_the_context_or_show_placeholders():
    token = RUN.set(Run(context={"account": "guid-a", "items": {"SKU-1": "guid-1"}}))
    try:
        assert F["id"]("account") == "guid-a"
        assert F["id"]("items", "sku-1") == "guid-1"  # item codes match case-insensitively
        with pytest.raises(FunctionError, match="no items:SKU-2 id was resolved"):
            F["id"]("items", "SKU-2")
    finally:
        RUN.reset(token)
    token = RUN.set(Run(placeholders=True))
    try:
        assert F["id"]("items", "SKU-2") == "<items:SKU-2>"
    finally:
        RUN.reset(token)


def test_decimals_in_and_out_never_become_floats():
    assert F["round"](Decimal("10.005"), 2) == "10.01"
    assert isinstance(F["add"](1.1, 2.2), str) and F["add"](1.1, 2.2) == "3.3"
