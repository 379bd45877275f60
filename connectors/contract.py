"""The connector contract: what a system gives (`Source`) and what it takes (`Target`).

A system is one folder, `connectors/<kind>/`, whose package exposes `CONNECTOR`, a `Connector`
naming its pieces: the settings model `koppel config check` validates every system through, the
`Source` and `Target` classes, the webhook verifier in `handlers/<kind>.py`, the OAuth consent flow
when the system uses one, and its sandbox. The registry (connectors/registry.py) finds it; nothing
else in Koppel lists system kinds.

The four flows (workers/flows/) hold the SPEC's rules once and call only these interfaces:

    Source  resources   which of its resources (webhook topics, polled streams) feed which flow
            read        the full record behind a (possibly thin) notification
            lifecycle   (optional) a notification that the system cut Koppel off (an app uninstalled)
            normalise   a record into the canonical model (gateway/model.py)
            changes     what changed in a stream since a cursor (polling)
    Webhooks    (optional) the system's webhook subscriptions, for `koppel endpoints sync`: the topics
            a flow needs, the subscriptions it holds, create / update / enable / delete
    Target  writes      which flows it can take
            lookups     a record on its stable key (order number, e-mail, customer code, SKU)
            writes      documents, customers, products, stock; idempotent together with the flow's
                        ledger, each returning the target's id; `calls` counts the API calls made
            batches     (optional) the flows whose lookups and writes it takes many at once
                        (`find_stocks`, `write_stocks`, `create_products`, `update_products`): a burst
                        costs a few calls

A method a system does not support raises `Unsupported` (a PermanentError naming the system);
`koppel config check` refuses an integration whose flows the source cannot read or the target cannot
write, so those are never reached from a valid config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import FLOWS, Endpoint, System
from gateway.envelope import Envelope
from gateway.errors import KoppelError, PermanentError
from gateway.model import Customer, Order, Product, StockLevel

if TYPE_CHECKING:
    from connectors.oauth import CodeFlow

Record = dict[str, Any]
OrderMode = Literal["book", "status", "both"]
ORDER_MODES: tuple[OrderMode, ...] = ("status", "book", "both")
DISCOUNT_LINES = ("separate", "in_lines")
"""`settings.discount_lines`: discounts on lines of their own, or left in the lines' prices."""
_MODE_WORDS = {"book": "book orders (\"book\")", "status": "write order statuses back (\"status\")"}
Canonical = Order | Customer | Product | StockLevel
Outcome = Literal["created", "updated", "skipped", "ignored"]

__all__ = [
    "DISCOUNT_LINES",
    "ORDER_MODES",
    "Canonical",
    "Change",
    "Connector",
    "Context",
    "FlowResult",
    "Gone",
    "NotBookable",
    "OrderMode",
    "Outcome",
    "Record",
    "Settings",
    "Source",
    "StockRecord",
    "Subscription",
    "Target",
    "Unsupported",
    "Webhooks",
    "attempt",
]


class Unsupported(PermanentError):
    """A connector was asked for something its system cannot do."""


class Gone(PermanentError):
    """The record behind an event no longer exists in the source (deleted since): nothing to sync.
    The worker records the event as skipped, naming the record, instead of failing it."""


class NotBookable(Gone):
    """The record only tells of a status (Exact: a sales invoice); `Source.expand` refuses to book it
    elsewhere. Skipped, with the reason, like `Gone`."""


@dataclass
class Context:
    """What a connector gets from the process running it: one HTTP client and one Redis connection,
    shared by every connector of the process (creating an httpx client is costly), and a per-process
    cache for objects built once (API clients)."""

    http: httpx.Client
    redis: redis.Redis
    cached: Callable[[str, Callable[[], Any]], Any] = field(default=lambda _key, build: build())


