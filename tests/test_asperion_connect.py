"""`koppel connect <asperion system>` and the gateway's `/oauth/{system}/callback` against the Asperion sandbox over
real HTTP: the generic consent flow stores Asperion's tokens, and the connector then reads with them."""

from __future__ import annotations

import tomllib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.asperion.auth import TokenStore
from connectors.asperion.sandbox import create_sandbox
from gateway.app import create_app
from gateway.cli import main
from gateway.config import parse_config
from gateway.redisserver import free_port
from tests.conftest import serve

pytestmark = pytest.mark.integration


def test_connect_prints_a_start_url_and_the_callback_stores_tokens(tmp_path, redis_url, rconn, monkeypatch, capsys):
    monkeypatch.setenv("ADMIN", "admin-token-1")
    monkeypatch.setenv("ASPERION_SECRET", "asperion-sandbox-secret")
    asperion = serve(create_sandbox())
    try:
        port = free_port()
        redirect = f"http://127.0.0.1:{port}/oauth/books/callback"
        path = tmp_path / "koppel.toml"
        path.write_text(f"""
[gateway]
admin_token = "env:ADMIN"

[[systems]]
id = "books"
kind = "asperion"
base_url = "{asperion.url}"
[systems.settings]
client_id = "koppel-sandbox"
redirect_uri = "{redirect}"
tenant_id = "1001"
identity_url = "{asperion.url}"
[systems.credentials]
client_secret = "env:ASPERION_SECRET"
""")
        with open(path, "rb") as handle:
            config = parse_config(tomllib.load(handle))
        gateway = serve(create_app(config, redis_url), port=port)
        try:
            assert main(["connect", "books", "--config", str(path)]) == 0
            url = capsys.readouterr().out.strip().splitlines()[-1]
            assert url.startswith(f"http://127.0.0.1:{port}/oauth/books/start?ticket=")
            with httpx.Client(timeout=10, follow_redirects=False) as http:
                start = http.get(url)  # the gateway binds the consent to this client (a cookie), then on to Asperion
                assert start.status_code == 303
                authorize = start.headers["location"]
                assert authorize.startswith(f"{asperion.url}/connect/authorize?")
                assert parse_qs(urlsplit(authorize).query)["scope"] == ["api offline_access"]
                consent = http.get(authorize)
                assert consent.status_code == 302
                back = http.get(consent.headers["location"])
                assert back.status_code == 200, back.text
                assert "connected to Asperion for system 'books'" in back.text
                tokens = TokenStore(rconn, "books").load()
                assert tokens is not None
                # the token works with the tenant header
                answer = http.get(f"{asperion.url}/v1/articles", headers={
                    "Authorization": f"Bearer {tokens.access_token}", "X-TenantId": "1001"})  # fmt: skip
                assert answer.status_code == 200
                again = http.get(consent.headers["location"])  # the state (and the code) single use
                assert again.status_code == 400 and "completed already" in again.text
        finally:
            gateway.stop()
    finally:
        asperion.stop()
