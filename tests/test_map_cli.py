import json
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.cli import main
from tests.mapping_support import FIXTURES

CONFIG = """\
# Koppel: shop to Exact
[gateway]
admin_token = "env:KOPPEL_TEST_UNSET_SECRET"

[[endpoints]]
id = "shop"                      # the WooCommerce shop
kind = "woocommerce"
secret = "env:KOPPEL_TEST_UNSET_SECRET"

[[systems]]
id = "exact"
kind = "exactonline"
[systems.settings]
client_id = "koppel-app"
redirect_uri = "https://koppel.example/oauth/exact/callback"
[systems.credentials]
client_secret = "env:KOPPEL_TEST_UNSET_SECRET"

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders", "customers"]

[integrations.settings]
shipping_item = "VERZEND"

# Our own order description
[integrations.mappings.orders.exactonline]
Description = "'Shop ' & number"   # short
SalesOrderLines.products.Description = "$left(sku & ' ' & name, 60)"

[integrations.tables.vat_codes]
default = "2"   # high rate
[integrations.tables.vat_codes.entries]
"9" = "1"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "koppel.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_prints_the_payload_with_placeholders(config, capsys):
    order = FIXTURES / "woocommerce" / "order_company_coupon.json"
    code, out, err = run(capsys, "map", "preview", "--config", str(config), "--integration", "shop-to-exact",
                         "--flow", "orders", "--input", str(order))  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    assert payload["Description"] == "Shop 5120" and payload["OrderedBy"] == "<account>"
    assert payload["SalesOrderLines"][0] == {
        "Item": "<items:MEEL-SPELT-5>",
        "Description": "MEEL-SPELT-5 Speltmeel 5 kg",
        "Quantity": 3,
        "UnitPrice": 11.25,
        "VATCode": "1",
    }
    assert '"UnitPrice": 11.25,' in out  # exact decimals, written as numbers
    assert "placeholders" in err and "account, items" in err


def test_preview_with_context_and_with_mapping_errors(config, capsys, tmp_path):
    order = FIXTURES / "woocommerce" / "order_company_coupon.json"
    context = tmp_path / "ids.json"
    context.write_text(json.dumps({"account": "acc", "items": {"MEEL-SPELT-5": "i1"}}))
    code, out, err = run(capsys, "map", "preview", "--config", str(config), "--integration", "shop-to-exact",
                         "--flow", "orders", "--input", str(order), "--context", str(context))  # fmt: skip
    assert code == 1 and out == ""
    assert err.startswith("koppel: woocommerce order 5120 cannot be mapped with shop-to-exact: orders -> exactonline")
    assert "  SalesOrderLines.products[2].Item = $id('items', sku): no items:BAK-PROFI-R40 id was resolved" in err


def test_preview_reads_the_source_shape_and_reports_what_is_wrong(config, capsys, tmp_path):
    bad = tmp_path / "order.json"
    bad.write_text(json.dumps({"id": 1, "line_items": [{"quantity": "two"}]}))
    argv = ["map", "preview", "--config", str(config), "--integration", "shop-to-exact", "--flow", "orders"]
    code, _, err = run(capsys, *argv, "--input", str(bad))
    assert code == 1 and "line_items[0].quantity: expected a decimal number" in err
    bad.write_text("{not json")
    code, _, err = run(capsys, *argv, "--input", str(bad))
    assert code == 2 and "is not JSON" in err
    code, _, err = run(capsys, *argv, "--input", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot be read" in err


def test_usage_and_config_errors_exit_2(config, capsys, tmp_path):
    code, _, err = run(capsys, "map", "diff", "--config", str(config), "--integration", "nope")
    assert code == 2 and "there is no integration 'nope' in the config (integrations: shop-to-exact)" in err
    code, _, err = run(
        capsys, "map", "show", "--config", str(config), "--integration", "shop-to-exact", "--flow", "stock"
    )
    assert code == 2 and "does not run the stock flow" in err
    code, _, err = run(capsys, "map", "diff", "--config", str(tmp_path / "none.toml"), "--integration", "x")
    assert code == 2 and "no such file" in err


def test_diff_shows_the_override_against_the_default(config, capsys):
    code, out, _ = run(capsys, "map", "diff", "--config", str(config), "--integration", "shop-to-exact")
    assert code == 0
    assert "--- default orders -> exactonline (sales_order)" in out
    assert "-Description = \"$left('Webshop order ' & number, 60)\"" in out
    assert "+Description = \"'Shop ' & number\"" in out
    assert "+SalesOrderLines.products.Description = \"$left(sku & ' ' & name, 60)\"" in out


def test_show_prints_the_effective_mapping_as_toml(config, capsys):
    code, out, _ = run(
        capsys, "map", "show", "--config", str(config), "--integration", "shop-to-exact", "--flow", "orders"
    )
    assert code == 0
    parsed = tomllib.loads(out)["integrations"]["mappings"]["orders"]["exactonline"]
    assert parsed["Description"] == "'Shop ' & number"
    shipping = "shipping_lines[$exists(total_excl) or $exists(total_incl)]"
    assert parsed["SalesOrderLines"]["shipping"]["_each"] == shipping


def test_reset_removes_the_override_and_keeps_everything_else(config, capsys):
    before = config.read_text()
    code, out, _ = run(
        capsys, "map", "reset", "--config", str(config), "--integration", "shop-to-exact", "--flow", "orders"
    )
    assert code == 0 and "the default mapping applies again" in out
    after = config.read_text()
    assert "[integrations.mappings.orders.exactonline]" not in after
    for kept in (
        'id = "shop"                      # the WooCommerce shop',
        'default = "2"   # high rate',
        "# Koppel: shop to Exact",
    ):
        assert kept in after
    expected = tomllib.loads(before)
    del expected["integrations"][0]["mappings"]
    assert tomllib.loads(after) == expected
    code, out, _ = run(
        capsys, "map", "reset", "--config", str(config), "--integration", "shop-to-exact", "--flow", "orders"
    )
    assert code == 0 and "nothing to reset" in out
    code, out, _ = run(capsys, "map", "diff", "--config", str(config), "--integration", "shop-to-exact")
    assert "uses the default mapping" in out


def test_reset_refuses_a_file_it_cannot_write(config, capsys, monkeypatch):
    monkeypatch.setattr(
        "transforms.configfile.os.access", lambda *_: False
    )  # as for a read-only file (root ignores modes)
    before = config.read_text()
    code, _, err = run(
        capsys, "map", "reset", "--config", str(config), "--integration", "shop-to-exact", "--flow", "orders"
    )
    assert code == 2 and "not writable" in err and config.read_text() == before


def test_reset_of_an_inline_override_keeps_the_rest(tmp_path, capsys):
    path = tmp_path / "k.toml"
    head = CONFIG.split("[integrations.settings]")[0]
    inline = head + 'mappings = { orders = { exactonline = { Description = "number" } }, customers = {} }\n'
    path.write_text(inline)
    code, _, err = run(
        capsys, "map", "reset", "--config", str(path), "--integration", "shop-to-exact", "--flow", "orders"
    )
    assert code == 0, err
    assert tomllib.loads(path.read_text())["integrations"][0]["mappings"] == {"customers": {}}


def test_config_check_rejects_a_mapping_that_cannot_compile(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KOPPEL_TEST_UNSET_SECRET", "s3cret")
    path = tmp_path / "k.toml"
    path.write_text(CONFIG.replace("\"'Shop ' & number\"", "\"'Shop ' & (number\""))
    code, _, err = run(capsys, "config", "check", "--config", str(path))
    assert code == 2
    assert "integrations[0].mappings.orders.exactonline.Description: does not compile" in err
    path.write_text(CONFIG)
    code, out, _ = run(capsys, "config", "check", "--config", str(path))
    assert code == 0 and "config ok" in out


def test_preview_of_a_product_takes_the_integrations_tax_setting(tmp_path, capsys):
    """`prices_include_tax` (the shop's setting, said in the integration) reaches the source's normaliser."""
    path = tmp_path / "koppel.toml"
    text = CONFIG.replace('flows = ["orders", "customers"]', 'flows = ["orders", "customers", "products"]')
    text = text.replace('shipping_item = "VERZEND"', "prices_include_tax = true")
    path.write_text(text.replace("[integrations.tables.vat_codes]\n",
                                 '[integrations.tables.tax_rates]\ndefault = "21"\n[integrations.tables.vat_codes]\n'))
    product = FIXTURES / "woocommerce" / "product_variable.json"
    code, out, err = run(capsys, "map", "preview", "--config", str(path), "--integration", "shop-to-exact",
                         "--flow", "products", "--input", str(product))  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["Code"] == json.loads(product.read_text())["sku"]
    # the shop's price includes 21 % (tables.tax_rates); Exact's item price is without it
    assert json.loads(product.read_text())["price"] == "11.88"
    assert Decimal(str(json.loads(out)["StandardSalesPrice"])) == Decimal("9.8182")