class Settings(BaseModel):
    """Base of a connector's settings model: the system's `[systems.settings]` table.

    Subclasses declare their keys as fields; `credentials` names the `[systems.credentials]` keys the
    system needs and `needs_base_url` whether `base_url` must be given. `check(system)` adds rules
    across fields. Unknown keys are refused, so a typo is an error with its key path.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    credentials: ClassVar[tuple[str, ...]] = ()
    needs_base_url: ClassVar[bool] = False

    poll_interval_seconds: int = Field(default=60, ge=1)
    """How often a polled system is read (its `Source.changes`), when an integration polls it."""

    def check(self, system: System) -> list[str]:
        """Problems across fields, each "key.path: message" relative to the system."""
        return []

    def reconcile_interval(self) -> int:
        """Seconds between reconciliation polls: the system's streams polled although only its webhooks
        feed the integrations, to catch deliveries the webhooks lost (0: never; a connector whose
        webhooks can drop deliveries turns it on)."""
        return 0

    def webhook_check_interval(self) -> int:
        """Seconds between the worker's checks of the system's webhook subscriptions (0: never)."""
        return 0

    @classmethod
    def of(cls, system: System) -> Settings:
        """The system's settings, validated; PermanentError naming every problem."""
        settings, problems = cls.validate_system(system)
        if problems:
            raise PermanentError(f"systems.{system.id}: " + "; ".join(problems))
        assert settings is not None
        return settings

    @classmethod
    def validate_system(cls, system: System) -> tuple[Settings | None, list[str]]:
        problems: list[str] = []
        if cls.needs_base_url and not system.base_url:
            problems.append("base_url: required")
        problems += [f"credentials.{name}: required (env:NAME)" for name in cls.credentials
                     if name not in system.credentials]  # fmt: skip
        try:
            settings = cls.model_validate(system.settings)
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                path = ".".join(str(part) for part in err["loc"])
                message = err["msg"].removeprefix("Value error, ")
                message = "unknown key" if err["type"] == "extra_forbidden" else message
                problems.append(f"settings.{path}: {message}" if path else f"settings: {message}")
            return None, problems
        problems += settings.check(system)
        return settings, problems


@dataclass(frozen=True)
class Change:
    """One record a poll found changed: it becomes an event with this delivery key (the same change
    seen twice — by a webhook and a poll, or by two polls — has one key and is processed once)."""

    resource: str
    resource_id: str | None
    delivery_key: str
    record: Record


@dataclass(frozen=True)
class StockRecord:
    """A target's stock of one SKU: its own id(s), and what it holds now."""

    target_id: str
    sku: str
    quantity: int | float | None
    managed: bool | str | None
    ref: Any = None


@dataclass(frozen=True)
class FlowResult:
    """What a flow did with one event for one integration: its activity log entry (no payload data)."""

    outcome: Outcome
    number: str = ""
    target_id: str = ""
    calls: int | None = None
    """Target API calls made; None when the flow never turned to the target (e.g. a status filter). For a
    record written in a batch, its share of the batch's calls (whole numbers: the batch's calls spread over
    its members, so they add up to what the batch cost)."""
    reason: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)
    level: str = ""
    """`error` for an error-level skip (`Target.existing_order_level`); empty for the outcome's usual level."""
    batched: int = 0
    """How many records shared the target calls this one's `calls` are a share of (0: not batched)."""

    def as_dict(self) -> dict[str, Any]:
        """The job result's entry: empty fields left out."""
        out: dict[str, Any] = {"outcome": self.outcome}
        if self.number:
            out["number"] = self.number
        if self.calls is not None:
            out["calls"] = self.calls
        if self.target_id:
            out["target_id"] = self.target_id
        if self.reason:
            out["reason"] = self.reason
        if self.level:
            out["level"] = self.level
        if self.batched:
            out["batched"] = self.batched
        return out | dict(self.detail)


