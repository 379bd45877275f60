"""`koppel demo`: Koppel's main job on the embedded default, end to end, then a report.

Starts Redis (embedded unless one is configured or running), the gateway (uvicorn) and a worker
process; sends signed webhooks as each platform signs them — WooCommerce orders (with repeated
deliveries, a creation ping and forged requests), Squarespace, Business Central (handshake and a
notification batch) and Exact Online — over real HTTP; waits for the worker to process every
queued job; prints what happened and stops everything it started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
import tomlkit
import uvicorn
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.redisserver import free_port, resolve_redis

CUSTOMERS = [
    ("Sanne", "de Vries", "", "Keizersgracht 123-A", "1015 CJ", "Amsterdam", "NL"),
    ("Jörg", "Müller", "Müller Fietsen GmbH", "Hauptstraße 5", "50667", "Köln", "DE"),
    ("Lotte", "Peeters", "Peeters & Zonen BV", "Rue de la Loi 16 bte 3", "1000", "Brussel", "BE"),
    ("Daan", "Bakker", "", "2e Hugo de Grootstraat 7 hs", "1052 LB", "Amsterdam", "NL"),
    ("Émilie", "Janssens", "", "Kerkstraat 12 II", "2000", "Antwerpen", "BE"),
]
EXACT_APP_ID, EXACT_APP_SECRET = "koppel-sandbox", "sandbox-secret"  # the sandbox's registered app
EXACT_REDIRECT = "http://127.0.0.1/oauth/exact/callback"
PRODUCTS = [
    ("KOP-MUG", "Koppel mok", "12.40"),
    ("KOP-TEE", "T-shirt 'Koppeling'", "24.95"),
    ("KOP-CAP", "Pet", "9.99"),
    ("KOP-BAG", "Tas van gerecycled canvas", "17.50"),
]


@dataclass
class Tally:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    queued: list[str] = field(default_factory=list)
    duplicates: int = 0


def _woo_order(number: int, rng: secrets.SystemRandom, modified: datetime, base: int) -> bytes:
    first, last, company, street, postcode, city, country = CUSTOMERS[number % len(CUSTOMERS)]
    lines = []
    for index, (sku, name, price) in enumerate(rng.sample(PRODUCTS, rng.randint(1, 3))):
        quantity = rng.randint(1, 3)
        total = f"{float(price) * quantity / 1.21:.2f}"
        lines.append(
            {
                "id": index + 1,
                "name": name,
                "sku": sku,
                "quantity": quantity,
                "total": total,
                "total_tax": f"{float(total) * 0.21:.2f}",
                "price": float(total) / quantity,
            }
        )
    address = {
        "first_name": first,
        "last_name": last,
        "company": company,
        "address_1": street,
        "address_2": "",
        "city": city,
        "state": "",
        "postcode": postcode,
        "country": country,
    }
    order = {
        "id": base + number,
        "number": str(base + number),
        "status": "processing",
        "currency": "EUR",
        "date_created_gmt": modified.strftime("%Y-%m-%dT%H:%M:%S"),
        "date_modified_gmt": modified.strftime("%Y-%m-%dT%H:%M:%S"),
        "billing": {**address, "email": f"{first.lower()}@example.com", "phone": "+31 20 123 4567"},
        "shipping": address,
        "payment_method": "ideal",
        "payment_method_title": "iDEAL",
        "line_items": lines,
        "shipping_lines": [{"method_id": "flat_rate", "total": "4.95", "total_tax": "1.04"}],
    }
    # WooCommerce's json_encode: "\/" for slashes, \uXXXX for non-ASCII; sign those exact bytes.
    return json.dumps(order, separators=(",", ":")).replace("/", "\\/").encode()


def _hmac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _config(data_dir: Path, exact_url: str) -> tuple[Config, dict[str, str]]:
    env = {
        "DEMO_WC_SECRET": secrets.token_urlsafe(24),
        "DEMO_SQ_SECRET": secrets.token_hex(32).upper(),
        "DEMO_BC_STATE": secrets.token_urlsafe(16),
        "DEMO_EXACT_SECRET": secrets.token_urlsafe(16),
        "DEMO_EXACT_CLIENT_SECRET": EXACT_APP_SECRET,
    }
    data = {
        "gateway": {"queue": "koppel-demo"},
        "endpoints": [
            {"id": "webshop", "kind": "woocommerce", "secret": "env:DEMO_WC_SECRET"},
            {"id": "squarespace", "kind": "squarespace", "secret": "env:DEMO_SQ_SECRET"},
            {"id": "bc", "kind": "businesscentral", "secret": "env:DEMO_BC_STATE"},
            {"id": "exact-hooks", "kind": "exactonline", "secret": "env:DEMO_EXACT_SECRET"},
        ],
        "systems": [
            {
                "id": "exact",
                "kind": "exactonline",
                "base_url": exact_url,
                "settings": {"client_id": EXACT_APP_ID, "redirect_uri": EXACT_REDIRECT},
                "credentials": {"client_secret": "env:DEMO_EXACT_CLIENT_SECRET"},
            },
            {"id": "bc-erp", "kind": "businesscentral"},
        ],
        "integrations": [
            {"id": "webshop-to-exact", "source": "webshop", "target": "exact", "flows": ["orders"]},
            {"id": "squarespace-to-bc", "source": "squarespace", "target": "bc-erp", "flows": ["orders"]},
        ],
    }
    path = data_dir / "demo.toml"
    path.write_text(tomlkit.dumps(data), encoding="utf-8")  # so `koppel worker --config` reads the same
    return parse_config(data, environ=env), env


def _serve(app: object, name: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {name} did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def _connect_exact(url: str, redis_url: str) -> None:
    """Koppel's OAuth set-up against the Exact sandbox (consent auto-approved), then seed the items."""
    from connectors.exactonline.auth import OAuthApp
    from connectors.exactonline.sandbox_consent import connect_sandbox

    connection = redis.Redis.from_url(redis_url)
    with httpx.Client(timeout=10) as http:
        connect_sandbox(http, OAuthApp(url, EXACT_APP_ID, EXACT_APP_SECRET, EXACT_REDIRECT), connection, "exact")
        skus = [sku for sku, _, _ in PRODUCTS] + ["SHIPPING"]
        http.post(f"{url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()
    connection.close()


def run_demo(orders: int = 25, data_dir: Path = Path(".koppel")) -> int:
    from connectors.exactonline.sandbox import create_sandbox

    data_dir.mkdir(parents=True, exist_ok=True)
    rng = secrets.SystemRandom()
    choice = resolve_redis()
    print(f"redis    {choice.describe()}")
    servers: list[tuple[uvicorn.Server, threading.Thread, str]] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        servers.append(_serve(create_sandbox(redirect_uris=(EXACT_REDIRECT,)), "Exact Online sandbox"))
        exact_url = servers[-1][2]
        print(f"exact    {exact_url}  (Exact Online sandbox: OAuth, rate limits, OData)")
        config, env = _config(data_dir, exact_url)
        _connect_exact(exact_url, choice.url)
        servers.append(_serve(create_app(config, choice.url), "gateway"))
        gateway_url = servers[-1][2]
        print(f"gateway  {gateway_url}  (POST /webhooks/{{endpoint}}, /healthz, /readyz, /metrics)")
        worker = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(data_dir / "demo.toml")],
            env={**os.environ, **env, "REDIS_URL": choice.url, "KOPPEL_LOG_LEVEL": "WARNING"},
        )
        print(f"worker   pid {worker.pid} (non-forking RQ worker, scheduler on)\n")
        tallies = _send_all(gateway_url, env, orders, rng)
        processed = _wait_for_jobs(choice.url, [j for t in tallies.values() for j in t.queued])
        _report(tallies, processed)
        failures = _report_orders(choice.url, tallies["WooCommerce"].queued, processed)
        return 0 if failures == 0 and all(s == JobStatus.FINISHED for s in processed.values()) else 1
    except RuntimeError as exc:
        print(f"koppel: {exc}", file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)  # warm shutdown: finish the current job, then stop
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for server, thread, _ in reversed(servers):
            server.should_exit = True
            thread.join(timeout=10)
        choice.stop()


