"""`koppel config check` for a Winstore system: its settings, credentials, and the flows it gives and takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

WINSTORE = """
[[systems]]
id = "winstore"
kind = "winstore"
base_url = "https://winstore-c.aca.nl/iposws/api/osd"
[systems.credentials]
username = "env:KOPPEL_TEST_WS_USER"
password = "env:KOPPEL_TEST_WS_PASSWORD"
[systems.settings]
branch = 1
channel = "webshop"
warehouses = [1, 2]
"""

SHOP = """
[[systems]]
id = "shop"
kind = "woocommerce"
base_url = "https://shop.example"
[systems.credentials]
consumer_key = "env:KOPPEL_TEST_WS_USER"
consumer_secret = "env:KOPPEL_TEST_WS_PASSWORD"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOPPEL_TEST_WS_USER", "koppel")
    monkeypatch.setenv("KOPPEL_TEST_WS_PASSWORD", "s3cret-value")


def check(tmp_path: Path, text: str) -> int:
    path = tmp_path / "koppel.toml"
    path.write_text(text, encoding="utf-8")
    return main(["config", "check", "--config", str(path)])


def test_a_complete_winstore_system_checks_ok(tmp_path, env):
    integrations = """
[[integrations]]
id = "shop-to-winstore"
source = "shop"
target = "winstore"
flows = ["orders"]

[[integrations]]
id = "winstore-to-shop"
source = "winstore"
target = "shop"
flows = ["products", "stock"]
"""
    assert check(tmp_path, WINSTORE + SHOP + integrations) == 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('base_url = "https://winstore-c.aca.nl/iposws/api/osd"\n', ""), "base_url: required"),
        (('password = "env:KOPPEL_TEST_WS_PASSWORD"\n', ""), "credentials.password: required"),
        (("https://winstore-c", "http://winstore-c"), "base_url: must be https://"),
        (("branch = 1", 'branch = "main"'), "settings.branch: Input should be a valid integer"),
        (("warehouses = [1, 2]", "warehouses = [1, 1]"), "settings.warehouses: lists a warehouse twice"),
        (("warehouses = [1, 2]", 'timezone = "Mars/Olympus"'), "settings.timezone: unknown time zone"),
        (("branch = 1", "brnach = 1"), "settings.brnach: unknown key"),
    ],
)
def test_a_wrong_winstore_system_is_reported_with_its_key_path(tmp_path, env, capsys, change, problem):
    old, new = change
    assert check(tmp_path, WINSTORE.replace(old, new)) == 2
    out = capsys.readouterr()
    assert problem in out.out + out.err and "s3cret-value" not in out.out + out.err


def test_flows_winstore_cannot_give_or_take_are_refused(tmp_path, env, capsys):
    integrations = """
[[integrations]]
id = "winstore-orders"
source = "winstore"
target = "shop"
flows = ["orders", "customers"]

[[integrations]]
id = "products-into-winstore"
source = "shop"
target = "winstore"
flows = ["products", "stock"]
"""
    assert check(tmp_path, WINSTORE + SHOP + integrations) == 2
    captured = capsys.readouterr()
    out = captured.out + captured.err
    for problem in ("winstore (winstore) cannot take products",):
        assert problem in out
    assert "cannot take stock" not in out
    assert "winstore (winstore) cannot give" not in out  # orders and customers are read (assumed endpoints)


def test_an_endpoint_name_winstore_documents_otherwise_is_a_setting_and_a_typo_is_named(tmp_path, env, capsys):
    corrected = WINSTORE + 'endpoints = { orders = "GetOrderChangesByDate" }\n'
    assert check(tmp_path, corrected) == 0
    assert check(tmp_path, WINSTORE + 'endpoints = { order = "GetOrders" }\n') == 2
    out = capsys.readouterr()
    assert "settings.endpoints: unknown key 'order'; known: orders, customers, order_status, stock" in out.out + out.err


def test_booking_orders_into_winstore_without_a_branch_is_reported(tmp_path, env, capsys):
    integrations = """
[[integrations]]
id = "shop-to-winstore"
source = "shop"
target = "winstore"
flows = ["orders"]
"""
    assert check(tmp_path, WINSTORE.replace("branch = 1\n", "") + SHOP + integrations) == 2
    captured = capsys.readouterr()
    assert "integrations[0].target: winstore books orders on systems.settings.branch" in captured.out + captured.err
    assert check(tmp_path, WINSTORE.replace("branch = 1\n", "") + SHOP) == 0  # only when orders are booked there


STOCK_INTO_WINSTORE = """
[gateway]
admin_token = "env:KOPPEL_TEST_WS_PASSWORD"

[[systems]]
id = "exact"
kind = "exactonline"
[systems.credentials]
client_secret = "env:KOPPEL_TEST_WS_PASSWORD"
[systems.settings]
client_id = "koppel"
redirect_uri = "https://koppel.example/oauth/exact/callback"

[[integrations]]
id = "exact-to-winstore"
source = "exact"
target = "winstore"
flows = ["stock"]
"""


def test_stock_into_winstore_with_several_warehouses_and_no_stock_warehouse_is_reported(tmp_path, env, capsys):
    assert check(tmp_path, WINSTORE + SHOP + STOCK_INTO_WINSTORE) == 2
    captured = capsys.readouterr()
    assert ("integrations[0].target: winstore takes stock into one warehouse: set systems.settings.stock_warehouse"
            in captured.out + captured.err)  # fmt: skip
    chosen = WINSTORE.replace("warehouses = [1, 2]", "warehouses = [1, 2]\nstock_warehouse = 2")
    assert check(tmp_path, chosen + SHOP + STOCK_INTO_WINSTORE) == 0
    one = WINSTORE.replace("warehouses = [1, 2]", "warehouses = [3]")  # the one warehouse read is the one written
    assert check(tmp_path, one + SHOP + STOCK_INTO_WINSTORE) == 0
    assert check(tmp_path, WINSTORE + SHOP + STOCK_INTO_WINSTORE.replace('"stock"', '"orders"')) == 0  # stock only


@pytest.mark.parametrize(
    ("endpoints", "problem"),
    [
        ('{ stok = "PostStock" }', "settings.endpoints: unknown key 'stok'; known: orders, customers, "
                                   "order_status, stock"),
        ('{ stock = "Post Stock?x=1" }', "settings.endpoints: stock: 'Post Stock?x=1' is not an "
                                         "endpoint name"),
    ],
)  # fmt: skip
def test_an_endpoint_override_must_name_a_known_operation_and_an_endpoint(tmp_path, env, capsys, endpoints, problem):
    text = WINSTORE + f"endpoints = {endpoints}\n"
    assert check(tmp_path, text) == 2
    out = capsys.readouterr()
    assert problem in out.out + out.err
    assert check(tmp_path, WINSTORE + 'endpoints = { stock = "PostStockLevel" }\n') == 0