class Source:
    """What a system gives Koppel. One instance per (system or endpoint) and process.

    `resources` maps the system's resource names (as its webhooks or streams spell them, compared
    case-insensitively) to flows; `streams` maps a flow to the stream `changes` reads when the system
    is polled. `system` is None for a webhook endpoint not linked to an API system (`system = ...`).
    """

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    resources: ClassVar[Mapping[str, str]] = {}
    streams: ClassVar[Mapping[str, str]] = {}

    def __init__(self, system: System | None, context: Context | None) -> None:
        self.system = system
        self.context = context

    @classmethod
    def reads(cls) -> frozenset[str]:
        """Every flow this source can feed (by webhook or poll)."""
        return frozenset(cls.resources.values()) | frozenset(cls.streams)

    @classmethod
    def flow_of(cls, resource: str) -> str | None:
        return _folded(cls.resources).get(resource.lower())

    booked_statuses: ClassVar[tuple[str, ...]] = ("processing", "completed")
    """The statuses of this source's orders that are booked elsewhere unless `settings.order_statuses` says
    otherwise (canonical names, as `normalise` gives them)."""

    def read(self, envelope: Envelope, flow: str) -> Any:
        """The full record behind the event. Default: the payload is the record (a fat notification)."""
        return envelope.payload

    def expand(self, flow: str, record: Any) -> Any:
        """`record` with what booking it in another system needs and a status change does not (Exact: a
        sales order's lines and its customer's account). Default: the record as read."""
        return record

    order_documents: ClassVar[Mapping[str, str]] = {}
    """Order document types the source tells of → the stream that does (Exact: sales_order →
    SalesOrderHeaders, sales_invoice → SalesInvoices). An integration's `settings.order_documents`
    chooses which it polls; default: the first."""

    @classmethod
    def streams_for(cls, flow: str, settings: Mapping[str, Any]) -> list[str]:
        """The streams an integration with these settings polls for `flow`: `streams[flow]`; for orders
        of a source with `order_documents`, the streams of the documents chosen."""
        if flow == "orders" and cls.order_documents:
            chosen = settings.get("order_documents") or list(cls.order_documents)[:1]
            return list(dict.fromkeys(cls.order_documents[d] for d in chosen if d in cls.order_documents))
        stream = cls.streams.get(flow)
        return [stream] if stream else []

    def lifecycle(self, envelope: Envelope) -> str | None:
        """For a notification about the connection itself rather than a record (Squarespace's
        `extension.uninstall`: the site removed Koppel's app), why the integrations it feeds are switched
        off, for the operator; None for every other event (the default)."""
        return None

    def version(self, flow: str, record: Any) -> str | None:
        """The record's identity and version ("<id>:<modification time>") when the system gives one: the
        same version reached twice (by a webhook and a poll) is processed once. None: not versioned."""
        return None

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        """The record in the canonical model; `settings` are the integration's (what the user says of
        the source that its records do not, e.g. whether a shop's prices include tax)."""
        raise Unsupported(f"{self.kind} cannot give {flow}")

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        """Pages of changes after `cursor` (None: from the start), each with the cursor after it."""
        raise Unsupported(f"{self.kind} is not polled")

    def poll_scope(self) -> str:
        """What a stream's cursor and lock belong to besides the system (Exact: the division)."""
        return ""

    def collection(self, envelope: Envelope) -> Iterator[list[Change]] | None:
        """The records behind a notification of many changes at once (Business Central's `collection`: a
        resource with no key, changed since `envelope.since`), page by page, each then processed as its own
        event; None when the envelope names one record (the default: every notification does)."""
        return None

    # -- helpers for subclasses ----------------------------------------------------------------------

    def require_system(self, why: str) -> System:
        if self.system is None or self.context is None:
            raise PermanentError(
                f'{self.kind}: {why} needs the system\'s API; link the endpoint to its system (system = "...")'
            )
        return self.system


