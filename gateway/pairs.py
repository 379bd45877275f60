"""The pairs `koppel demo --pair` runs, each described once: its systems (as sandboxes), the webhook
endpoints, the integrations and their flows, and the phases the demo shows — one Stack serves them all.

    woocommerce-exactonline   the main job (default): a shop and Exact Online, every flow of the pair
    winstore-exactonline      products and orders Winstore → Exact; orders, order status (of Winstore's
                              orders delivered in Exact) and stock Exact → Winstore
    winstore-businesscentral  products, customers and orders Winstore → Business Central; order status
                              (of Winstore's orders released in BC), orders and stock BC → Winstore
    exactonline-asperion      products and orders Exact → Asperion, orders Asperion → Exact
    squarespace-exactonline   orders Squarespace → Exact (signed notifications to the subscriptions
                              `koppel endpoints sync` makes; lost ones found by the reconciliation poll),
                              order status (of the orders delivered in Exact) back to Squarespace

Phases run in the order their data needs: the articles exist in the ERP before orders of them are
booked, and Winstore's orders are in the ERP before their status is changed there.

A phase that must not see what earlier phases started (a poll's first reading of the records it is to
change) waits for it first (`Feed.ready`).

A pair names its systems (`SandboxSystem`: how the sandbox starts, the `[[systems]]` entry Koppel gets,
the secrets passed through the environment, the wiring a user does by hand such as Exact's OAuth
consent), its `Endpoint`s (webhooks into the gateway: a shop's, Business Central's subscriptions), its
`Integration`s, and its phases. A phase that follows records through one flow is a `Feed`: how records
are entered in the source system (as a user there would), which integration takes them, the target whose
sandbox counts the calls, the outcome each record should get (created; updated for a status or a stock
level), and a cross-check of what the target holds; `feed_phase` turns it into a phase with the same
report as the main job's, and bench/e2e measures it (calls per record; feeds whose records are created).

Adding a flow to a pair (as orders Winstore → Business Central was):

1. add the flow to the integration (`Integration("winstore-to-bc", "winstore", "bc", ("products", "orders"))`),
   or a new `Integration` (also when its records' ids could be mistaken for another flow's in one activity
   log: Winstore's customer ids and article keys are both numbers, so customers have their own);
2. write a `Feed` whose `place` enters records in the source's sandbox (its control routes) and
   returns their ids as the activity log names them, and a `check` reading the target's sandbox;
3. append `feed_phase(that_feed)` to the pair's `phases` (and the feed to `feeds` for bench/e2e).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

from gateway.phases import (
    Run,
    follow,
    report_table,
    sync_endpoints,
    woo_catalogue,
    woo_customer_moves,
    woo_endpoints,
    woo_missed_webhooks,
    woo_orders,
    woo_stock,
    woo_writeback,
)
from gateway.stack import ENDPOINT, INTEGRATION, WOO_KEY, WOO_SECRET, WRITEBACK, OrderOutcome

if TYPE_CHECKING:
    from gateway.stack import Stack, StackOptions

WOO_EXACT = "woocommerce-exactonline"
WINSTORE_EXACT = "winstore-exactonline"
WINSTORE_BC = "winstore-businesscentral"
EXACT_ASPERION = "exactonline-asperion"
SQ_EXACT = "squarespace-exactonline"

EXACT_CLIENT_ID, EXACT_CLIENT_SECRET = "koppel-sandbox", "sandbox-secret"  # the Exact sandbox's registered app
EXACT_REDIRECT = "http://127.0.0.1/oauth/exactonline/callback"  # the sandbox redirects without calling it
WS_USER, WS_PASSWORD = "koppel", "winstore-stack"
BC_SECRET = "bc-stack-secret"  # noqa: S105 - the sandbox's own app secret
BC_HOOKS = "bc-hooks"
ASPERION_REDIRECT = "https://koppel.example/oauth/asperion/callback"  # the sandbox redirects without calling it
ASPERION_SECRET = "asperion-sandbox-secret"  # noqa: S105 - the Asperion sandbox's registered app secret
BRANCH = 1
WAREHOUSE = 1
COMPLETED = "2"  # Winstore's status code of a completed order (normalise.DEFAULT_STATUS_NAMES)
EXACT_POLL_SECONDS = 10  # Exact polled as a source (orders, stock) when its rate limits are on, as in the demo
SAMPLE = 10  # the records a status or stock phase of the demo changes at most
WINSTORE_CHANNEL = "koppel"  # the sales channel of the orders Koppel posts into Winstore


# -- the description ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxSystem:
    """A system the stack runs as a sandbox (a uvicorn server on a thread) and Koppel's config entry for it."""

    id: str
    kind: str
    title: str
    app: Callable[[StackOptions], ASGIApp]
    entry: Callable[[Stack], dict[str, Any]]
    """The `[[systems]]` entry (without `id` and `kind`) once the sandbox runs (`stack.url(id)`)."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Environment variables the entry names (`env:NAME`): the gateway's and workers' only copy."""
    connect: Callable[[Stack], None] | None = None
    """Wiring a user does by hand once the config is written (Exact: the OAuth consent flow)."""


@dataclass(frozen=True)
class Endpoint:
    """A webhook endpoint of the gateway (`POST /webhooks/<id>`), for a system's webhooks."""

    id: str
    kind: str
    system: str
    secret: str
    """The environment variable of its secret (a fresh random one per stack, hex: Squarespace requires it)."""


@dataclass(frozen=True)
class Integration:
    id: str
    source: str
    """A system id (polled) or an endpoint id (webhooks, and the system behind it polled to reconcile)."""
    target: str
    flows: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Any] = field(default_factory=dict)
    """The integration's mapping tables (`[integrations.tables.<name>]`), as a user sets them up."""

    def entry(self) -> dict[str, Any]:
        entry = {"id": self.id, "source": self.source, "target": self.target, "flows": list(self.flows),
                 "settings": dict(self.settings)}  # fmt: skip
        return entry | ({"tables": dict(self.tables)} if self.tables else {})


@dataclass(frozen=True)
class Feed:
    """Records entered in a source system and followed through one flow to its target."""

    record: str
    """What a record is, singular ("article", "order")."""
    source_title: str
    integration: str
    target: str
    """The target system's id: its sandbox counts the calls a record costs."""
    target_title: str
    place: Callable[[Stack, int, int], list[str]]
    """(stack, count, seed) → the records' ids as the activity log names them (`resource_id`)."""
    check: Callable[[Stack, list[str], dict[str, OrderOutcome]], list[str]] | None = None
    """(stack, ids, their outcomes) → what is wrong with what the target holds of them (booked twice,
    missing); empty when all is well."""
    created: str = ""
    """The target sandbox's counter that one record created adds (bench/e2e: nothing booked twice)."""
    target_calls: float | None = None
    """The calls per record the pair must stay within in steady state (bench/e2e's verdict), if any."""
    lines: Callable[[Stack], dict[str, int]] | None = None
    """Record id → lines, for bench/e2e's naive cost (4 + lines calls per order)."""
    note: str = ""
    """What the calls per record mean (shown beside the figure)."""
    expect: str = "created"
    """The outcome each record should get ("updated": a status written back, a stock level set)."""
    entered: str = "entered in"
    """How records come to be in the source, for the labels ("orders released in Business Central")."""
    name: str = ""
    """The phase's name (default "<record>s <source> → <target>")."""
    most: int | None = None
    """The demo's phase enters at most this many records (a sample: some orders released)."""
    ready: Callable[[Stack], None] | None = None
    """Before the records are entered: waits until what earlier phases did has been seen (a poll's first
    reading of records this phase changes is not this phase's outcome)."""

    @property
    def title(self) -> str:
        return self.name or f"{self.record}s {self.source_title} → {self.target_title}"


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[Run], bool]
    """True when the phase's records are all accounted for."""


