"""`koppel init`: the set-up wizard writes a config `koppel config check` passes, for every pair, asked at a
prompt (answers from stdin) or from options; bad answers are asked again, the end of the input writes nothing."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from connectors import registry
from gateway import wizard
from gateway.cli import main
from gateway.pairs import PAIRS

REPO = Path(__file__).resolve().parents[1]

REQUIRED = {
    "shop.base_url": "https://shop.example",
    "exact.client_id": "koppel-app",
    "bc.tenant": "contoso.onmicrosoft.com",
    "bc.client_id": "bc-app",
    "bc.company": "CRONUS NL",
    "asperion.client_id": "asperion-app",
    "asperion.tenant_id": "12345",
}
"""An answer for each step without a default, by system."""

ENV = {"KOPPEL_ADMIN_TOKEN": "admin", "WC_CONSUMER_KEY": "ck", "WC_CONSUMER_SECRET": "cs", "WC_WEBHOOK_SECRET": "wh",
       "EXACT_CLIENT_SECRET": "es", "BC_CLIENT_SECRET": "bs", "BC_HOOK_SECRET": "bh", "WINSTORE_USER": "u",
       "WINSTORE_PASSWORD": "p", "ASPERION_CLIENT_SECRET": "as", "SQUARESPACE_API_KEY": "sq",
       "SQ_HOOK_SECRET": "00ff"}  # fmt: skip
"""Every environment variable the defaults name."""


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KOPPEL_LAUNCHER", raising=False)


@pytest.fixture
def no_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KOPPEL_LAUNCHER", raising=False)


def required(pair: str) -> list[str]:
    systems = wizard.PAIR_SPECS[pair].systems
    given = [f"{key}={value}" for key, value in REQUIRED.items() if key.split(".")[0] in systems]
    return [arg for answer in given for arg in ("--set", answer)]


def stdin(monkeypatch, *lines: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))


def read(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# -- the pairs ------------------------------------------------------------------------------------------


def test_the_wizard_sets_up_the_demos_pairs_with_a_note_each_and_its_extra_flows_beyond_them():
    assert set(wizard.PAIR_SPECS) == set(PAIRS)
    demo = {i.id: i for pair in PAIRS.values() for i in pair.integrations}
    assert set(wizard.NOTES) == set(demo)  # every integration is explained in the file, no note is stale
    for integration, flows in wizard.EXTRA_FLOWS.items():
        assert not set(flows) & set(demo[integration].flows), integration  # extra: not the demo's already


def test_every_flow_the_wizard_offers_is_one_the_source_gives_and_the_target_takes():
    for spec in wizard.PAIR_SPECS.values():
        for link in spec.links:
            source, target = (registry.get(wizard.SYSTEM_KINDS[s]) for s in (link.source, link.target))
            assert set(link.flows) <= source.reads & target.writes, link.id
            assert not link.webhooks or source.handler is not None, link.id


@pytest.mark.parametrize("pair", sorted(wizard.PAIR_SPECS))
def test_every_pairs_file_from_defaults_passes_config_check(pair, tmp_path, env, capsys):
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path), "--pair", pair, "--yes", *required(pair)]) == 0
    out = capsys.readouterr().out
    assert "config check: config ok" in out
    assert main(["config", "check", str(path)]) == 0
    data = read(path)
    spec = wizard.PAIR_SPECS[pair]
    assert [s["id"] for s in data["systems"]] == list(spec.systems)
    assert [i["id"] for i in data["integrations"]] == [link.id for link in spec.links]  # every flow by default
    assert "env:" in path.read_text() and "# " in path.read_text()  # secrets by name; commented


@pytest.mark.parametrize("pair", sorted(wizard.PAIR_SPECS))
def test_every_pairs_file_with_one_flow_each_way_passes_config_check(pair, tmp_path, env):
    spec = wizard.PAIR_SPECS[pair]
    first, second = spec.systems
    there, back = spec.flows(first, second)[-1], spec.flows(second, first)[-1]
    path = tmp_path / "koppel.toml"
    answers = ["--set", f"flows={there}", "--set", f"flows_back={back}", "--set", "winstore.warehouses=1,2"]
    if "winstore" not in spec.systems:
        answers = answers[:4]
    assert main(["init", str(path), "--pair", pair, "--yes", *required(pair), *answers]) == 0
    assert main(["config", "check", str(path)]) == 0
    flows = {(i["source"], i["target"]): i["flows"] for i in read(path)["integrations"]}
    assert sorted(f for f in flows.values()) == sorted([[there], [back]])


def test_flows_go_in_each_direction_the_pair_carries_them(tmp_path, env):
    path = tmp_path / "koppel.toml"
    argv = ["init", str(path), "--pair", "woocommerce-exactonline", "--flows", "orders,stock", "--yes"]
    assert main([*argv, *required("woocommerce-exactonline")]) == 0
    integrations = {i["id"]: i for i in read(path)["integrations"]}
    assert integrations["shop-to-exact"]["flows"] == ["orders"]
    assert integrations["shop-to-exact"]["source"] == "shop-hooks"  # the shop's webhooks: an endpoint
    assert integrations["exact-to-shop"]["flows"] == ["orders", "stock"]
    assert read(path)["systems"][1]["settings"]["redirect_uri"] == "http://127.0.0.1:8000/oauth/exact/callback"


def test_only_the_webhook_source_of_a_chosen_flow_gets_an_endpoint(tmp_path, env):
    path = tmp_path / "koppel.toml"
    argv = ["init", str(path), "--pair", "winstore-businesscentral", "--flows", "stock", "--yes"]
    assert main([*argv, *required("winstore-businesscentral")]) == 0
    data = read(path)
    assert "endpoints" not in data  # BC's orders come by webhook; its stock is polled
    assert [i["id"] for i in data["integrations"]] == ["bc-stock-to-winstore"]
    assert main(["config", "check", str(path)]) == 0


# -- scripts: options --------------------------------------------------------------------------------------


def test_yes_names_every_step_without_answer_and_writes_nothing(tmp_path, env, capsys):
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path), "--pair", "exactonline-asperion", "--yes"]) == 2
    err = capsys.readouterr().err
    for key in ("exact.client_id", "asperion.client_id", "asperion.tenant_id"):
        assert f"{key}: an answer is needed" in err
    assert "--set KEY=VALUE" in err
    assert not path.exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--pair", "shop-erp"], "pair: 'shop-erp' is not one of the choices: woocommerce-exactonline"),
        (["--pair", "squarespace-exactonline", "--flows", "customers"], "carries no customers"),
        (["--flows", "orders"], "--flows needs the pair"),
        (["--set", "shop.colour=red"], "--set shop.colour: no such step"),
        (["--set", "ck_live_123"], "--set takes KEY=VALUE"),
        (["--pair", "squarespace-exactonline", "--set", "shop.base_url=https://x.example"], "not asked in this set-up"),
        (["--set", "exact.client_secret=s3cr3t value!"], "exact.client_secret: the NAME of an environment variable"),
        (["--set", "gateway.public_url=koppel.example"], "gateway.public_url: 'koppel.example' is not an absolute"),
        (["--set", "flows=none", "--set", "flows_back=none"], "at least one flow"),
    ],
)
def test_bad_options_are_refused_with_the_reason(argv, says, tmp_path, env, capsys):
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path), "--yes", *required("woocommerce-exactonline"), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert "s3cr3t" not in err and "ck_live" not in err  # what may be a secret is not echoed
    assert not path.exists()


def test_an_existing_file_is_kept_unless_force(tmp_path, env, capsys):
    path = tmp_path / "koppel.toml"
    path.write_text("# mine\n")
    argv = ["init", str(path), "--pair", "woocommerce-exactonline", "--yes", *required("woocommerce-exactonline")]
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert main([*argv, "--force"]) == 0
    assert read(path)["gateway"]["admin_token"] == "env:KOPPEL_ADMIN_TOKEN"


# -- at the prompt -------------------------------------------------------------------------------------------

SQ_SESSION = [
    "5",                        # pair: squarespace-exactonline, by its number
    "orders, carrots",          # flows there: refused (no such flow), asked again
    "",                         # flows there: the default (orders)
    "stock",                    # flows back
    "https://koppel.example/",  # public URL (the trailing / dropped)
    "my admin token!",          # refused: not a variable's name
    "env:ADMIN",                # admin token: env: is optional
    "SQ_KEY",                   # Squarespace API key
    "",                         # webhook secret: SQ_HOOK_SECRET
    "",                         # Exact's URL: the default
    "",                         # client id: needed, asked again
    "exact-app",
    "",                         # client secret: EXACT_CLIENT_SECRET
    "twelve",                   # division: refused
    "42",
]  # fmt: skip


def test_the_prompt_asks_each_step_and_asks_again_on_a_bad_answer(tmp_path, env, monkeypatch, capsys):
    monkeypatch.setenv("ADMIN", "a")
    monkeypatch.setenv("SQ_KEY", "k")
    stdin(monkeypatch, *SQ_SESSION, "n", "n")  # then: no consent, no webhooks now
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path)]) == 0
    out = capsys.readouterr().out
    assert "carrots: not a flow of this direction; it carries orders" in out
    assert "the NAME of an environment variable" in out and "my admin token" not in out
    assert "an answer is needed" in out
    assert "'twelve' is not a whole number" in out
    assert "pair [woocommerce-exactonline]:" in out  # defaults in brackets
    assert f"koppel connect exact --config {path}" in out  # declined: the command printed
    assert f"koppel endpoints sync --config {path}" in out
    data = read(path)
    assert data["gateway"] == {"public_url": "https://koppel.example", "admin_token": "env:ADMIN"}
    assert data["endpoints"] == [{"id": "sq-hooks", "kind": "squarespace", "system": "sq",
                                  "secret": "env:SQ_HOOK_SECRET"}]  # fmt: skip
    exact = data["systems"][1]  # the pair's order: Squarespace, then Exact
    assert exact["settings"] == {"client_id": "exact-app", "redirect_uri": "https://koppel.example/oauth/exact/callback",
                                 "division": 42}  # fmt: skip
    assert [(i["source"], i["flows"]) for i in data["integrations"]] == [("sq-hooks", ["orders"]), ("exact", ["stock"])]
    assert main(["config", "check", str(path)]) == 0


def test_accepted_consent_runs_koppel_connect_in_process(tmp_path, env, monkeypatch, capsys):
    monkeypatch.setenv("ADMIN", "a")
    monkeypatch.setenv("SQ_KEY", "k")
    monkeypatch.setenv("KOPPEL_LAUNCHER", "./run.sh")
    stdin(monkeypatch, *SQ_SESSION, "y")  # consent yes; the input ends at the webhooks' question: no
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Open this URL (it works once" in out
    assert "https://koppel.example/oauth/exact/start?ticket=" in out  # the gateway sends the browser on to Exact
    assert f"./run.sh endpoints sync --config {path}" in out


def test_a_variable_set_to_a_bad_value_is_reported_after_the_file_is_written(tmp_path, env, monkeypatch, capsys):
    monkeypatch.setenv("SQ_HOOK_SECRET", "not hex")  # the environment's problem, not the answers'
    path = tmp_path / "koppel.toml"
    pair = "squarespace-exactonline"
    assert main(["init", str(path), "--pair", pair, "--yes", *required(pair)]) == 0
    out = capsys.readouterr().out
    assert "endpoints[0].secret: a Squarespace webhook secret is hex" in out
    assert path.exists()


def test_with_variables_unset_the_file_is_written_and_says_what_to_set(tmp_path, no_env, monkeypatch, capsys):
    path = tmp_path / "koppel.toml"
    argv = ["init", str(path), "--pair", "winstore-exactonline", "--flows", "orders"]
    stdin(monkeypatch, "", "", "", "", "", "", "", "", "app", "", "")  # every default; the consent is not offered
    assert main([*argv, "--set", "winstore.warehouses=1"]) == 0
    out = capsys.readouterr().out
    assert "WINSTORE_PASSWORD" in out and "environment variable WINSTORE_PASSWORD is not set" in out
    assert f"then check the file: koppel config check {path}" in out
    assert "[y/N]" not in out  # nothing to run before the variables are set
    assert f"koppel connect exact --config {path}" in out
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "check", str(path)]) == 0


@pytest.mark.parametrize("lines", [[], ["1", "orders"], ["1", "", "", "", "", "https://shop.example"]])
def test_the_end_of_the_input_stops_and_writes_nothing(lines, tmp_path, env, monkeypatch, capsys):
    stdin(monkeypatch, *lines)
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path)]) == 1
    assert "stopped; nothing written" in capsys.readouterr().err
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_and_writes_nothing(tmp_path, env, monkeypatch, capsys):
    answers = iter(["2", ""])

    def typed(prompt: str) -> str:
        answer = next(answers, None)
        if answer is None:
            raise KeyboardInterrupt
        return answer

    monkeypatch.setattr("builtins.input", typed)
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path)]) == 1
    assert not path.exists()


def test_answers_given_for_another_pair_are_refused_once_the_pair_is_chosen(tmp_path, env, monkeypatch, capsys):
    stdin(monkeypatch, "4")  # exactonline-asperion; nothing else is asked
    path = tmp_path / "koppel.toml"
    assert main(["init", str(path), "--set", "shop.base_url=https://shop.example"]) == 2
    assert "--set shop.base_url: not asked for exactonline-asperion" in capsys.readouterr().err
    assert not path.exists()


def test_given_answers_are_not_asked(tmp_path, env, monkeypatch, capsys):
    stdin(monkeypatch, "", "", "", "", "", "", "n")  # public URL, admin token, the shop's three, Exact's URL
    path = tmp_path / "koppel.toml"
    argv = ["init", str(path), "--pair", "woocommerce-exactonline", "--set", "shop.base_url=https://shop.example",
            "--set", "exact.client_id=app", "--set", "exact.division=7", "--flows", "orders,customers,products,stock"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "shop.base_url" not in out and "pair [" not in out and "flows [" not in out
    assert read(path)["systems"][1]["settings"]["division"] == 7


# -- the steps, as a web page would use them ----------------------------------------------------------------------


def test_the_steps_answered_one_by_one_render_a_file_that_passes_the_check():
    answers: wizard.Answers = {}
    asked = []
    while (step := wizard.next_step(answers)) is not None:
        asked.append(step.key)
        answers[step.key] = step.parse({"pair": "3", **REQUIRED}.get(step.key, ""), answers)
    assert asked[:3] == ["pair", "flows", "flows_back"]
    assert "bc.webhook_secret" in asked and "shop.base_url" not in asked
    assert wizard.check(wizard.render(answers), answers, environ={}) == []


def test_a_step_refuses_what_it_cannot_take_with_the_reason():
    step = wizard.step_named("winstore.warehouses")
    with pytest.raises(wizard.Invalid, match="not a list of whole numbers"):
        step.parse("one, two", {})
    assert step.parse(" 2, 3,2 ", {}) == [2, 3]
    with pytest.raises(wizard.Invalid, match="not one of the choices"):
        wizard.step_named("pair").parse("9", {})


# -- run.sh --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "koppel").exists() or shutil.which("redis-server") is None,
    reason="run.sh would install its environment first",
)
def test_run_sh_init_writes_the_file_where_it_is_called_from(tmp_path, env):
    argv = [str(REPO / "run.sh"), "init", "my.toml", "--pair", "exactonline-asperion", "--yes",
            *required("exactonline-asperion")]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "my.toml").exists()
    assert f"{REPO / 'run.sh'} connect exact --config {tmp_path / 'my.toml'}" in done.stdout
    check = subprocess.run([str(REPO / "run.sh"), "config", "check", "my.toml"], cwd=tmp_path, capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert check.returncode == 0, check.stderr


# -- what the wizard runs when asked to -------------------------------------------------------------------------


@pytest.mark.integration
def test_accepted_endpoints_sync_makes_the_shops_webhooks_in_process(tmp_path, env, monkeypatch, capsys, redis_url):
    from connectors.woocommerce.client import WooCommerceClient
    from connectors.woocommerce.sandbox import create_sandbox
    from gateway.stack import serve

    monkeypatch.setenv("REDIS_URL", redis_url)
    live = serve(create_sandbox(consumer_key=ENV["WC_CONSUMER_KEY"], consumer_secret=ENV["WC_CONSUMER_SECRET"]))
    try:
        stdin(monkeypatch, "https://koppel.example", *[""] * 7, "n", "y")  # defaults; no consent; webhooks: yes
        path = tmp_path / "koppel.toml"
        argv = ["init", str(path), "--pair", "woocommerce-exactonline", "--flows", "orders",
                "--set", f"shop.base_url={live.url}", "--set", "exact.client_id=app"]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"koppel connect exact --config {path}" in out  # declined: printed
        assert "endpoint shop-hooks → https://koppel.example/webhooks/shop-hooks" in out  # accepted: run
        with httpx.Client(timeout=10) as http:
            shop = WooCommerceClient(http, base_url=live.url, consumer_key=ENV["WC_CONSUMER_KEY"],
                                     consumer_secret=ENV["WC_CONSUMER_SECRET"])  # fmt: skip
            hooks = {hook["topic"]: hook["delivery_url"] for hook in shop.webhooks()}
        assert hooks == {topic: "https://koppel.example/webhooks/shop-hooks" for topic in ("order.created",
                                                                                          "order.updated")}
    finally:
        live.stop()


def test_a_loopback_public_url_with_webhook_sources_is_pointed_out(tmp_path, env, capsys):
    path = tmp_path / "koppel.toml"
    for pair, pointed_out in (("squarespace-exactonline", True), ("exactonline-asperion", False)):  # no webhooks
        assert main(["init", str(path), "--force", "--pair", pair, "--yes", *required(pair)]) == 0
        assert ("cannot reach this machine's loopback address" in capsys.readouterr().out) is pointed_out


def test_a_missing_directory_is_refused(tmp_path, env, capsys):
    assert main(["init", str(tmp_path / "nowhere" / "k.toml"), "--yes"]) == 2
    assert "is not a directory; create it first" in capsys.readouterr().err