def _report_orders(redis_url: str, job_ids: list[str], processed: dict[str, JobStatus]) -> int:
    """WooCommerce → Exact Online: what the order flow did with each order. Returns the failures."""
    connection = redis.Redis.from_url(redis_url)
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    calls = 0
    try:
        for job in Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer):
            if job is None:
                continue
            if processed.get(job.id) == JobStatus.FINISHED:
                result = (job.return_value() or {}).get("integrations", {}).get("webshop-to-exact", {})
                outcome = result.get("outcome", "not handled") if isinstance(result, dict) else str(result)
                outcomes[outcome] += 1
                calls += int(result.get("calls", 0)) if isinstance(result, dict) else 0
            else:
                outcomes["failed"] += 1
                reasons[str(job.meta.get("reason") or job.meta.get("last_error") or "unknown")] += 1
    finally:
        connection.close()
    created = outcomes["created"]
    print("\nWooCommerce → Exact Online")
    print(f"  orders received    {len(job_ids)}")
    print(
        f"  created in Exact   {created}" + (f"  ({calls / created:.2f} Exact API calls per order)" if created else "")
    )
    print(f"  skipped            {outcomes['skipped']}")
    print(f"  failed             {outcomes['failed']}")
    for reason, count in reasons.most_common():
        print(f"    {count} x {reason}")
    return outcomes["failed"]