@dataclass(frozen=True)
class Pair:
    name: str
    title: str
    systems: tuple[SandboxSystem, ...]
    integrations: tuple[Integration, ...]
    phases: tuple[Phase, ...]
    endpoints: tuple[Endpoint, ...] = ()
    feeds: tuple[Feed, ...] = ()
    """What bench/e2e measures, in order (a later feed may need what an earlier one made)."""
    config: Callable[[Stack], dict[str, Any]] | None = None
    """The whole config instead of the one built from systems, endpoints and integrations."""
    prepare: Callable[[Stack], None] | None = None
    """Before the gateway starts: what the systems hold already (seeded records)."""
    started: Callable[[Stack], None] | None = None
    """Once the gateway and workers run (webhooks made by hand)."""
    public_url: bool = False
    """Koppel manages the endpoints' webhooks (`koppel endpoints sync`): `[gateway] public_url` is set."""

    @property
    def integration(self) -> str:
        """The main integration: the one `Stack.activity` and `Stack.outcomes` read by default."""
        return self.integrations[0].id

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        return tuple(endpoint.secret for endpoint in self.endpoints)

    def build_config(self, stack: Stack) -> dict[str, Any]:
        if self.config is not None:
            return self.config(stack)
        opts = stack.options
        gateway = opts.gateway_settings() | ({"public_url": stack.gateway_url} if self.public_url else {})
        return {
            "gateway": gateway,
            "endpoints": [{"id": e.id, "kind": e.kind, "secret": f"env:{e.secret}", "system": e.system}
                          for e in self.endpoints],
            "systems": [{"id": s.id, "kind": s.kind, **s.entry(stack)} for s in self.systems],
            "integrations": [i.entry() for i in self.integrations],
        }  # fmt: skip


def feed_phase(feed: Feed) -> Phase:
    """A phase that enters records in the source, follows them to the target and reports them."""

    def run(run: Run) -> bool:
        if feed.ready is not None:
            feed.ready(run.stack)
        since = time.time()  # what the records went through before (a stock level's earlier changes) is not theirs
        count = run.records if feed.most is None else min(run.records, feed.most)
        ids = feed.place(run.stack, count, 1)
        label = f"{len(ids)} {feed.record}s {feed.entered} {feed.source_title}"
        run.console.print()
        outcomes = follow(run, ids, label, integration=feed.integration, calls=feed.target_title, since=since)
        run.notes[feed.integration] = outcomes
        problems = feed.check(run.stack, ids, outcomes) if feed.check is not None else []
        healthy = report_feed(run, feed, outcomes)
        for problem in problems:
            run.console.print(f"[red]{problem}[/]")
        return healthy and not problems

    return Phase(feed.title, run)


def report_feed(run: Run, feed: Feed, outcomes: dict[str, OrderOutcome]) -> bool:
    """The feed's table: records entered, what became of them (with the reasons of those skipped or failed),
    the target's calls per record; True when every record got the outcome the feed expects."""
    counts = Counter(o.outcome for o in outcomes.values())
    rows = [
        (f"{feed.record}s {feed.entered} {feed.source_title}", str(len(outcomes)), ""),
        (f"created in {feed.target_title}", str(counts["created"]), ""),
        (f"updated in {feed.target_title}", str(counts["updated"]), ""),
        ("skipped", str(counts["skipped"]), ""),
    ]
    rows += _reasons(outcomes, "skipped")
    rows.append(("failed", str(counts["failed"]), "kept in RQ's failed registry"))
    rows += _reasons(outcomes, "failed")
    done = [o for o in outcomes.values() if o.outcome == feed.expect]
    if done:
        per = sum(o.calls for o in done) / len(done)
        rows.append((f"{feed.target_title} API calls per {feed.record}", f"{per:.2f}", feed.note))
    report_table(run.console, feed.title, rows)
    return counts[feed.expect] == len(outcomes)


def _reasons(outcomes: dict[str, OrderOutcome], outcome: str) -> list[tuple[str, str, str]]:
    found = Counter(o.reason for o in outcomes.values() if o.outcome == outcome)
    return [("", f"{count} x", reason) for reason, count in found.most_common()]


# -- the systems ----------------------------------------------------------------------------------


def _woo_app(opts: StackOptions) -> ASGIApp:
    from connectors.woocommerce.sandbox import create_sandbox

    return create_sandbox(consumer_key=WOO_KEY, consumer_secret=WOO_SECRET, seed_products=not opts.pair,
                          checkout_update=opts.checkout_update)  # fmt: skip


def _woo_entry(stack: Stack) -> dict[str, Any]:
    opts = stack.options
    credentials = {"consumer_key": "env:KOPPEL_STACK_WC_KEY", "consumer_secret": "env:KOPPEL_STACK_WC_CONSUMER_SECRET"}
    settings = {"reconcile_interval_seconds": 300 if opts.pair else 0, **opts.shop_settings}
    return {"base_url": stack.url("shop"), "credentials": credentials, "settings": settings}


def _exact_app(opts: StackOptions) -> ASGIApp:
    from connectors.exactonline.sandbox import create_sandbox

    return create_sandbox(per_minute=opts.exact_per_minute, per_day=opts.exact_per_day,
                          rate_limits=opts.exact_rate_limits)  # fmt: skip


def _exact_entry(stack: Stack) -> dict[str, Any]:
    opts = stack.options
    rate_limit: dict[str, Any] = {"per_minute": opts.exact_per_minute, "per_day": opts.exact_per_day}
    if not opts.exact_rate_limits:
        rate_limit = {"enabled": False}
    settings: dict[str, Any] = {"client_id": EXACT_CLIENT_ID, "redirect_uri": EXACT_REDIRECT, "rate_limit": rate_limit}
    poll = opts.writeback_poll_seconds if stack.pair.name == WOO_EXACT else opts.poll_seconds
    if stack.pair.name != WOO_EXACT and opts.exact_rate_limits:
        # each poll of a stream is a call of Exact's 60 a minute: two streams every 2 s would spend them all
        poll = max(poll or 0, EXACT_POLL_SECONDS)
    if poll is not None:
        settings["poll_interval_seconds"] = poll
    return {"base_url": stack.url("exact"), "settings": settings,
            "credentials": {"client_secret": "env:KOPPEL_STACK_EXACT_SECRET"}}  # fmt: skip


def _connect_exact(stack: Stack) -> None:
    """Koppel's OAuth consent flow against the sandbox, which approves at once."""
    from connectors.exactonline.auth import OAuthApp
    from connectors.exactonline.sandbox import connect_sandbox

    app = OAuthApp(stack.url("exact"), EXACT_CLIENT_ID, EXACT_CLIENT_SECRET, EXACT_REDIRECT)
    connect_sandbox(stack.http, app, stack.connection, "exact")


def _winstore_app(opts: StackOptions) -> ASGIApp:
    from connectors.winstore.sandbox import create_sandbox

    return create_sandbox(username=WS_USER, password=WS_PASSWORD)


def _winstore_entry(stack: Stack) -> dict[str, Any]:
    from connectors.winstore.sandbox.app import PREFIX

    settings = {"branch": BRANCH, "channel": WINSTORE_CHANNEL, "warehouses": [WAREHOUSE],
                "poll_interval_seconds": stack.options.poll_seconds}  # fmt: skip
    credentials = {"username": "env:KOPPEL_STACK_WS_USER", "password": "env:KOPPEL_STACK_WS_PASSWORD"}
    return {"base_url": stack.url("winstore") + PREFIX, "settings": settings, "credentials": credentials}


def _bc_app(opts: StackOptions) -> ASGIApp:
    from connectors.businesscentral.sandbox import create_sandbox

    # notifications batched for a second (BC waits ~30 s), so the demo's orders arrive promptly
    return create_sandbox(client_secret=BC_SECRET, batch_seconds=1.0)


def _bc_entry(stack: Stack) -> dict[str, Any]:
    from connectors.businesscentral.sandbox import SandboxConfig

    sandbox, url = SandboxConfig(), stack.url("bc")
    settings = {"tenant": sandbox.tenant, "client_id": sandbox.client_id, "environment": sandbox.environment,
                "company": sandbox.companies[0], "login_url": url, "poll_interval_seconds": stack.options.poll_seconds,
                "reconcile_interval_seconds": 300}  # fmt: skip
    return {"base_url": url, "settings": settings, "credentials": {"client_secret": "env:KOPPEL_STACK_BC_SECRET"}}