class Target:
    """What a system takes from Koppel. One instance per system and process; `calls` counts API calls.

    `writes` lists the flows it takes; `order_modes` what it does with orders: book them ("book") and/or
    write their status back to the target's own orders ("status"); the first is the default of an
    integration's `settings.order_mode`, which may also be "both" when the target does both.
    `documents` the order document types it books (the first is the default); `needs_items` the
    document types whose lines must resolve to the target's items.
    """

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    writes: ClassVar[frozenset[str]] = frozenset()
    order_modes: ClassVar[tuple[Literal["book", "status"], ...]] = ("book",)
    documents: ClassVar[tuple[str, ...]] = ("order",)
    needs_items: ClassVar[frozenset[str]] = frozenset({"order"})
    items_case_sensitive: ClassVar[bool] = False
    customer_accounts: ClassVar[bool] = True
    """Whether booking an order needs the target's customer (found or created by the customers flow); False
    for a target whose orders carry their customer themselves (Winstore): booked as guest orders."""
    existing_order_level: ClassVar[int | None] = None
    """None: Koppel's ledger alone says an order is booked. A logging level: an order the ledger does not
    hold is first looked up in the target (`find_order`, by the source's number); one found there is skipped
    and logged at this level, its activity entry carrying the level's name when it is an error or worse
    (Business Central: an existing order is an error-level skip)."""
    service_items: ClassVar[bool] = True
    """Whether shipping, fee and discount lines are booked as items (an ERP's service items) rather than
    as the target's own kinds of line (a shop's shipping and fee lines)."""

    batches: ClassVar[frozenset[str]] = frozenset()
    """The flows whose lookups and writes this target takes many at once ("stock": `find_stocks` and
    `write_stocks`; "products": `update_products` and `create_products` — whose default still creates one by
    one, for a target without a batch create), so a burst of events costs a few calls; for the others each
    event is written on its own."""

    def __init__(self, system: System, context: Context) -> None:
        self.system = system
        self.context = context

    @property
    def calls(self) -> int:
        return 0

    def _unsupported(self, what: str) -> Unsupported:
        return Unsupported(f"{self.kind} system {self.system.id!r} cannot {what}")

    @classmethod
    def order_mode_problem(cls, value: Any) -> str | None:
        """Why `settings.order_mode = value` does not fit this target, or None (None: the default)."""
        if value is None:
            return None
        if value not in ORDER_MODES:
            return f"must be one of {', '.join(ORDER_MODES)}"
        wanted = {"book", "status"} if value == "both" else {value}
        if not wanted <= set(cls.order_modes):
            return f"{cls.title or cls.kind} can only {' or '.join(_MODE_WORDS[m] for m in cls.order_modes)}"
        return None

    @classmethod
    def order_mode_of(cls, settings: Mapping[str, Any]) -> OrderMode:
        """The integration's order mode: `settings.order_mode`, else the first of `order_modes`."""
        value = settings.get("order_mode")
        problem = cls.order_mode_problem(value)
        if problem is not None:
            raise PermanentError(f"settings.order_mode {value!r}: {problem}")
        return value if value is not None else cls.order_modes[0]

    @classmethod
    def discount_lines_problem(cls, value: Any) -> str | None:
        """Why `settings.discount_lines = value` is wrong, or None (None: the default)."""
        if value is None or value in DISCOUNT_LINES:
            return None
        return f"must be one of {', '.join(DISCOUNT_LINES)}"

    @classmethod
    def discount_lines_of(cls, settings: Mapping[str, Any]) -> str:
        """How discounts spread over the lines are booked: `settings.discount_lines`, else "separate" for a
        target that books service items (an ERP: the goods at full price, the discount a line of its own
        per VAT rate) and "in_lines" for one that does not (a shop: the lines' prices after the discount)."""
        value = settings.get("discount_lines")
        problem = cls.discount_lines_problem(value)
        if problem is not None:
            raise PermanentError(f"settings.discount_lines {value!r}: {problem}")
        return str(value) if value is not None else ("separate" if cls.service_items else "in_lines")

    # -- orders ------------------------------------------------------------------------------------

    @classmethod
    def booking_problems(cls, system: System) -> list[str]:
        """What `koppel config check` reports when an integration books orders into `system` and its settings
        lack what booking needs (Winstore: the branch). Default: nothing."""
        return []

    def order_label(self, document: str, target_id: str) -> str:
        """The target document `target_id` as a log line names it (its number where the target knows one)."""
        return f"{document} {target_id}"

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        """The id of the document booked for the source's order `number`, or None. `since`: when the
        attempt that may have written it began (a target that cannot look up by number searches from then)."""
        raise self._unsupported("look up orders")

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        raise self._unsupported("book orders")

    def references(self, document: str) -> dict[str, Any]:
        """Ids a document type needs besides customer and items (a warehouse, G/L accounts), for the
        mapping's `$id(...)`; a Mapping value may resolve keys lazily."""
        return {}

    def order_status(self, reference: str, *, by_id: bool = False) -> tuple[str, str] | None:
        """(target id, current status) of the target's own order with this reference (`by_id`: with
        this target id, as `create_order` returned it), or None."""
        raise self._unsupported("read order statuses")

    def order_email(self, target_id: str) -> str | None:
        """The customer e-mail address of the target's own order `target_id` (as `order_status` gave it):
        whether an order whose reference merely looks like one of the target's is really that one."""
        raise self._unsupported("read order customers")

    def set_order_status(self, target_id: str, status: str) -> None:
        raise self._unsupported("write order statuses")

    def status_code(self, status: str) -> str:
        """The target's own spelling of a status the write-back wants (the `order_statuses` table's value, or
        Koppel's default name), as `order_status` reports statuses: compared before writing. Default: as given
        (Winstore: its status code for Koppel's names)."""
        return status

    # -- customers ---------------------------------------------------------------------------------

    def find_customer(self, email: str) -> str | None:
        raise self._unsupported("look up customers")

    def find_customer_by_code(self, code: str) -> str | None:
        raise self._unsupported("look up customers by code")

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        raise self._unsupported("create customers")

    def update_customer(self, target_id: str, payload: Mapping[str, Any]) -> None:
        raise self._unsupported("update customers")

    def sync_customer(self, target_id: str, payload: Mapping[str, Any], changed: Iterable[str] | None) -> bool:
        """Bring an existing customer in line with `payload`. `changed` names the payload's fields
        (dotted: "Account.City") whose value differs from what Koppel last sent, gone ones included;
        None when unknown (a record Koppel did not write, or whose history it lost): then a target
        that can compares with what it holds. A target writing field by field leaves the other fields
        as someone changed them there. Returns whether anything was written. Default: the whole
        payload (`update_customer`)."""
        self.update_customer(target_id, payload)
        return True

    # -- products ----------------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        """{sku: item id} for the SKUs that exist (keys as asked); missing SKUs are absent."""
        raise self._unsupported("look up items")

    def create_product(self, payload: Mapping[str, Any]) -> str:
        raise self._unsupported("create products")

    def update_product(self, target_id: str, payload: Mapping[str, Any]) -> None:
        raise self._unsupported("update products")

    def create_products(self, payloads: Sequence[Mapping[str, Any]]) -> list[str | Exception]:
        """`create_product` for many items at once: per payload, in order, the id of the item created, else the
        error that item alone met — a `Taken` when the target refused it because an item holds its SKU already
        (the flow then looks that item up and updates it). Default: one by one."""
        out: list[str | Exception] = []
        for payload in payloads:
            try:
                out.append(self.create_product(payload))
            except KoppelError as exc:
                out.append(exc)
        return out

    def update_products(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Exception | None]:
        """`update_product` for many items at once: per update, None when written, else the error that item
        alone met (a NotFound for an item deleted since). Default: one by one."""
        return [attempt(self.update_product, target_id, payload) for target_id, payload in updates]

    # -- stock -------------------------------------------------------------------------------------

    @classmethod
    def stock_problems(cls, system: System) -> list[str]:
        """What `koppel config check` reports when an integration writes stock into `system` and its settings
        lack what that needs (Winstore: the warehouse). Default: nothing."""
        return []

    def find_stock(self, sku: str) -> StockRecord | None:
        raise self._unsupported("read stock")

    def stock_change(self, current: StockRecord, fields: Mapping[str, Any]) -> tuple[Any, Any] | None:
        """(what the target holds, what it would hold) when writing `fields` changes something, else None."""
        raise self._unsupported("write stock")

    def write_stock(self, current: StockRecord, fields: Mapping[str, Any]) -> None:
        raise self._unsupported("write stock")

    def find_stocks(self, skus: Sequence[str]) -> dict[str, StockRecord]:
        """`find_stock` for many SKUs at once: {sku as asked: its stock} for those the target has. Default:
        one by one."""
        found = {sku: self.find_stock(sku) for sku in dict.fromkeys(skus)}
        return {sku: stock for sku, stock in found.items() if stock is not None}

    def write_stocks(self, writes: Sequence[tuple[StockRecord, Mapping[str, Any]]]) -> list[Exception | None]:
        """`write_stock` for many at once: per write, None when written, else the error that record alone met
        (a NotFound for one deleted since). Default: one by one."""
        return [attempt(self.write_stock, current, fields) for current, fields in writes]

    def forget(self, flow: str, key: str) -> bool:
        """Drop what the target cached about `key` (a record deleted there since); True if anything was.
        For orders `key` is the document type: the ids its `references` resolved."""
        return False


