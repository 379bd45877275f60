"""The Exact Online sandbox's contract harness (connectors/sandboxkit/harness.py)."""

from __future__ import annotations

import re
import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import redis

from connectors.exactonline.auth import OAuthApp, authorize_url, exchange_code
from connectors.exactonline.sandbox.app import create_sandbox
from connectors.exactonline.sandbox.consent import connect_sandbox
from connectors.sandboxkit.harness import Harness, SystemEntry

CLIENT_ID, CLIENT_SECRET = "koppel-sandbox", "sandbox-secret"
REDIRECT = "https://koppel.example/oauth/exact/callback"


def _system(base_url: str, valid: bool) -> SystemEntry:
    """Refused credentials: a system Koppel was never authorised for (no tokens stored)."""
    entry = {
        "id": "exact",
        "kind": "exactonline",
        "base_url": base_url,
        "credentials": {"client_secret": "env:CONTRACT_EXACT_SECRET"},
        "settings": {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "rate_limit": {"enabled": False}},
    }
    return entry, {"CONTRACT_EXACT_SECRET": CLIENT_SECRET if valid else "not-the-secret"}  # fmt: skip


def _connect(base_url: str, http: httpx.Client, connection: redis.Redis, system_id: str) -> None:
    connect_sandbox(http, OAuthApp(base_url, CLIENT_ID, CLIENT_SECRET, REDIRECT), connection, system_id)


def _seed_items(base_url: str, http: httpx.Client, skus: list[str]) -> None:
    http.post(f"{base_url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()


def _access_token(base_url: str, http: httpx.Client) -> str:
    """The app authorised by the sandbox's consent (the code flow Koppel's `connect` takes), its token kept here:
    subscriptions are the app's, made with a user's token."""
    consent = http.get(authorize_url(base_url, CLIENT_ID, REDIRECT, secrets.token_urlsafe(8)))
    if consent.status_code != 302:
        raise RuntimeError(f"the Exact sandbox's consent answered {consent.status_code}, not a redirect")
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    return exchange_code(http, OAuthApp(base_url, CLIENT_ID, CLIENT_SECRET, REDIRECT), code).access_token


def _webhooks(base_url: str, http: httpx.Client, delivery_url: str, secret: str) -> int:
    """The app's webhook secret set; Accounts, Items and SalesOrders subscribed through the API (Exact validates
    each with an empty POST); then an item and an account created, the account changed in Exact, an order
    created and deleted: three validations and five notifications, signed as Exact signs them."""
    http.post(f"{base_url}/sandbox/webhooks", json={"secret": secret}).raise_for_status()
    auth = {"Authorization": f"Bearer {_access_token(base_url, http)}"}
    me = http.get(f"{base_url}/api/v1/current/Me", headers=auth).raise_for_status().json()
    api = f"{base_url}/api/v1/{me['d']['results'][0]['CurrentDivision']}"
    topics = ("Accounts", "Items", "SalesOrders")
    for topic in topics:
        subscription = {"CallbackURL": delivery_url, "Topic": topic, "Description": "Koppel contract"}
        http.post(f"{api}/webhooks/WebhookSubscriptions", json=subscription, headers=auth).raise_for_status()
    item = http.post(f"{base_url}/sandbox/seed/items", json={"skus": ["HOOK-1"]}).raise_for_status().json()
    account = http.post(f"{api}/crm/Accounts", json={"Name": "Hook BV"}, headers=auth).raise_for_status().json()
    account_id = account["d"]["ID"]
    change = {"entity": "crm/Accounts", "id": account_id, "fields": {"Email": "hook@example.com"}}
    http.post(f"{base_url}/sandbox/update", json=change).raise_for_status()
    lines = [{"Item": item["items"]["HOOK-1"], "Quantity": 1}]
    order = {"OrderedBy": account_id, "YourRef": "HOOK-1", "SalesOrderLines": lines}
    created = http.post(f"{api}/salesorder/SalesOrders", json=order, headers=auth).raise_for_status().json()
    http.delete(f"{api}/salesorder/SalesOrders(guid'{created['d']['OrderID']}')", headers=auth).raise_for_status()
    return len(topics) + 5


_KEY = re.compile(rb'"Key":"[^"]*"')


def _forge(body: bytes) -> bytes:
    """Another record's key in the Content: the HashCode signs the Content only, so a space after the body is no
    forgery here (the handler rightly accepts it)."""
    forged, count = _KEY.subn(b'"Key":"' + str(uuid.uuid4()).encode() + b'"', body, count=1)
    if count != 1:
        raise ValueError("not an Exact notification: no Content.Key")
    return forged


HARNESS = Harness(
    app=lambda: create_sandbox(redirect_uris=(REDIRECT,), rate_limits=False),
    system=_system,
    missing_id=lambda: str(uuid.uuid4()),
    connect=_connect,
    seed_items=_seed_items,
    webhooks=_webhooks,
    forge=_forge,
)