def _send_all(base: str, env: dict[str, str], orders: int, rng: secrets.SystemRandom) -> dict[str, Tally]:
    tallies = {name: Tally() for name in ("WooCommerce", "Squarespace", "Business Central", "Exact Online")}
    now = datetime.now(UTC)

    def post(name: str, path: str, body: bytes, headers: dict[str, str], **kw: object) -> None:
        tally = tallies[name]
        response = client.post(path, content=body, headers=headers, **kw)  # type: ignore[arg-type]
        tally.sent += 1
        tally.statuses[response.status_code] += 1
        if response.headers.get("content-type", "").startswith("application/json") and response.is_success:
            tally.queued.extend(response.json().get("jobs", []))
            tally.duplicates += response.json().get("duplicates", 0)

    wc_key = env["DEMO_WC_SECRET"].encode()
    with httpx.Client(base_url=base, timeout=10) as client:
        post(
            "WooCommerce",
            "/webhooks/webshop",
            b"webhook_id=1",
            {"content-type": "application/x-www-form-urlencoded", "user-agent": "WooCommerce/9.4 Hookshot"},
        )
        base = int(now.timestamp()) * 1000  # order numbers of this run: a re-run is new orders, not replays
        bodies = [_woo_order(n, rng, now - timedelta(minutes=orders - n), base) for n in range(orders)]
        for n, body in enumerate(bodies):
            print(f"\rsending  WooCommerce order {n + 1}/{orders}", end="", flush=True)
            post("WooCommerce", "/webhooks/webshop", body, _woo_headers(body, wc_key))
        print()
        for body in bodies[:3]:  # WooCommerce delivers again: acknowledged, no second job
            post("WooCommerce", "/webhooks/webshop", body, _woo_headers(body, wc_key))
        forged = bodies[0].replace(b"processing", b"completed")
        post("WooCommerce", "/webhooks/webshop", forged, _woo_headers(bodies[0], wc_key))
        post("WooCommerce", "/webhooks/webshop", forged, _woo_headers(forged, b"not-the-secret"))

        sq = json.dumps(
            {
                "id": secrets.token_hex(12),
                "websiteId": "site-1",
                "subscriptionId": "sub-1",
                "topic": "order.create",
                "createdOn": now.strftime("%Y-%m-%dT%H:%M+00:00"),
                "data": {"orderId": secrets.token_hex(12)},
            }
        ).encode()
        signature = hmac.new(bytes.fromhex(env["DEMO_SQ_SECRET"]), sq, hashlib.sha256).hexdigest()
        post(
            "Squarespace",
            "/webhooks/squarespace",
            sq,
            {"content-type": "application/json", "squarespace-signature": signature},
        )

        post("Business Central", "/webhooks/bc", b"", {}, params={"validationToken": "demo-handshake-token"})
        company = "8f1a2b3c-0000-4000-8000-000000000001"
        items = [
            {
                "subscriptionId": "sub-bc",
                "clientState": env["DEMO_BC_STATE"],
                "expirationDateTime": (now + timedelta(days=3)).isoformat(),
                "resource": f"api/v2.0/companies({company})/customers(4d5e6f70-0000-4000-8000-00000000000{i})",
                "changeType": "updated",
                "lastModifiedDateTime": now.isoformat(),
            }
            for i in range(2)
        ]
        post(
            "Business Central",
            "/webhooks/bc",
            json.dumps({"value": items}).encode(),
            {"content-type": "application/json"},
        )

        content = json.dumps(
            {
                "Topic": "SalesOrders",
                "ClientId": "c1",
                "Division": 123456,
                "Action": "Update",
                "Key": "a1b2c3d4-0000-4000-8000-000000000009",
                "ExactOnlineEndpoint": "https://start.exactonline.nl/api/v1/123456/salesorder/SalesOrders",
                "EventCreatedOn": now.isoformat(),
            },
            separators=(",", ":"),
        )
        code = _hmac(env["DEMO_EXACT_SECRET"].encode(), content.encode()).hex().upper()
        post(
            "Exact Online",
            "/webhooks/exact-hooks",
            f'{{"Content":{content},"HashCode":"{code}"}}'.encode(),
            {"content-type": "application/json"},
        )
    return tallies