def _asperion_app(opts: StackOptions) -> ASGIApp:
    from connectors.asperion.sandbox import create_sandbox

    return create_sandbox()


def _asperion_entry(stack: Stack) -> dict[str, Any]:
    from connectors.asperion.sandbox import SandboxConfig

    url, sandbox = stack.url("asperion"), SandboxConfig()
    settings = {"client_id": sandbox.client_id, "redirect_uri": ASPERION_REDIRECT, "tenant_id": sandbox.tenants[0],
                "identity_url": url, "poll_interval_seconds": stack.options.poll_seconds}  # fmt: skip
    return {"base_url": url, "settings": settings, "credentials": {"client_secret": "env:KOPPEL_STACK_ASPERION_SECRET"}}


def _connect_asperion(stack: Stack) -> None:
    """Koppel's OAuth consent flow against the sandbox (`koppel connect asperion`), which approves at once."""
    from connectors.asperion.auth import OAuthApp
    from connectors.asperion.sandbox import SandboxConfig, connect_sandbox

    sandbox = SandboxConfig()
    app = OAuthApp(stack.url("asperion"), sandbox.client_id, sandbox.client_secret, ASPERION_REDIRECT)
    connect_sandbox(stack.http, app, stack.connection, "asperion")


SHOP = SandboxSystem("shop", "woocommerce", "WooCommerce", _woo_app, _woo_entry,
                     {"KOPPEL_STACK_WC_KEY": WOO_KEY, "KOPPEL_STACK_WC_CONSUMER_SECRET": WOO_SECRET})  # fmt: skip
EXACT = SandboxSystem("exact", "exactonline", "Exact Online", _exact_app, _exact_entry,
                      {"KOPPEL_STACK_EXACT_SECRET": EXACT_CLIENT_SECRET}, connect=_connect_exact)  # fmt: skip
WINSTORE = SandboxSystem("winstore", "winstore", "Winstore", _winstore_app, _winstore_entry,
                         {"KOPPEL_STACK_WS_USER": WS_USER, "KOPPEL_STACK_WS_PASSWORD": WS_PASSWORD})  # fmt: skip
BC = SandboxSystem("bc", "businesscentral", "Business Central", _bc_app, _bc_entry,
                   {"KOPPEL_STACK_BC_SECRET": BC_SECRET})  # fmt: skip
ASPERION = SandboxSystem("asperion", "asperion", "Asperion", _asperion_app, _asperion_entry,
                         {"KOPPEL_STACK_ASPERION_SECRET": ASPERION_SECRET}, connect=_connect_asperion)  # fmt: skip


# -- WooCommerce ⇄ Exact Online: the main job -----------------------------------------------------------


def _woo_exact_config(stack: Stack) -> dict[str, Any]:
    """The options decide what of the pair runs: orders only (the e2e tests and bench, items and webhooks
    made by hand) or, with `options.pair`, every flow as the main job shows it."""
    opts = stack.options
    data: dict[str, Any] = {
        "gateway": opts.gateway_settings()
        | ({"public_url": stack.gateway_url} if opts.public_url or opts.pair else {}),
        "endpoints": [{"id": ENDPOINT, "kind": "woocommerce", "secret": "env:KOPPEL_STACK_WC_SECRET",
                       "system": "shop"}],
        "systems": [{"id": s.id, "kind": s.kind, **s.entry(stack)} for s in (EXACT, SHOP)],
        "integrations": [
            {"id": INTEGRATION, "source": ENDPOINT, "target": "exact", "flows": ["orders"],
             "settings": dict(opts.settings)},
        ],
    }  # fmt: skip
    if opts.pair:
        integration = data["integrations"][0]
        integration["flows"] = ["orders", "products", "customers"]
        if opts.product_filter:
            integration["settings"].setdefault("product_filter", opts.product_filter)
    if opts.writeback_poll_seconds is not None:
        flows = ["orders", "stock"] if opts.pair else ["orders"]
        data["integrations"].append({"id": WRITEBACK, "source": "exact", "target": "shop", "flows": flows})
    return data


def _seed_exact_items(stack: Stack) -> None:
    """The shop's SKUs as Exact items (not for the whole pair: its products flow makes them), and the
    integration's service items."""
    opts = stack.options
    skus = [] if opts.pair else [s for s in stack.shop_skus() if s not in opts.missing_skus]
    if skus:
        stack.add_exact_items(skus)
    services = {"skus": ["SHIPPING", "FEE", "DISCOUNT"], "stock": None}
    stack.control("exact", "seed/items", services)


def _create_woo_webhooks(stack: Stack) -> None:
    """The shop's order webhooks made by hand (for the whole pair, `koppel endpoints sync` makes them)."""
    if not stack.options.create_webhooks or stack.options.pair:
        return
    client = stack.woo_client()
    url = f"{stack.gateway_url}/webhooks/{ENDPOINT}"
    for topic in ("order.created", "order.updated"):
        hook = client.create_webhook(topic=topic, delivery_url=url, secret=stack.env["KOPPEL_STACK_WC_SECRET"])
        if hook.get("status") != "active":
            raise RuntimeError(f"the shop's {topic} webhook is {hook.get('status')}, not active")


def _shop_lines(stack: Stack) -> dict[str, int]:
    return {str(order["id"]): len(order.get("line_items", [])) for order in stack.woo_client().orders()}


SHOP_ORDERS = Feed(
    "order", "the shop", INTEGRATION, "exact", "Exact Online",
    place=lambda stack, count, seed: stack.place_orders(count, seed=seed),
    created="POST salesorder/SalesOrders", target_calls=1.5, lines=_shop_lines,
    note="1 once the customer is known",
)  # fmt: skip


# -- Winstore: its catalogue, and orders booked in it ------------------------------------------------------------

_GOODS = [("Tasse", "12.10", "21"), ("Koffie 1 kg", "24.90", "9"), ("Theedoek", "6.95", "21"),
          ("Bonen 500 g", "13.50", "9"), ("Mok", "9.95", "21"), ("Thee 100 g", "5.45", "9")]  # fmt: skip


def place_articles(stack: Stack, count: int, seed: int) -> list[str]:
    """New articles in Winstore (10 in stock each), as a user creates them there; their article keys."""
    articles = []
    for n in range(seed, seed + count):
        name, price, vat = _GOODS[n % len(_GOODS)]
        articles.append({"ArtNr": f"WS-{n:06d}", "Description": f"{name} {n}", "SalesPrice": price,
                         "VatPercentage": vat, "Gtin": f"8712345{n:06d}", "stock": {str(WAREHOUSE): 10}})  # fmt: skip
    done = stack.control("winstore", "articles", {"articles": articles})["articles"]
    return [str(article["ArtKey"]) for article in done]


def winstore_client(stack: Stack) -> Any:
    """A client of the Winstore sandbox's web service, as Koppel's connector reads it."""
    from connectors.winstore.client import WinstoreClient
    from connectors.winstore.sandbox.app import PREFIX

    return WinstoreClient(stack.http, base_url=stack.url("winstore") + PREFIX, username=WS_USER, password=WS_PASSWORD)


def winstore_catalogue(stack: Stack) -> dict[str, str]:
    """Article key → article number of every article in Winstore, read through its web service."""
    from connectors.winstore.connector import CATALOGUE_SINCE
    from connectors.winstore.normalise import article_key, sku_of

    return {str(article_key(a)): str(sku_of(a)) for a in winstore_client(stack).articles_changed(CATALOGUE_SINCE)}


def winstore_levels(stack: Stack, numbers: list[str]) -> dict[str, int | None]:
    """Article number → its stock in Winstore's warehouse `WAREHOUSE` (None: no row), read through GetStock."""
    keys = {number.upper(): key for key, number in winstore_catalogue(stack).items()}
    client, levels = winstore_client(stack), {}
    for number in numbers:
        rows = client.stock_by_key(keys[number.upper()]) if number.upper() in keys else []
        level = next((row.get("Stock") for row in rows if str(row.get("Warehouse")) == str(WAREHOUSE)), None)
        levels[number] = None if level is None else round(float(level))
    return levels


