"""`koppel config check` and config loading: every problem with its key path, no secret echoed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connectors import registry
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError

GOOD = """
[gateway]
max_body_bytes = 262144
admin_token = "env:KOPPEL_TEST_ADMIN"

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:KOPPEL_TEST_WC"

[[systems]]
id = "exact"
kind = "exactonline"
[systems.settings]
client_id = "koppel-app"
redirect_uri = "https://koppel.example/oauth/exact/callback"
[systems.credentials]
client_secret = "env:KOPPEL_TEST_EXACT"

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders", "customers"]
"""

BAD = """
[gateway]
max_body_bytes = 10
colour = "blue"

[[endpoints]]
id = "shop"
kind = "magento"
secret = "s3cr3t-pasted-in-the-file"

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:KOPPEL_TEST_UNSET"

[[integrations]]
id = "x"
source = "nowhere"
target = "exact"
flows = ["invoices"]
"""


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("KOPPEL_TEST_WC", "wc-secret-value")
    monkeypatch.setenv("KOPPEL_TEST_EXACT", "exact-secret-value")
    monkeypatch.setenv("KOPPEL_TEST_ADMIN", "admin-token-value")
    monkeypatch.delenv("KOPPEL_TEST_UNSET", raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "koppel.toml"
    path.write_text(text)
    return path


def test_good_config_checks_ok(tmp_path, env, capsys):
    assert main(["config", "check", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "config ok: 1 endpoint(s), 1 system(s), 1 integration(s)" in capsys.readouterr().out


def test_config_file_from_environment_variable(tmp_path, env, monkeypatch, capsys):
    monkeypatch.setenv("KOPPEL_CONFIG", str(write(tmp_path, GOOD)))
    assert main(["config", "check"]) == 0


def test_secrets_resolve_from_environment_and_stay_hidden(tmp_path, env):
    config = load_config(write(tmp_path, GOOD))
    endpoint = config.endpoint("shop")
    assert endpoint is not None
    assert endpoint.secret.get_secret_value() == "wc-secret-value"
    assert "wc-secret-value" not in repr(config)
    assert "exact-secret-value" not in str(config.model_dump())


def test_bad_config_lists_every_problem_with_its_key_path_and_exits_2(tmp_path, env, capsys):
    assert main(["config", "check", "--config", str(write(tmp_path, BAD))]) == 2
    err = capsys.readouterr().err
    for expected in (
        "gateway.max_body_bytes: Input should be greater than or equal to 1024",
        "gateway.colour: unknown key",
        "endpoints[0].kind: unknown kind",
        "endpoints[0].secret: must be a reference of the form env:NAME",
        "endpoints[1].secret: environment variable KOPPEL_TEST_UNSET is not set",
        "integrations[0].flows[0]: Input should be",
    ):
        assert expected in err
    assert "s3cr3t-pasted-in-the-file" not in err


def test_cross_references_are_checked(tmp_path, env):
    text = GOOD.replace('source = "shop"', 'source = "nowhere"').replace('id = "exact"\nkind', 'id = "erp"\nkind')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "integrations[0].source: 'nowhere' is neither an endpoint nor a system" in info.value.problems
    assert "integrations[0].target: 'exact' is not a system" in info.value.problems


def test_duplicate_ids_are_rejected(tmp_path, env):
    text = GOOD + '\n[[endpoints]]\nid = "shop"\nkind = "woocommerce"\nsecret = "env:KOPPEL_TEST_WC"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert any("duplicate id 'shop'" in p for p in info.value.problems)


def test_a_system_with_an_endpoints_id_is_one_problem_in_one_line(tmp_path, env):
    text = GOOD.replace('id = "exact"\nkind', 'id = "shop"\nkind').replace('target = "exact"', 'target = "shop"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.problems == [
        "systems: id 'shop' is also an endpoint id (ids must be unique across endpoints and systems)"
    ]


def test_squarespace_secret_must_be_hex(tmp_path, env):
    text = GOOD.replace('kind = "woocommerce"', 'kind = "squarespace"')
    with pytest.raises(ConfigError) as info:
        registry.load(write(tmp_path, text))
    assert any("Squarespace webhook secret is hex" in p for p in info.value.problems)
    assert "wc-secret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("[gateway\n", "not valid TOML"), (None, "no such file")],
)
def test_unreadable_config_is_a_clear_error(tmp_path, env, capsys, text, message):
    path = write(tmp_path, text) if text is not None else tmp_path / "missing.toml"
    assert main(["config", "check", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_missing_config_says_how_to_give_one(monkeypatch, capsys):
    monkeypatch.delenv("KOPPEL_CONFIG", raising=False)
    assert main(["config", "check"]) == 2
    assert "pass --config PATH or set KOPPEL_CONFIG" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path, env):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", "--config", str(write(tmp_path, BAD))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "problem(s)" in result.stderr


def test_a_mapping_that_cannot_compile_is_rejected_by_config_check(tmp_path, env, capsys):
    text = GOOD + '\n[integrations.mappings.orders.exactonline]\nDescription = "number &"\n'
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "integrations[0].mappings.orders.exactonline.Description" in err


def test_an_exact_system_without_its_oauth_app_is_rejected(tmp_path, env, capsys):
    text = GOOD.replace('client_id = "koppel-app"\n', "")
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 2
    assert "systems[0] (exact).settings.client_id: required" in capsys.readouterr().err


SHOP_TARGET = """
[[systems]]
id = "webshop"
kind = "woocommerce"
base_url = "https://shop.example"
[systems.credentials]
consumer_key = "env:KOPPEL_TEST_WC"
consumer_secret = "env:KOPPEL_TEST_WC"