def _woo_headers(body: bytes, key: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "WooCommerce/9.4 Hookshot (WordPress/6.7)",
        "x-wc-webhook-source": "https://webshop.example/",
        "x-wc-webhook-topic": "order.created",
        "x-wc-webhook-resource": "order",
        "x-wc-webhook-event": "created",
        "x-wc-webhook-signature": base64.b64encode(_hmac(key, body)).decode(),
        "x-wc-webhook-id": "12",
        "x-wc-webhook-delivery-id": secrets.token_hex(16),
    }


def _wait_for_jobs(url: str, job_ids: list[str], timeout: float = 60) -> dict[str, JobStatus]:
    connection = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    statuses: dict[str, JobStatus] = {}
    try:
        while time.monotonic() < deadline:
            jobs = Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer)
            statuses = {
                # no job yet: still in the inbox, until the worker's pump makes it
                jid: (job.get_status() if job else JobStatus.QUEUED)
                for jid, job in zip(job_ids, jobs, strict=True)
            }
            done = sum(s in (JobStatus.FINISHED, JobStatus.FAILED) for s in statuses.values())
            width = 30
            filled = width * done // max(len(job_ids), 1)
            print(
                f"\rworking  [{'#' * filled}{'.' * (width - filled)}] {done}/{len(job_ids)} jobs",
                end="",
                flush=True,
            )
            if done == len(job_ids):
                break
            time.sleep(0.1)
        print("\n")
        return statuses
    finally:
        connection.close()


def _report(tallies: dict[str, Tally], processed: dict[str, JobStatus]) -> None:
    header = f"{'source':<18}{'sent':>6}{'2xx':>6}{'queued':>8}{'dupes':>7}{'401':>6}{'other':>7}{'processed':>11}"
    print(header)
    print("-" * len(header))
    for name, t in tallies.items():
        ok = sum(n for code, n in t.statuses.items() if 200 <= code < 300)
        other = t.sent - ok - t.statuses[401]
        done = sum(processed.get(j) == JobStatus.FINISHED for j in t.queued)
        print(
            f"{name:<18}{t.sent:>6}{ok:>6}{len(t.queued):>8}{t.duplicates:>7}{t.statuses[401]:>6}{other:>7}{done:>11}"
        )
    failed = [j for j, s in processed.items() if s != JobStatus.FINISHED]
    print(f"\n{'all queued jobs processed' if not failed else f'{len(failed)} job(s) not processed: {failed[:5]}'}")
