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
def test_connect_prints_a_start_url_and_the_callback_stores_tokens(
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
            assert url.startswith(f"http://127.0.0.1:{port}/oauth/exact/start?ticket=")
            with httpx.Client(timeout=10, follow_redirects=False) as http:
                wrong = http.get(url.replace("/oauth/exact/start", "/oauth/other/start"))
                assert wrong.status_code == 400 and "another system" in wrong.text
                start = http.get(url)
                assert start.status_code == 303
                assert start.headers["location"].startswith(f"{exact.url}/api/oauth2/auth?")
                cookie = start.headers["set-cookie"]
                assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/oauth" in cookie
                consent = http.get(start.headers["location"])
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
                again = http.get(url)  # the start link works once
                assert again.status_code == 400 and "used already" in again.text
        finally:
            gateway.stop()
    finally:
        exact.stop()


@pytest.fixture
def connecting(tmp_path, redis_url, monkeypatch, capsys):
    """The gateway and the Exact sandbox, and `start()`: a browser (an httpx client with its cookies) that
    opened a fresh `koppel connect` link and approved at Exact — (that browser, the callback URL Exact sent
    it back to) — without following it yet."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    exact = serve(create_sandbox())
    port = free_port()
    path = write_config(tmp_path, exact.url, f"http://127.0.0.1:{port}/oauth/exact/callback")
    gateway = serve(create_app(parse_config_file(path), redis_url), port=port)
    clients: list[httpx.Client] = []

    def start() -> tuple[httpx.Client, str]:
        assert main(["connect", "exact", "--config", path]) == 0
        url = capsys.readouterr().out.strip().splitlines()[-1]
        browser = httpx.Client(timeout=10, follow_redirects=False)
        clients.append(browser)
        consent = browser.get(browser.get(url).headers["location"])
        return browser, consent.headers["location"]

    yield start
    for client in clients:
        client.close()
    gateway.stop()
    exact.stop()


def test_a_state_works_once_a_second_code_with_it_changes_no_tokens(connecting, rconn):
    browser, back = connecting()
    assert browser.get(back).status_code == 200
    tokens = TokenStore(rconn, "exact").load()
    # the same state with a new code (an attacker's, or the same consent replayed): refused, tokens unchanged
    state = parse_qs(urlsplit(back).query)["state"][0]
    _, fresh = connecting()
    code = parse_qs(urlsplit(fresh).query)["code"][0]
    reused = browser.get(back.split("?")[0], params={"code": code, "state": state})
    assert reused.status_code == 400
    assert "completed already" in reused.text and "works once" in reused.text
    assert TokenStore(rconn, "exact").load() == tokens


@pytest.mark.parametrize("cookie", [None, "a-nonce-of-another-browser"], ids=["no-cookie", "wrong-cookie"])
def test_a_state_carried_to_another_browser_completes_nothing(connecting, rconn, cookie):
    browser, back = connecting()
    state = parse_qs(urlsplit(back).query)["state"][0]
    other = httpx.Client(timeout=10, follow_redirects=False)
    try:
        if cookie is not None:
            name = next(iter(browser.cookies.keys()))
            other.cookies.set(name, cookie, domain="127.0.0.1", path="/oauth")
        refused = other.get(back)
        assert refused.status_code == 400
        assert "started in another browser" in refused.text
        assert TokenStore(rconn, "exact").load() is None
        assert rconn.keys("koppel:exact:tokens*") == []
    finally:
        other.close()
    assert browser.get(back).status_code == 200  # the browser that started it still can
    assert state and TokenStore(rconn, "exact").load() is not None


def test_a_start_link_with_a_bad_ticket_or_for_another_system_is_refused(connecting, capsys):
    browser, back = connecting()
    gateway = back.split("/oauth/")[0]
    for link, why in ((f"{gateway}/oauth/exact/start", "ticket parameter"),
                      (f"{gateway}/oauth/exact/start?ticket=forged", "bad signature")):  # fmt: skip
        answer = browser.get(link)
        assert answer.status_code == 400 and why in answer.text, answer.text


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