@dataclass(frozen=True)
class Subscription:
    """One webhook subscription as the system holds it. `status` is "active", "paused" or "disabled"
    (the system stopped delivering, e.g. after failed deliveries)."""

    id: str
    topic: str
    url: str
    status: str
    name: str = ""
    expires: datetime | None = None
    """When the system ends the subscription unless renewed (Business Central: three days), if it does."""


class Webhooks:
    """A system's webhook subscriptions, as `koppel endpoints sync` manages them (workers/subscriptions.py
    plans and applies; this class only speaks the system's API). One instance per system and process.

    `prefix` starts the name of every subscription Koppel creates: with the delivery URL it tells
    Koppel's subscriptions from those of other software on the same system.
    """

    prefix: ClassVar[str] = "Koppel"

    def __init__(self, system: System, context: Context) -> None:
        self.system = system
        self.context = context

    def topics(self, flows: Iterable[str]) -> list[str]:
        """The topics (as the system names them) the flows need, in a stable order."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} has no managed webhooks")

    def current(self) -> list[Subscription]:
        """Every subscription the system holds, Koppel's and others'."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} has no managed webhooks")

    def create(self, topic: str, url: str, secret: str, name: str) -> Subscription:
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot create webhooks")

    def update(self, subscription: Subscription, *, topic: str, url: str, secret: str, name: str) -> Subscription:
        """Point the subscription at `url` for `topic`, signing with `secret`, active again."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot update webhooks")

    def enable(self, subscription: Subscription, secret: str) -> Subscription:
        """Re-activate a subscription the system disabled; the secret is set again with it (a wrong one is
        the usual reason deliveries failed)."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot enable webhooks")

    def delete(self, subscription: Subscription) -> None:
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot delete webhooks")

    def renew_due(self, subscription: Subscription) -> bool:
        """Whether the subscription expires soon enough to be renewed now (default: never expires)."""
        return False

    def renew(self, subscription: Subscription, secret: str) -> Subscription:
        """Extend the subscription's life (Business Central: a PATCH, answered with a new handshake)."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot renew webhooks")

    def rotate_secret(self, subscription: Subscription) -> Subscription:
        """Have the system issue a new signing secret (`koppel endpoints rotate-secret`; Squarespace)."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot rotate webhook secrets")

    def send_test(self, subscription: Subscription) -> int:
        """Have the system send a test notification (`koppel endpoints test`); the status the receiver answered."""
        raise Unsupported(f"{self.system.kind} system {self.system.id!r} cannot send test notifications")

    def vanished(self, url: str, current: Iterable[Subscription]) -> set[str]:
        """Topics Koppel created a subscription for at `url` that the system no longer holds (it deleted
        them, e.g. after failed deliveries): what they would have delivered since was lost. Default: none
        known (a system that disables rather than deletes)."""
        return set()


