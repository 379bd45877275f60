from tests.mapping_support import integration
from transforms import validate_integration
from transforms.tables import CONVENTIONAL_TABLES, MappingTable, parse_tables


def test_tables_parse_with_default_entries_and_case_rules():
    tables, problems = parse_tables(
        {
            "payment_methods": {"default": "BANK", "entries": {"ideal": "IDEAL", "default": "DEF"}},
            "vat_codes": {"case_sensitive": True, "entries": {"NL": "2", "nl": "9"}},
            "attributes": {"entries": {"Kleur": {"name": "Colour", "visible": True}}},
        }
    )
    assert problems == []
    assert tables["payment_methods"].find("Default") == (True, "DEF")  # "default" can be a key
    assert tables["payment_methods"].has_default
    assert tables["vat_codes"].find("nl") == (True, "9") and tables["vat_codes"].find("Nl") == (False, None)
    assert tables["attributes"].find("kleur") == (True, {"name": "Colour", "visible": True})


def test_table_problems_name_the_table_and_key():
    _, problems = parse_tables(
        {
            "flat": {"ideal": "IDEAL"},
            "floats": {"entries": {"NL": 0.21}},
            "dupes": {"entries": {"IDEAL": "a", "ideal": "b"}},
            "odd": "x",
            "flag": {"case_sensitive": "no", "entries": {}},
        }
    )
    text = "\n".join(f"{p}: {r}" for p, r in problems)
    assert "flat.ideal: unknown key; put entries under [integrations.tables.flat.entries]" in text
    assert 'floats.entries.NL: decimal values must be written as text ("0.21")' in text
    assert "dupes.entries.ideal: same key as 'IDEAL' when case is ignored" in text
    assert "odd: a mapping table is a TOML table" in text
    assert "flag.case_sensitive: must be true or false" in text


def test_conventional_tables_cover_the_spec():
    for name in ("payment_methods", "payment_conditions", "shipping_methods", "vat_codes", "revenue_accounts",
                 "cost_centres", "cost_units", "customer_classifications", "attributes", "features"):  # fmt: skip
        assert name in CONVENTIONAL_TABLES


def test_config_check_reports_table_problems_and_missing_tables():
    bad = integration(
        flows=["orders"],
        settings={"document_type": "sales_entry"},
        tables={"vat_codes": {"entries": {"21": 2.0}}},
        mappings={"orders": {"exactonline": {"Description": "number"}}},
    )
    problems = validate_integration(bad, 3)
    assert "integrations[3].tables.vat_codes.entries.21: decimal values must be written as text" in problems[0]
    assert any(
        p.startswith("integrations[3].mappings.orders.exactonline.SalesEntryLines.products.GLAccount: uses mapping "
                     "table 'revenue_accounts', which is not defined")
        for p in problems
    )  # fmt: skip


def test_lookup_is_by_exact_key_when_case_sensitive():
    table = MappingTable.build("t", {"A": 1}, case_sensitive=True)
    assert table.find("A") == (True, 1) and table.find("a") == (False, None)