def winstore_own_orders(stack: Stack) -> dict[str, str]:
    """Order number → status code of the orders made in Winstore itself (not those Koppel posted into it)."""
    orders = stack.control("winstore", "orders", method="GET")["orders"]
    return {str(o["ordernr"]): str(o["statuscode"]) for o in orders if o.get("channel") != WINSTORE_CHANNEL}


_BUYERS = [
    {"email": "inkoop@joerg.example", "invoice_add": {"company": "Bakkerij Jörg B.V.", "fname": "Jörg",
     "lname": "Bakker", "street": "Oudegracht", "streetnr": "112a", "zip": "3511 AX", "city": "Utrecht",
     "countryISO": "NL"}},
    {"email": "anouk@example.nl", "invoice_add": {"fname": "Anouk", "lname": "de Vries", "street": "Utrechtseweg",
     "streetnr": "1", "zip": "3811 NA", "city": "Amersfoort", "countryISO": "NL"}},
    {"email": "els@example.be", "invoice_add": {"fname": "Els", "lname": "Peeters", "street": "Meir", "streetnr": "1",
     "zip": "2000", "city": "Antwerpen", "countryISO": "BE"}},
]  # fmt: skip
"""Who buys at Winstore's till and by phone: a company and two people, known to the ERP after their first order."""


def ring_up(stack: Stack, numbers: list[str], count: int, seed: int) -> list[str]:
    """Orders made in Winstore (at the till, or taken by phone), one to three lines of these article numbers,
    status 1 (processing: booked, and later completed by the ERP); their order numbers."""
    orders = []
    for n in range(seed, seed + count):
        lines = [{"ArtNr": numbers[(n + k) % len(numbers)], "amount": 1 + (n + k) % 3} for k in range(1 + n % 3)]
        channel = "till" if n % 2 else "telefoon"
        orders.append({"positions": lines, "statuscode": "1", "channel": channel, **_BUYERS[n % len(_BUYERS)]})
    done = stack.control("winstore", "orders/ring-up", {"orders": orders})["orders"]
    return [str(order["ordernr"]) for order in done]


def _in_target(stack: Stack, held: set[str], target: str) -> list[str]:
    """The article numbers of Winstore's catalogue the target holds as items (the catalogue phase made them)."""
    numbers = [number for number in winstore_catalogue(stack).values() if number.upper() in held]
    if not numbers:
        raise RuntimeError(f"{target} has none of Winstore's articles as items: the catalogue phase comes first")
    return numbers


def booked_once(numbers: list[str], refs: Counter[str], target: str) -> list[str]:
    """What is wrong with these order numbers' documents in a target (by their reference there)."""
    missing = [n for n in numbers if refs[n] == 0]
    doubles = [n for n in numbers if refs[n] > 1]
    return ([f"not in {target}: {', '.join(missing)}"] if missing else []) + (
        [f"booked more than once in {target}: {', '.join(doubles)}"] if doubles else []
    )


def status_back_check(stack: Stack, numbers: list[str], code: str) -> list[str]:
    """The Winstore orders whose ERP orders changed now have status `code` in Winstore."""
    statuses = winstore_own_orders(stack)
    wrong = [f"{n} ({statuses.get(n, 'missing')})" for n in numbers if statuses.get(n) != code]
    return [f"Winstore orders without status {code}: {', '.join(wrong)}"] if wrong else []


def stock_check(stack: Stack, wanted: dict[str, int]) -> list[str]:
    """Winstore's levels of these article numbers are what the ERP has available."""
    levels = winstore_levels(stack, list(wanted))
    wrong = [f"{n} ({levels[n]}, not {level})" for n, level in wanted.items() if levels[n] != level]
    return [f"Winstore's stock differs: {', '.join(wrong)}"] if wrong else []