@dataclass(frozen=True)
class Connector:
    """One system kind: its pieces, found by the registry. Strings are "module:attribute" paths,
    imported only when used (the receiver never imports a sandbox; a worker never imports a handler):
    `handler` the webhook verifier, `sandbox` the sandbox's contract harness
    (connectors/sandboxkit/harness.py) that tests/contract/ drives every connector with.

    `check_endpoint` vets an endpoint of this kind (e.g. a secret's shape) and returns problems.
    `mappings` are default mappings the connector ships, "flow/document" → TOML text (the format of
    transforms/defaults/), for a target kind Koppel itself ships none for.
    `webhooks` manages the system's webhook subscriptions, when Koppel can (`koppel endpoints sync`).
    """

    kind: str
    title: str
    settings: type[Settings] = Settings
    source: type[Source] | None = None
    target: type[Target] | None = None
    handler: str | None = None
    oauth: type[CodeFlow] | None = None
    sandbox: str | None = None
    check_endpoint: Callable[[Endpoint], list[str]] | None = None
    mappings: Mapping[str, str] = field(default_factory=dict)
    webhooks: type[Webhooks] | None = None
    budget: Callable[[System, redis.Redis], dict[str, int] | None] | None = None
    """What is left of the system's shared API budget, when it tracks one (Exact): {"minute": left,
    "minute_limit": …, "day": …, "day_limit": …}; None when nothing is known yet (the web console shows it)."""
    issued_secrets: bool = False
    """Whether the system issues its webhook secrets itself (Squarespace): the receiver passes the ones Koppel
    stored (connectors/issued.py) to the handler with each request (`Incoming.secrets`)."""

    def __post_init__(self) -> None:
        unknown = (self.source.reads() if self.source else frozenset()) | (self.target.writes if self.target else set())
        if unknown - set(FLOWS):
            raise ValueError(f"connector {self.kind}: unknown flows {sorted(unknown - set(FLOWS))}")

    @property
    def reads(self) -> frozenset[str]:
        return self.source.reads() if self.source else frozenset()

    @property
    def writes(self) -> frozenset[str]:
        return self.target.writes if self.target else frozenset()


def attempt(write: Callable[..., Any], *args: Any, **options: Any) -> Exception | None:
    """None when `write(*args, **options)` succeeds; the Koppel error it raised otherwise (anything else is a bug:
    raised). For the many-at-once methods' per-record errors."""
    try:
        write(*args, **options)
    except KoppelError as exc:
        return exc
    return None


def _folded(resources: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): flow for name, flow in resources.items()}