[[integrations]]
id = "exact-to-shop"
source = "exact"
target = "webshop"
flows = ["orders", "stock"]
"""


def test_a_complete_woocommerce_target_checks_ok(tmp_path, env):
    assert main(["config", "check", "--config", str(write(tmp_path, GOOD + SHOP_TARGET))]) == 0


def test_a_woocommerce_target_without_its_keys_is_rejected_naming_them(tmp_path, env, capsys):
    text = GOOD + SHOP_TARGET.replace('base_url = "https://shop.example"\n', "").replace(
        'consumer_secret = "env:KOPPEL_TEST_WC"\n', ""
    )
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "systems[1] (webshop).base_url: required" in err


def test_a_woocommerce_target_over_plain_http_is_rejected(tmp_path, env, capsys):
    text = GOOD + SHOP_TARGET.replace("https://shop.example", "http://shop.example")
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 2
    assert "systems[1] (webshop).base_url: WooCommerce base_url http://shop.example" in capsys.readouterr().err


def readme_config() -> str:
    """The TOML example under the README's "A minimal config"."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("A minimal config"):]
    start = section.index("```toml\n") + len("```toml\n")
    return section[start:section.index("```", start)]


def test_the_readmes_minimal_config_passes_config_check(tmp_path, monkeypatch, capsys):
    text = readme_config()
    names = re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', text)
    assert names  # the example takes its secrets from the environment
    for name in names:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 0, capsys.readouterr().err


def test_an_oauth_system_without_redirect_uri_or_admin_token_cannot_work(tmp_path, env, capsys):
    text = GOOD.replace('admin_token = "env:KOPPEL_TEST_ADMIN"\n', "").replace(
        'redirect_uri = "https://koppel.example/oauth/exact/callback"\n', ""
    )
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert "systems[0] (exact).settings.redirect_uri: required" in err
    assert "/oauth/exact/callback" in err
    assert "gateway.admin_token: required by systems[0] (exact)" in err


def test_a_string_where_a_list_belongs_is_reported_with_its_key_path(tmp_path, env, capsys):
    text = GOOD.replace('flows = ["orders", "customers"]', 'flows = "orders"')
    assert main(["config", "check", "--config", str(write(tmp_path, text))]) == 2
    assert "integrations[0].flows: Input should be a valid list" in capsys.readouterr().err


SEVERAL_STAGES = """
[gateway]
max_body_bytes = 10

[[endpoints]]
id = "shop"
kind = "woocommerce"
secret = "env:KOPPEL_TEST_WC"

[[systems]]
id = "broken"
kind = "magento"

[[systems]]
id = "exact"
kind = "exactonline"
[systems.credentials]
client_secret = "env:KOPPEL_TEST_EXACT"

[[integrations]]
id = "strings"
source = "shop"
target = "exact"
flows = "orders"

[[integrations]]
id = "shop-to-exact"
source = "shop"
target = "exact"
flows = ["orders"]
[integrations.settings]
order_mode = "teleport"
[integrations.mappings.orders.exactonline]
Description = "number &"
"""


def test_problems_of_every_stage_are_listed_in_one_run_with_the_files_key_paths(tmp_path, env, capsys):
    assert main(["config", "check", "--config", str(write(tmp_path, SEVERAL_STAGES))]) == 2
    err = capsys.readouterr().err
    for line in (
        "gateway.max_body_bytes:",  # the file's structure
        "systems[0].kind: unknown kind 'magento'",
        "integrations[0].flows: Input should be a valid list",
        "systems[1] (exact).settings.client_id: required",  # a system's settings, through its connector
        "gateway.admin_token: required by systems[1] (exact)",
        "integrations[1].settings.order_mode:",  # the integration against its systems
        "integrations[1].mappings.orders.exactonline.Description: does not compile",  # its mappings
    ):
        assert line in err
    assert "7 problem(s)" in err


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "koppel").exists() or shutil.which("redis-server") is None,
    reason="run.sh would install its environment first",
)
def test_run_sh_resolves_a_relative_config_from_where_it_is_called(tmp_path, env):
    write(tmp_path, GOOD)
    run_sh = [str(REPO / "run.sh"), "config", "check"]
    by_option = subprocess.run([*run_sh, "--config", "koppel.toml"], cwd=tmp_path, capture_output=True, text=True,
                               check=False)  # fmt: skip
    assert by_option.returncode == 0, by_option.stderr
    assert "config ok" in by_option.stdout
    positional = subprocess.run([*run_sh, "koppel.toml"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert positional.returncode == 0, positional.stderr
    by_variable = subprocess.run(run_sh, cwd=tmp_path, env={**os.environ, "KOPPEL_CONFIG": "koppel.toml"},
                                 capture_output=True, text=True, check=False)  # fmt: skip
    assert by_variable.returncode == 0, by_variable.stderr


def test_relative_paths_resolve_from_the_callers_directory_the_variable_names(tmp_path, env, monkeypatch, capsys):
    write(tmp_path, GOOD)
    monkeypatch.chdir(REPO)  # where run.sh runs Koppel
    monkeypatch.setenv("KOPPEL_CALLER_DIR", str(tmp_path))
    assert main(["config", "check", "--config", "koppel.toml"]) == 0
    assert "KOPPEL_CALLER_DIR" not in os.environ  # consumed: processes Koppel starts get absolute paths
    assert main(["config", "check", "--config", "koppel.toml"]) == 2  # without it, from the working directory
    assert "koppel.toml: no such file" in capsys.readouterr().err