def _winstore_orders_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every order Koppel created booked exactly once in Winstore, under its order number."""
    booked = Counter(str(o["ordernr"]) for o in stack.control("winstore", "orders", method="GET")["orders"])
    return booked_once([o.number for o in outcomes.values() if o.outcome == "created"], booked, "Winstore")


# -- Winstore ⇄ Exact Online ----------------------------------------------------------------------------------


EXACT_VAT_CODES = {"vat_codes": {"entries": {"21": "2", "9": "1", "0": "0"}}}
"""Winstore's VAT rates as Exact's VAT codes (the sandbox's, as a Dutch division has them): the items Koppel
makes carry their sales VAT code, so the orders entered on them in Exact have their VAT."""


def _exact_items_check(stack: Stack, keys: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    numbers = [winstore_catalogue(stack)[key] for key in keys]
    codes = Counter(str(row.get("Code")) for row in stack.exact_rows("logistics/Items"))
    missing = [n for n in numbers if codes[n] == 0]
    doubles = [n for n in numbers if codes[n] > 1]
    return ([f"not an item in Exact: {', '.join(missing)}"] if missing else []) + (
        [f"more than one Exact item: {', '.join(doubles)}"] if doubles else []
    )


_PEOPLE = [("Bakkerij Jörg B.V.", "inkoop@joerg.example", "Oudegracht 112a", "3511 AX", "Utrecht"),
           ("Anouk de Vries", "anouk@example.nl", "Utrechtseweg 1", "3811 NA", "Amersfoort"),
           ("Koffiebar Noord", "info@koffiebarnoord.example", "Vismarkt 3", "9712 CA", "Groningen")]  # fmt: skip


def place_exact_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders entered in Exact for its customers, two to three lines of the items Winstore's catalogue
    made; their order ids."""
    items = {str(row["Code"]): str(row["ID"]) for row in stack.exact_rows("logistics/Items")}
    codes = [code for code in winstore_catalogue(stack).values() if code in items]
    if not codes:
        raise RuntimeError("Exact has none of Winstore's articles as items: the catalogue phase comes first")
    accounts = [{"Name": name, "Email": email, "AddressLine1": street, "Postcode": zip_code, "City": city,
                 "Country": "NL"} for name, email, street, zip_code, city in _PEOPLE]  # fmt: skip
    made = stack.control("exact", "seed", {"entity": "crm/Accounts", "records": accounts})
    account_ids = [str(i) for i in made["ids"]]
    orders = []
    for n in range(seed, seed + count):
        lines = [{"Item": items[codes[(n + k) % len(codes)]], "Quantity": 1 + (n + k) % 3,
                  "UnitPrice": 10.0 + (n + k) % 5} for k in range(2 + n % 2)]  # fmt: skip
        orders.append({"OrderedBy": account_ids[n % len(account_ids)], "SalesOrderLines": lines})
    ids = stack.control("exact", "seed", {"entity": "salesorder/SalesOrders", "records": orders})["ids"]
    return [str(i) for i in ids]


def place_winstore_orders_for_exact(stack: Stack, count: int, seed: int) -> list[str]:
    """Orders made in Winstore of the articles Exact holds as items; their order numbers."""
    codes = {str(row.get("Code")).upper() for row in stack.exact_rows("logistics/Items")}
    return ring_up(stack, _in_target(stack, codes, "Exact Online"), count, seed)


def _exact_orders_check(stack: Stack, numbers: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every Winstore order one Exact sales order (its YourRef the order number)."""
    refs = Counter(str(row.get("YourRef")) for row in stack.exact_rows("salesorder/SalesOrders"))
    return booked_once(numbers, refs, "Exact Online")


def deliver_winstores_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders in Exact that came from Winstore, delivered there (status 21) as a person in Exact would;
    their order ids."""
    own = winstore_own_orders(stack)
    open_ = [row for row in stack.exact_rows("salesorder/SalesOrders")
             if str(row.get("YourRef")) in own and row.get("Status") != 21][:count]  # fmt: skip
    if not open_:
        raise RuntimeError("Exact holds no open order from Winstore: the Winstore orders phase comes first")
    stack.deliver_in_exact([str(row["YourRef"]) for row in open_])
    return [str(row["OrderID"]) for row in open_]


def _exact_status_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    refs = {str(row["OrderID"]): str(row.get("YourRef")) for row in stack.exact_rows("salesorder/SalesOrders")}
    return status_back_check(stack, [refs[i] for i in ids], COMPLETED)


def count_exact_stock(stack: Stack, count: int, seed: int) -> list[str]:
    """A stock count in Exact of items made from Winstore's articles; their stock positions' ids."""
    codes = _in_target(stack, {str(row.get("Code")).upper() for row in stack.exact_rows("logistics/Items")},
                       "Exact Online")[:count]  # fmt: skip
    for n, code in enumerate(codes, seed):
        stack.set_exact_stock(code, 20 + n % 30)
    positions = {str(row.get("ItemCode")): str(row["ID"]) for row in stack.exact_rows("inventory/StockPositions")}
    return [positions[code] for code in codes]


def _exact_stock_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    rows = {str(row["ID"]): row for row in stack.exact_rows("inventory/StockPositions")}
    return stock_check(stack, {str(rows[i]["ItemCode"]): round(float(rows[i]["FreeStock"])) for i in ids})


WINSTORE_TO_EXACT = Feed(
    "article", "Winstore", "winstore-to-exact", "exact", "Exact Online", place_articles,
    check=_exact_items_check, created="POST logistics/Items", note="the article created as an item",
)  # fmt: skip
EXACT_TO_WINSTORE = Feed(
    "order", "Exact Online", "exact-to-winstore", "winstore", "Winstore", place_exact_orders,
    check=_winstore_orders_check, created="POST PostOrderWithStatusCode",
    note="the order posted; a catalogue read when the article map is not cached",
)  # fmt: skip
WINSTORE_ORDERS_TO_EXACT = Feed(
    "order", "Winstore", "winstore-to-exact", "exact", "Exact Online", place_winstore_orders_for_exact,
    check=_exact_orders_check, created="POST salesorder/SalesOrders", entered="rung up in",
    note="1 once the customer is known",
)  # fmt: skip
EXACT_STATUS_TO_WINSTORE = Feed(
    "order", "Exact Online", "exact-to-winstore", "winstore", "Winstore", deliver_winstores_orders,
    check=_exact_status_check, expect="updated", entered="delivered in", name="order status Exact Online → Winstore",
    most=SAMPLE, note="the status posted (Winstore's status read from the orders poll)",
)  # fmt: skip
EXACT_STOCK_TO_WINSTORE = Feed(
    "stock level", "Exact Online", "exact-to-winstore", "winstore", "Winstore", count_exact_stock,
    check=_exact_stock_check, expect="updated", entered="counted in", name="stock Exact Online → Winstore",
    most=SAMPLE, note="GetStock + PostStock; a catalogue read when the article map is not cached",
)  # fmt: skip


# -- Winstore ⇄ Business Central ----------------------------------------------------------------------------------


def _bc_records(stack: Stack, entity: str) -> list[dict[str, Any]]:
    return list(stack.control("bc", f"records?entity={entity}", method="GET")["records"])


def _bc_items_check(stack: Stack, keys: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    numbers = [winstore_catalogue(stack)[key].upper() for key in keys]
    held = Counter(str(item["number"]) for item in _bc_records(stack, "items"))
    missing = [n for n in numbers if held[n] == 0]
    return [f"not an item in Business Central: {', '.join(missing)}"] if missing else []


def place_bc_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders entered in Business Central for its customers, lines of the items Winstore's catalogue
    made; their ids (BC notifies Koppel of each)."""
    numbers = {str(item["number"]) for item in _bc_records(stack, "items")}
    codes = [code.upper() for code in winstore_catalogue(stack).values() if code.upper() in numbers]
    if not codes:
        raise RuntimeError("Business Central has none of Winstore's articles as items: the catalogue phase comes first")
    customers = [{"displayName": name, "email": email, "addressLine1": street, "postalCode": zip_code, "city": city,
                  "country": "NL"} for name, email, street, zip_code, city in _PEOPLE]  # fmt: skip
    known = list(stack.control("bc", "seed", {"entity": "customers", "records": customers})["ids"].values())
    orders = []
    for n in range(seed, seed + count):
        lines = [{"lineType": "Item", "lineObjectNumber": codes[(n + k) % len(codes)], "quantity": 1 + (n + k) % 3}
                 for k in range(2 + n % 2)]  # fmt: skip
        orders.append({"customerId": known[n % len(known)], "salesOrderLines": lines})
    return [str(i) for i in stack.control("bc", "seed", {"entity": "salesOrders", "records": orders})["ids"].values()]


BC_SETUP = {"taxAreas": ["DOMESTIC", "EU", "EXPORT"], "paymentTerms": ["30 DAYS"]}
"""The posting setup codes Business Central has (CRONUS-like), which the integrations' tables name."""
BC_TABLES = {
    "tax_areas": {"default": "EXPORT", "entries": {"NL": "DOMESTIC", "BE": "EU"}},
    "payment_terms": {"entries": {"NL": "30 DAYS"}},
}
"""A customer's tax area (VAT business posting group) and payment terms by billing country, as a user sets them up."""


def _seed_bc_setup(stack: Stack) -> None:
    for entity, codes in BC_SETUP.items():
        records = [{"code": code, "displayName": code.title()} for code in codes]
        stack.control("bc", "seed", {"entity": entity, "records": records})


def place_customers(stack: Stack, count: int, seed: int) -> list[str]:
    """Customers created in Winstore (every third a company, every fourth in Belgium); their customer ids."""
    customers = []
    for n in range(seed, seed + count):
        name = _GOODS[n % len(_GOODS)][0]
        belgian = n % 4 == 0
        person = {"fname": "Sanne" if n % 2 else "Daan", "lname": f"Klant {n}", "email": f"klant{n}@example.nl",
                  "phone": f"030-{n:07d}", "street": "Meir" if belgian else "Neude", "streetnr": str(1 + n % 90),
                  "zip": "2000" if belgian else "3512 AD", "city": "Antwerpen" if belgian else "Utrecht",
                  "countryISO": "BE" if belgian else "NL"}  # fmt: skip
        customers.append(person | ({"company": f"{name.split()[0]}handel {n} B.V."} if n % 3 == 0 else {}))
    return [str(i) for i in stack.control("winstore", "customers", {"customers": customers})["customers"]]


def _bc_customers_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every Winstore customer one BC customer (by e-mail), with its city."""
    from connectors.winstore.connector import CATALOGUE_SINCE

    given = {str(c["customerid"]): c for c in winstore_client(stack).customers_changed(CATALOGUE_SINCE)}
    held = Counter((str(c.get("email")).lower(), c.get("city")) for c in _bc_records(stack, "customers"))
    wrong = [i for i in ids if held[(str(given[i]["email"]).lower(), given[i]["city"])] != 1]
    return [f"not one Business Central customer with their address: {', '.join(wrong)}"] if wrong else []


def place_winstore_orders_for_bc(stack: Stack, count: int, seed: int) -> list[str]:
    """Orders made in Winstore of the articles Business Central holds as items; their order numbers."""
    held = {str(item["number"]) for item in _bc_records(stack, "items")}
    return ring_up(stack, _in_target(stack, held, "Business Central"), count, seed)


def _bc_orders_check(stack: Stack, numbers: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every Winstore order one BC sales order (its external document number the order number)."""
    refs = Counter(str(o.get("externalDocumentNumber")) for o in _bc_records(stack, "salesOrders"))
    return booked_once(numbers, refs, "Business Central")


def release_winstores_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders in Business Central that came from Winstore, released there as a user would; their ids
    (BC notifies Koppel of each)."""
    own = winstore_own_orders(stack)
    open_ = [o for o in _bc_records(stack, "salesOrders")
             if str(o.get("externalDocumentNumber")) in own and o.get("status") != "Released"][:count]  # fmt: skip
    if not open_:
        raise RuntimeError("Business Central holds no open order from Winstore: the Winstore orders phase comes first")
    for order in open_:
        stack.control("bc", "change", {"entity": "salesOrders", "id": order["id"], "fields": {"status": "Released"}})
    return [str(order["id"]) for order in open_]


def _bc_status_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    refs = {str(o["id"]): str(o.get("externalDocumentNumber")) for o in _bc_records(stack, "salesOrders")}
    return status_back_check(stack, [refs[i] for i in ids], COMPLETED)


def post_bc_inventory(stack: Stack, count: int, seed: int) -> list[str]:
    """Inventory posted in Business Central for items made from Winstore's articles (a count); their item ids."""
    items = {str(item["number"]): str(item["id"]) for item in _bc_records(stack, "items")}
    numbers = [n.upper() for n in _in_target(stack, set(items), "Business Central")][:count]
    for n, number in enumerate(numbers, seed):
        stack.control("bc", "change", {"entity": "items", "id": items[number], "fields": {"inventory": 20 + n % 30}})
    return [items[number] for number in numbers]


def _bc_stock_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    items = {str(item["id"]): item for item in _bc_records(stack, "items")}
    return stock_check(stack, {str(items[i]["number"]): round(float(items[i]["inventory"])) for i in ids})


WINSTORE_TO_BC = Feed(
    "article", "Winstore", "winstore-to-bc", "bc", "Business Central", place_articles,
    check=_bc_items_check, created="POST items", note="the article created as an item",
)  # fmt: skip
BC_TO_WINSTORE = Feed(
    "order", "Business Central", "bc-to-winstore", "winstore", "Winstore", place_bc_orders,
    check=_winstore_orders_check, created="POST PostOrderWithStatusCode",
    note="the order posted; a catalogue read when the article map is not cached",
)  # fmt: skip
WINSTORE_CUSTOMERS_TO_BC = Feed(
    "customer", "Winstore", "winstore-customers-to-bc", "bc", "Business Central", place_customers,
    check=_bc_customers_check, created="POST customers", note="looked up by e-mail, then created",
)  # fmt: skip
WINSTORE_ORDERS_TO_BC = Feed(
    "order", "Winstore", "winstore-to-bc", "bc", "Business Central", place_winstore_orders_for_bc,
    check=_bc_orders_check, created="POST salesOrders", entered="rung up in",
    note="a lookup (in BC already?), the header, a call per line",
)  # fmt: skip
BC_STATUS_TO_WINSTORE = Feed(
    "order", "Business Central", "bc-to-winstore", "winstore", "Winstore", release_winstores_orders,
    check=_bc_status_check, expect="updated", entered="released in", most=SAMPLE,
    name="order status Business Central → Winstore",
    note="the status posted (Winstore's status read from the orders poll)",
)  # fmt: skip
BC_STOCK_TO_WINSTORE = Feed(
    "stock level", "Business Central", "bc-stock-to-winstore", "winstore", "Winstore", post_bc_inventory,
    check=_bc_stock_check, expect="updated", entered="posted in", most=SAMPLE, name="stock Business Central → Winstore",
    note="GetStock + PostStock; a catalogue read when the article map is not cached",
)  # fmt: skip


# -- Exact Online ⇄ Asperion ----------------------------------------------------------------------------------


def _asperion_records(stack: Stack, resource: str) -> list[dict[str, Any]]:
    return list(stack.control("asperion", f"records?resource={resource}", method="GET")["records"])


def place_exact_items(stack: Stack, count: int, seed: int) -> list[str]:
    """New items in Exact (stock items at 21 %, every third a service), as a user creates them there; their ids."""
    items = []
    for n in range(seed, seed + count):
        name, price, _ = _GOODS[n % len(_GOODS)]
        items.append({"Code": f"EX-{n:06d}", "Description": f"{name} {n}", "StandardSalesPrice": float(price),
                      "SalesVatCode": "2", "IsStockItem": n % 3 != 0, "Barcode": f"8712346{n:06d}"})  # fmt: skip
    return [str(i) for i in stack.control("exact", "seed", {"entity": "logistics/Items", "records": items})["ids"]]


def _asperion_articles_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    codes = {str(row["ID"]): str(row["Code"]) for row in stack.exact_rows("logistics/Items")}
    held = Counter(str(a["code"]) for a in _asperion_records(stack, "articles"))
    missing = [codes[i] for i in ids if held[codes[i]] == 0]
    doubles = [codes[i] for i in ids if held[codes[i]] > 1]
    return ([f"not an article in Asperion: {', '.join(missing)}"] if missing else []) + (
        [f"more than one Asperion article: {', '.join(doubles)}"] if doubles else []
    )


def _shared_codes(stack: Stack) -> list[str]:
    """The item codes that are both Exact items and Asperion articles (the products phase made them)."""
    articles = {str(a["code"]) for a in _asperion_records(stack, "articles")}
    codes = [str(row["Code"]) for row in stack.exact_rows("logistics/Items") if str(row["Code"]) in articles]
    if not codes:
        raise RuntimeError("Asperion has none of Exact's items as articles: the products phase comes first")
    return codes


def place_exact_orders_for_asperion(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders entered in Exact for its customers, on the items Asperion has as articles; their ids."""
    items = {str(row["Code"]): str(row["ID"]) for row in stack.exact_rows("logistics/Items")}
    codes = _shared_codes(stack)
    accounts = [{"Name": name, "Email": email, "AddressLine1": street, "Postcode": zip_code, "City": city,
                 "Country": "NL"} for name, email, street, zip_code, city in _PEOPLE]  # fmt: skip
    made = stack.control("exact", "seed", {"entity": "crm/Accounts", "records": accounts})
    account_ids = [str(i) for i in made["ids"]]
    orders = []
    for n in range(seed, seed + count):
        lines = [{"Item": items[codes[(n + k) % len(codes)]], "Quantity": 1 + (n + k) % 3,
                  "UnitPrice": 10.0 + (n + k) % 5} for k in range(2 + n % 2)]  # fmt: skip
        orders.append({"OrderedBy": account_ids[n % len(account_ids)], "SalesOrderLines": lines})
    ids = stack.control("exact", "seed", {"entity": "salesorder/SalesOrders", "records": orders})["ids"]
    return [str(i) for i in ids]


def _asperion_orders_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every order Koppel created booked exactly once in Asperion, under its reference (Exact's number)."""
    booked = Counter(str(o.get("reference")) for o in _asperion_records(stack, "salesorders"))
    numbers = [o.number for o in outcomes.values() if o.outcome == "created"]
    missing = [n for n in numbers if booked[n] == 0]
    doubles = [n for n in numbers if booked[n] > 1]
    return ([f"not in Asperion: {', '.join(missing)}"] if missing else []) + (
        [f"booked more than once in Asperion: {', '.join(doubles)}"] if doubles else []
    )


_KINDS = ("Company", "Person", "Company")
"""Asperion's relation type of each of `_PEOPLE`."""


def place_asperion_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders entered in Asperion for new relations (companies and people), on articles Exact has as
    items; their ids."""
    codes = _shared_codes(stack)
    relations = []
    for (name, email, street, zip_code, city), kind in zip(_PEOPLE, _KINDS, strict=True):
        rest, _, number = street.rpartition(" ")
        first, _, last = name.partition(" ")
        person = {"firstName": first, "lastName": last} if kind == "Person" else {"companyName": name}
        address = {"street": rest, "houseNumber": number, "postalCode": zip_code, "city": city, "countryCode": "NL"}
        relations.append({"relationType": kind, "email": f"asperion.{email}", "address": address, **person})
    relation_ids = stack.control("asperion", "seed", {"resource": "relations", "records": relations})["ids"]
    orders = []
    for n in range(seed, seed + count):
        lines = [{"articleCode": codes[(n + k) % len(codes)], "quantity": 1 + (n + k) % 3,
                  "unitPrice": 10.0 + (n + k) % 5, "vatPercentage": 21} for k in range(2 + n % 2)]  # fmt: skip
        orders.append({"relationId": relation_ids[n % len(relation_ids)], "lines": lines})
    return [str(i) for i in stack.control("asperion", "seed", {"resource": "salesorders", "records": orders})["ids"]]


def _asperions_orders_in_exact(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every order Koppel created booked exactly once in Exact, under its reference (YourRef)."""
    booked = Counter(str(o.get("YourRef")) for o in stack.exact_rows("salesorder/SalesOrders"))
    return booked_once([o.number for o in outcomes.values() if o.outcome == "created"], booked, "Exact Online")


EXACT_TO_ASPERION_PRODUCTS = Feed(
    "item", "Exact Online", "exact-to-asperion-products", "asperion", "Asperion", place_exact_items,
    check=_asperion_articles_check, created="POST articles",
    note="the article looked up by code, then created",
)  # fmt: skip
EXACT_TO_ASPERION_ORDERS = Feed(
    "order", "Exact Online", "exact-to-asperion-orders", "asperion", "Asperion", place_exact_orders_for_asperion,
    check=_asperion_orders_check, created="POST salesorderwithlines", note="1 once the relation is known",
)  # fmt: skip
ASPERION_TO_EXACT_ORDERS = Feed(
    "order", "Asperion", "asperion-to-exact-orders", "exact", "Exact Online", place_asperion_orders,
    check=_asperions_orders_in_exact, created="POST salesorder/SalesOrders", note="1 once the account is known",
)  # fmt: skip


# -- Squarespace → Exact Online ----------------------------------------------------------------------------------

SQ_HOOKS = "sq-hooks"
SQ_TO_EXACT = "sq-to-exact"
EXACT_TO_SQ = "exact-to-sq"
SQ_TOKEN = "sq_oauth_token"  # noqa: S105 - the sandbox's own OAuth token (webhook subscriptions need one)
SQ_GOODS = {"SQ-MOK-1": "12.50", "SQ-THEE-2": "8.95", "SQ-BOEK-3": "19.99"}
"""The shop's SKUs and their prices (incl. VAT); the book is sold at 9 %, the rest at 21 %."""
SQ_BOOKS = ("SQ-BOEK-3",)
SQ_VAT_CODES = {"21": "2", "9": "1", "0": "0"}
"""Exact's VAT code of each rate (table `vat_codes`), as a user sets it up."""
PROMO = {"code": "LENTE10", "percent": 10}
CENT = Decimal("0.01")


def _sq_app(opts: StackOptions) -> ASGIApp:
    from connectors.squarespace.sandbox import create_sandbox

    return create_sandbox(oauth_token=SQ_TOKEN)


def _sq_entry(stack: Stack) -> dict[str, Any]:
    # the reconciliation poll as often as the demo polls (production: every 5 minutes)
    settings = {"reconcile_interval_seconds": stack.options.poll_seconds}
    return {"base_url": stack.url("sq"), "credentials": {"api_key": "env:KOPPEL_STACK_SQ_TOKEN"}, "settings": settings}


SQUARESPACE = SandboxSystem("sq", "squarespace", "Squarespace", _sq_app, _sq_entry,
                            {"KOPPEL_STACK_SQ_TOKEN": SQ_TOKEN})  # fmt: skip


def _seed_sq_shop(stack: Stack) -> None:
    """The shop's products in Squarespace, and the same SKUs as items in Exact (as the user has them), with
    the service items the default order mapping books shipping and promotions on."""
    for sku, price in SQ_GOODS.items():
        stack.control("sq", "products/seed", {"skus": [sku], "quantity": 500, "price": price})
    stack.control("exact", "seed/items", {"skus": list(SQ_GOODS)})
    stack.control("exact", "seed/items", {"skus": ["SHIPPING", "DISCOUNT"], "stock": None})


def sq_client(stack: Stack) -> Any:
    """A client of the Squarespace sandbox's Commerce API, as Koppel's connector reads it."""
    from connectors.squarespace.client import SquarespaceClient

    return SquarespaceClient(stack.http, token=SQ_TOKEN, api_root=stack.url("sq"))


def place_sq_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Checkouts in Squarespace by three customers: every third order a book (9 % VAT), the others mugs and
    tea (21 %), every second with the promotion code; their order ids (Squarespace notifies Koppel of each)."""
    ids = []
    for n in range(seed, seed + count):
        book = n % 3 == 0
        skus = list(SQ_BOOKS) if book else [sku for sku in SQ_GOODS if sku not in SQ_BOOKS][: 1 + n % 2]
        body = {"count": 1, "seed": n, "skus": skus, "tax_rate": 9 if book else 21,
                "email": f"klant{n % 3}@example.nl"} | ({"promo": PROMO} if n % 2 == 0 else {})  # fmt: skip
        ids += [str(i) for i in stack.control("sq", "orders", body)["orders"]]
    return ids


def place_sq_orders_unnotified(stack: Stack, count: int, seed: int) -> list[str]:
    """Checkouts whose notifications Squarespace never sends (lost): only the reconciliation poll finds them."""
    stack.control("sq", "notifications/drop", {"count": count})
    return place_sq_orders(stack, count, seed + 100)


def _sq_orders_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """Every Squarespace order one Exact sales order (YourRef its number), its lines at net prices adding up to
    the grand total less the tax (within half a cent a line: Exact rounds each line), each line the VAT code
    of the order's rate."""
    site = sq_client(stack)
    given = {i: site.get_order(i) for i in ids}
    orders = stack.exact_rows("salesorder/SalesOrders")
    refs = Counter(str(o.get("YourRef")) for o in orders)
    problems = booked_once([str(o["orderNumber"]) for o in given.values()], refs, "Exact Online")
    by_ref = {str(o.get("YourRef")): str(o["OrderID"]) for o in orders}
    lines: dict[str, list[dict[str, Any]]] = {}
    for line in stack.exact_rows("salesorder/SalesOrderLines"):
        lines.setdefault(str(line.get("OrderID")), []).append(line)
    off, codes = [], []
    for order in given.values():
        booked = lines.get(by_ref.get(str(order["orderNumber"]), ""), [])
        if not booked:
            continue
        net = sum((Decimal(str(line["AmountFC"])) for line in booked), Decimal(0))
        paid = Decimal(order["grandTotal"]["value"]) - Decimal(order["taxTotal"]["value"])
        if abs(net - paid) > CENT * len(booked) / 2:
            off.append(f"{order['orderNumber']} ({net} ≠ {paid})")
        rate = "9" if all(item["sku"] in SQ_BOOKS for item in order["lineItems"]) else "21"
        if {str(line.get("VATCode")) for line in booked} != {SQ_VAT_CODES[rate]}:
            codes.append(str(order["orderNumber"]))
    if off:
        problems.append(f"net total in Exact differs from Squarespace's total less tax: {', '.join(off)}")
    if codes:
        problems.append(f"a line without the VAT code of its rate: {', '.join(codes)}")
    return problems


def _sq_lines(stack: Stack) -> dict[str, int]:
    return {str(o["id"]): len(o.get("lineItems") or []) for page, _ in sq_client(stack).orders() for o in page}


def _seen_by_exacts_poll(stack: Stack) -> None:
    """Wait (a minute at most) until Exact's poll has read every sales order booked from Squarespace: their
    first reading (open: nothing to write back) is not the status phase's."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = {entry.resource_id for entry in stack.activity(integration=EXACT_TO_SQ)}
        if all(str(row["OrderID"]) in seen for row in stack.exact_rows("salesorder/SalesOrders")) and stack.idle():
            return
        time.sleep(0.3)


def deliver_sq_orders(stack: Stack, count: int, seed: int) -> list[str]:
    """Sales orders in Exact that came from Squarespace, delivered there (status 21) as a person in Exact
    would; their order ids."""
    numbers = {str(o["orderNumber"]) for page, _ in sq_client(stack).orders() for o in page}
    open_ = [row for row in stack.exact_rows("salesorder/SalesOrders")
             if str(row.get("YourRef")) in numbers and row.get("Status") != 21][:count]  # fmt: skip
    if not open_:
        raise RuntimeError("Exact holds no open order from Squarespace: the orders phase comes first")
    stack.deliver_in_exact([str(row["YourRef"]) for row in open_])
    return [str(row["OrderID"]) for row in open_]


def _sq_fulfilled_check(stack: Stack, ids: list[str], outcomes: dict[str, OrderOutcome]) -> list[str]:
    """The Squarespace orders whose Exact orders were delivered are fulfilled in Squarespace."""
    refs = {str(row["OrderID"]): str(row.get("YourRef")) for row in stack.exact_rows("salesorder/SalesOrders")}
    wanted = {refs[i] for i in ids}
    statuses = {str(o["orderNumber"]): o.get("fulfillmentStatus") for page, _ in sq_client(stack).orders()
                for o in page if str(o["orderNumber"]) in wanted}  # fmt: skip
    unfulfilled = sorted(n for n in wanted if statuses.get(n) != "FULFILLED")
    return [f"not fulfilled in Squarespace: {', '.join(unfulfilled)}"] if unfulfilled else []


SQ_ORDERS_TO_EXACT = Feed(
    "order", "Squarespace", SQ_TO_EXACT, "exact", "Exact Online", place_sq_orders,
    check=_sq_orders_check, created="POST salesorder/SalesOrders", entered="placed at the checkout of",
    lines=_sq_lines, note="the order; the account too when it is new or renamed",
)  # fmt: skip
SQ_MISSED_TO_EXACT = Feed(
    "order", "Squarespace", SQ_TO_EXACT, "exact", "Exact Online", place_sq_orders_unnotified,
    check=_sq_orders_check, created="POST salesorder/SalesOrders", entered="placed, notification lost, in",
    name="missed notifications Squarespace → Exact Online", most=2,
    note="found by the reconciliation poll (Squarespace's orders read by modifiedOn)",
)  # fmt: skip
EXACT_STATUS_TO_SQ = Feed(
    "order", "Exact Online", EXACT_TO_SQ, "sq", "Squarespace", deliver_sq_orders,
    check=_sq_fulfilled_check, expect="updated", entered="delivered in", most=SAMPLE,
    name="order status Exact Online → Squarespace", ready=_seen_by_exacts_poll,
    note="the order found by its number, then fulfilled",
)  # fmt: skip


PAIRS: dict[str, Pair] = {
    WOO_EXACT: Pair(  # its config is built from the stack's options (_woo_exact_config): these name its parts
        WOO_EXACT, "WooCommerce ⇄ Exact Online", (EXACT, SHOP),
        integrations=(Integration(INTEGRATION, ENDPOINT, "exact", ("orders", "products", "customers")),
                      Integration(WRITEBACK, "exact", "shop", ("orders", "stock"))),
        endpoints=(Endpoint(ENDPOINT, "woocommerce", "shop", "KOPPEL_STACK_WC_SECRET"),),
        phases=(Phase("webhooks", woo_endpoints), Phase("catalogue", woo_catalogue), Phase("orders", woo_orders),
                Phase("customer", woo_customer_moves), Phase("missed webhooks", woo_missed_webhooks),
                Phase("stock", woo_stock), Phase("order status", woo_writeback)),
        feeds=(SHOP_ORDERS,), config=_woo_exact_config, prepare=_seed_exact_items, started=_create_woo_webhooks,
    ),
    WINSTORE_EXACT: Pair(
        WINSTORE_EXACT, "Winstore ⇄ Exact Online", (EXACT, WINSTORE),
        integrations=(Integration("winstore-to-exact", "winstore", "exact", ("products", "orders"),
                                  tables=EXACT_VAT_CODES),
                      Integration("exact-to-winstore", "exact", "winstore", ("orders", "stock"),
                                  settings={"order_mode": "both"})),
        phases=(feed_phase(WINSTORE_TO_EXACT), feed_phase(WINSTORE_ORDERS_TO_EXACT), feed_phase(EXACT_TO_WINSTORE),
                feed_phase(EXACT_STATUS_TO_WINSTORE), feed_phase(EXACT_STOCK_TO_WINSTORE)),
        feeds=(WINSTORE_TO_EXACT, WINSTORE_ORDERS_TO_EXACT, EXACT_TO_WINSTORE),
    ),
    WINSTORE_BC: Pair(
        WINSTORE_BC, "Winstore ⇄ Business Central", (BC, WINSTORE),
        integrations=(Integration("winstore-to-bc", "winstore", "bc", ("products", "orders"), tables=BC_TABLES),
                      Integration("winstore-customers-to-bc", "winstore", "bc", ("customers",), tables=BC_TABLES),
                      Integration("bc-to-winstore", BC_HOOKS, "winstore", ("orders",), settings={"order_mode": "both"},
                                  tables={"order_statuses": {"entries": {"released": COMPLETED}}}),
                      Integration("bc-stock-to-winstore", "bc", "winstore", ("stock",))),
        endpoints=(Endpoint(BC_HOOKS, "businesscentral", "bc", "KOPPEL_STACK_BC_HOOK_SECRET"),),
        phases=(Phase("subscriptions", sync_endpoints), feed_phase(WINSTORE_TO_BC),
                feed_phase(WINSTORE_CUSTOMERS_TO_BC), feed_phase(WINSTORE_ORDERS_TO_BC),
                feed_phase(BC_STATUS_TO_WINSTORE), feed_phase(BC_TO_WINSTORE), feed_phase(BC_STOCK_TO_WINSTORE)),
        feeds=(WINSTORE_TO_BC, WINSTORE_CUSTOMERS_TO_BC, WINSTORE_ORDERS_TO_BC, BC_TO_WINSTORE), public_url=True,
        prepare=_seed_bc_setup,
    ),
    EXACT_ASPERION: Pair(
        EXACT_ASPERION, "Exact Online ⇄ Asperion", (EXACT, ASPERION),
        integrations=(Integration("exact-to-asperion-products", "exact", "asperion", ("products",)),
                      Integration("exact-to-asperion-orders", "exact", "asperion", ("orders",)),
                      Integration("asperion-to-exact-orders", "asperion", "exact", ("orders",),
                                  tables={"vat_codes": {"entries": {"21": "2", "9": "1"}}})),
        phases=(feed_phase(EXACT_TO_ASPERION_PRODUCTS), feed_phase(EXACT_TO_ASPERION_ORDERS),
                feed_phase(ASPERION_TO_EXACT_ORDERS)),
        feeds=(EXACT_TO_ASPERION_PRODUCTS, EXACT_TO_ASPERION_ORDERS, ASPERION_TO_EXACT_ORDERS),
    ),
    SQ_EXACT: Pair(
        SQ_EXACT, "Squarespace → Exact Online", (EXACT, SQUARESPACE),
        integrations=(Integration(SQ_TO_EXACT, SQ_HOOKS, "exact", ("orders",),
                                  tables={"vat_codes": {"entries": SQ_VAT_CODES}}),
                      Integration(EXACT_TO_SQ, "exact", "sq", ("orders",))),
        endpoints=(Endpoint(SQ_HOOKS, "squarespace", "sq", "KOPPEL_STACK_SQ_HOOK_SECRET"),),
        phases=(Phase("subscriptions", sync_endpoints), feed_phase(SQ_ORDERS_TO_EXACT), feed_phase(SQ_MISSED_TO_EXACT),
                feed_phase(EXACT_STATUS_TO_SQ)),
        feeds=(SQ_ORDERS_TO_EXACT,), public_url=True, prepare=_seed_sq_shop,
    ),
}  # fmt: skip
"""Every pair `koppel demo --pair` and bench/e2e's `--pair` know, by name."""


def pair_named(name: str) -> Pair:
    """The pair of this name; ValueError with a sentence naming the valid ones."""
    found = PAIRS.get(name)
    if found is None:
        raise ValueError(f"unknown pair {name!r}; the pairs are {', '.join(PAIRS)}")
    return found


__all__ = ["EXACT_ASPERION", "PAIRS", "SQ_EXACT", "WINSTORE_BC", "WINSTORE_EXACT", "WOO_EXACT", "Endpoint", "Feed",
           "Integration", "Pair", "Phase", "SandboxSystem", "feed_phase", "pair_named"]  # fmt: skip
