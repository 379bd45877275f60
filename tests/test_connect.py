"""`koppel connect <system>` and the gateway's `/oauth/{system}/callback`, against the Exact sandbox over real HTTP."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.exactonline.auth import TokenStore
from connectors.exactonline.sandbox import create_sandbox
from gateway.app import create_app
from gateway.cli import main
from gateway.config import parse_config
from gateway.redisserver import free_port
from tests.conftest import serve

pytestmark = pytest.mark.integration

ENV = {"ADMIN": "admin-token-1", "EXACT_CLIENT_SECRET": "sandbox-secret"}


def write_config(tmp_path, exact_url: str, redirect: str) -> str:
    path = tmp_path / "koppel.toml"
    path.write_text(
        f"""
[gateway]
admin_token = "env:ADMIN"

[[systems]]
id = "exact"
kind = "exactonline"
base_url = "{exact_url}"
[systems.settings]
client_id = "koppel-sandbox"
redirect_uri = "{redirect}"
[systems.credentials]
client_secret = "env:EXACT_CLIENT_SECRET"
"""
    )
    return str(path)


@pytest.mark.parametrize(
    ("command", "callback"),
    [
        (["connect", "exact"], "/oauth/exact/callback"),
        (["connect", "exactonline", "--system", "exact"], "/oauth/exactonline/callback"),  # apps registered before
    ],
)
def test_connect_prints_a_consent_url_and_the_callback_stores_tokens(
    tmp_path, redis_url, rconn, monkeypatch, capsys, command, callback
):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    exact = serve(create_sandbox())  # accepts any redirect URI
    try:
        # The redirect URI names the gateway's own callback, so pick the gateway's port first.
        port = free_port()
        redirect = f"http://127.0.0.1:{port}{callback}"
        path = write_config(tmp_path, exact.url, redirect)
        gateway = serve(create_app(parse_config_file(path), redis_url), port=port)
        try:
            assert main([*command, "--config", path]) == 0
            url = capsys.readouterr().out.strip().splitlines()[-1]
            with httpx.Client(timeout=10, follow_redirects=False) as http:
                consent = http.get(url)
                assert consent.status_code == 302
                back = http.get(consent.headers["location"])
                assert back.status_code == 200, back.text
                assert "connected to Exact Online" in back.text
                assert TokenStore(rconn, "exact").load() is not None
                # a forged or replayed-with-other-state callback is refused
                query = parse_qs(urlsplit(consent.headers["location"]).query)
                forged = http.get(
                    f"{gateway.url}{callback}", params={"code": query["code"][0], "state": query["state"][0] + "x"}
                )
                assert forged.status_code == 400
                assert "bad signature" in forged.text
                elsewhere = http.get(f"{gateway.url}/oauth/other/callback", params=query)  # state for "exact"
                assert elsewhere.status_code == 400
                assert "another system" in elsewhere.text
        finally:
            gateway.stop()
    finally:
        exact.stop()


def test_connect_without_admin_token_says_what_is_missing(tmp_path, monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/oauth/exactonline/callback")
    file = Path(path)
    file.write_text(file.read_text().replace('[gateway]\nadmin_token = "env:ADMIN"\n', ""))
    assert main(["connect", "exactonline", "--system", "exact", "--config", path]) == 2
    assert "gateway.admin_token" in capsys.readouterr().err


def test_connect_refuses_a_system_without_oauth_consent(tmp_path, monkeypatch, capsys):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WC_KEY", "ck")
    monkeypatch.setenv("WC_SECRET", "cs")
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/oauth/exact/callback")
    with open(path, "a") as handle:
        handle.write(
            '\n[[systems]]\nid = "shop"\nkind = "woocommerce"\nbase_url = "https://shop.example"\n'
            '[systems.credentials]\nconsumer_key = "env:WC_KEY"\nconsumer_secret = "env:WC_SECRET"\n'
        )
    assert main(["connect", "shop", "--config", path]) == 2
    assert "WooCommerce (shop) does not use OAuth consent" in capsys.readouterr().err
    assert main(["connect", "nope", "--config", path]) == 2
    assert "no system 'nope'" in capsys.readouterr().err


def test_callback_without_code_is_400(http):
    assert http.get("/oauth/exactonline/callback").status_code == 400


def parse_config_file(path: str):
    import tomllib

    with open(path, "rb") as handle:
        return parse_config(tomllib.load(handle))
