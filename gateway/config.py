"""Configuration as code: one TOML file declares endpoints, systems and integrations.

    [gateway]                      # optional; defaults shown in `GatewaySettings`
    max_body_bytes = 1048576
    journal_dir = "/var/lib/koppel/journal" # where events wait while Redis is down (default .koppel/journal)
    public_url = "https://koppel.example"   # where the systems reach the receiver (webhook subscriptions)

    [retention]                    # optional; how long each kind of data is kept (`RetentionSettings`)
    activity = "30d"

    [[endpoints]]                  # where webhooks arrive: POST /webhooks/{id}
    id = "shop"
    kind = "woocommerce"           # a registered connector kind (`koppel connectors` lists them)
    secret = "env:WC_WEBHOOK_SECRET"
    system = "shop-api"            # optional: the system whose API reads what the webhook only names

    [[systems]]                    # an API Koppel reads from or writes to
    id = "exact"
    kind = "exactonline"
    base_url = "https://start.exactonline.nl"
    [systems.credentials]
    client_secret = "env:EXACT_CLIENT_SECRET"

    [[integrations]]               # source (endpoint or system) -> target system, for these flows
    id = "shop-to-exact"
    source = "shop"
    target = "exact"
    flows = ["orders", "customers"]

Secrets are never written in the file: every secret field takes `env:NAME` and is read from the
environment at load time. Errors name the key path (`endpoints[0].secret`) and never echo a value.

This module checks the file's structure and its references. What a kind requires (its settings,
credentials, the flows it can give and take) is each connector's to say: `connectors.registry.load`
checks both, and is what Koppel's commands use.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from gateway.errors import ConfigError

FLOWS = ("orders", "customers", "products", "stock")

Flow = Literal["orders", "customers", "products", "stock"]

_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_KIND = r"^[a-z][a-z0-9_]{0,39}$"


def _resolve_secret(value: object, info: ValidationInfo) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string of the form env:NAME")
    match = _ENV_REF.match(value)
    if match is None:
        # Do not echo the value: it may be a secret pasted into the file by mistake.
        raise ValueError("must be a reference of the form env:NAME; secrets are never written in the config file")
    name = match.group(1)
    environ: Mapping[str, str] = (info.context or {}).get("environ", os.environ)
    secret = environ.get(name)
    if secret is None:
        raise ValueError(f"environment variable {name} is not set")
    if secret == "":
        raise ValueError(f"environment variable {name} is empty")
    return SecretStr(secret)


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
"""A secret given as `env:NAME` in the file and resolved from the environment."""


def _notify_url(value: object, info: ValidationInfo) -> SecretStr:
    """An apprise URL as written, or `env:NAME` read from the environment; kept secret either way (URLs
    carry passwords and tokens). Whether apprise understands it is `koppel config check`'s (workers/notifier.py)."""
    if isinstance(value, str) and value.startswith("env:"):
        return _resolve_secret(value, info)
    if not isinstance(value, str):
        raise ValueError("must be an apprise URL (mailto://..., json://..., slack://...) or env:NAME")
    if not value.strip():
        raise ValueError("is empty: give an apprise URL or env:NAME")
    return SecretStr(value.strip())


NotifyURL = Annotated[SecretStr, BeforeValidator(_notify_url)]

NotifyEvent = Literal["failure", "poller_stalled", "consent", "webhook_disabled", "subscription_expiring", "budget_low"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)
"""What an integration's `[integrations.notify]` can be told about (docs/notifications.md)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(_Model):
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # What a client may make the receiver hold before any signature is checked (gateway/limits.py):
    # the request line and headers (431 above), the time to send them and the body (408), open connections
    # (503 with Retry-After above).
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    queue: str = Field(default="koppel", pattern=r"^[a-z0-9_-]{1,64}$")
    # Largest number of events written to Redis in one round trip by the receiver.
    enqueue_batch_max: int = Field(default=256, ge=1, le=10_000)
    # Older names of `[retention]` jobs / failed_jobs (moved there when given; read by `pump_for` without it).
    result_ttl_seconds: int = Field(default=24 * 3600, ge=0)
    failure_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # Transient failures are retried with jittered exponential backoff: base * 2^n seconds, capped.
    retry_attempts: int = Field(default=8, ge=0, le=50)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_cap_seconds: float = Field(default=3600.0, gt=0)
    # A worker renews its running job's heartbeat and its resource locks this often; three missed beats
    # mean it died (SIGKILL, OOM): its job is then run again and its locks free themselves (within ~4 beats).
    # Shorter costs an idle worker ~2-5 more Redis commands/s and a job nothing measurable (bench/heartbeat).
    worker_heartbeat_seconds: int = Field(default=2, ge=1, le=300)
    # A worker's inbox pump runs a record's waiting events itself, without an RQ job per event (workers/inbox.py);
    # an event that fails becomes its RQ job (retries, the failed registry, replay). false: every event an RQ job.
    direct_events: bool = True
    # With Redis replicas (Sentinel, docs/deployment.md): answer a webhook 2xx only once this many replicas
    # have its events (Redis WAIT), else 503 after wait_timeout_ms. 0: the primary's word is enough.
    wait_replicas: int = Field(default=0, ge=0, le=16)
    wait_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    admin_token: Secret | None = None
    # The receiver's address as the systems reach it (behind a proxy: the proxy's); webhook subscriptions
    # Koppel manages point at {public_url}/webhooks/{endpoint id}. None: Koppel manages no subscriptions.
    public_url: PublicURL | None = None
    # When Redis cannot take an event, keep it in a local fsync'd journal and still answer 2xx; drained into
    # Redis once it is back (gateway/journal.py, docs/durability.md). false: answer 503 instead.
    journal: bool = True
    # Where (a local disk; each gateway process writes its own file). None: <KOPPEL_DATA_DIR or .koppel>/journal.
    journal_dir: str | None = Field(default=None, min_length=1)
    # /metrics answers only requests carrying `Authorization: Bearer <admin_token>` (needs admin_token).
    metrics_auth: bool = False

    @model_validator(mode="after")
    def _metrics_auth_needs_token(self) -> GatewaySettings:
        if self.metrics_auth and self.admin_token is None:
            raise ValueError("metrics_auth = true needs gateway.admin_token (the Bearer token /metrics asks for)")
        return self

    def webhook_url(self, endpoint_id: str) -> str | None:
        """Where a system delivers the endpoint's webhooks, or None without a `public_url`."""
        return f"{self.public_url}/webhooks/{endpoint_id}" if self.public_url else None


def _public_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. https://koppel.example")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry credentials, a query or a fragment")
    return value.strip().rstrip("/")


PublicURL = Annotated[str, AfterValidator(_public_url)]

_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Seconds from "14d", "12h", "30m", "45s" or a number of seconds (an int or its digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError('must be a duration such as "30d", "12h", "30m", "45s" or a number of seconds')
    return int(match.group(1)) * _UNIT[match.group(2)]


def _at_least(minimum: int, what: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        seconds = parse_duration(value)
        if seconds < minimum:
            raise ValueError(f"must be at least {what}")
        return seconds

    return check


Duration = Annotated[int, BeforeValidator(_at_least(0, "0"))]
"""Seconds, written "30d", "12h", "30m", "45s" or as a number of seconds."""
Hours = Annotated[int, BeforeValidator(_at_least(3600, "1h"))]
Minutes = Annotated[int, BeforeValidator(_at_least(60, "1m"))]


class RetentionSettings(_Model):
    """How long Koppel keeps each kind of data, in seconds. `koppel purge` and the workers' scheduled
    purge enforce it (workers/retention.py)."""

    activity: Hours = 30 * 86400
    payloads: Minutes = 7 * 86400
    jobs: Duration = 86400
    """Finished jobs (their arguments hold the event's payload); 0: dropped as they finish."""
    failed_jobs: Minutes = 30 * 86400
    inbox: Hours = 7 * 86400
    """Events waiting this long are reported by the purge; an event is never dropped before its job exists."""
    purge_interval: Minutes = 3600


_LEGACY_JOB_TTLS = {"result_ttl_seconds": "jobs", "failure_ttl_seconds": "failed_jobs"}


def _known_kind(value: str, info: ValidationInfo) -> str:
    kinds = (info.context or {}).get("kinds")
    if kinds is not None and value not in kinds:
        raise ValueError(f"unknown kind {value!r}; known: {', '.join(sorted(kinds))}")
    return value


Kind = Annotated[str, Field(pattern=_KIND), AfterValidator(_known_kind)]
"""A connector kind; checked against the registry's kinds when the loader passes them (`kinds=`)."""


class Endpoint(_Model):
    id: str = Field(pattern=_ID)
    kind: Kind
    secret: Secret
    # The system (same kind) whose API reads the full record behind a thin notification.
    system: str | None = None
    max_body_bytes: int | None = Field(default=None, ge=1024, le=64 * 1_048_576)
    # WooCommerce <= 3.5 signed with the secret as stored, without decoding HTML entities.
    woocommerce_legacy_secret: bool = False


class System(_Model):
    id: str = Field(pattern=_ID)
    kind: Kind
    base_url: str | None = None
    credentials: dict[str, Secret] = {}
    settings: dict[str, Any] = {}


class Notify(_Model):
    """Where and when an integration's problems are sent (docs/notifications.md)."""

    urls: list[NotifyURL] = Field(min_length=1)
    events: list[NotifyEvent] = Field(default=list(NOTIFY_EVENTS), min_length=1)
    # Problems of one kind and reason are collected this long after the first, then sent as one message.
    window_seconds: int = Field(default=300, ge=0, le=24 * 3600)
    # The same problem is sent again at most this often (with what came in meanwhile): no message a minute.
    repeat_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # A poll that has not succeeded for this long is a poller that stopped advancing.
    poller_stalled_seconds: int = Field(default=1800, ge=60)


class Integration(_Model):
    id: str = Field(pattern=_ID)
    source: str
    target: str
    flows: list[Flow] = Field(min_length=1)
    enabled: bool = True
    settings: dict[str, Any] = {}
    # Datamapper overrides per flow and mapping tables (validated by transforms/).
    mappings: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    notify: Notify | None = None


class Config(_Model):
    gateway: GatewaySettings = GatewaySettings()
    retention: RetentionSettings = RetentionSettings()
    endpoints: list[Endpoint] = []
    systems: list[System] = []
    integrations: list[Integration] = []
    _endpoints_by_id: dict[str, Endpoint] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _job_ttls(cls, data: Any) -> Any:
        """`[gateway]`'s result_ttl_seconds / failure_ttl_seconds, older names of `[retention]`'s jobs /
        failed_jobs, still work: they become those (both given: a problem)."""
        return _retention_of(data)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        for section in ("endpoints", "systems", "integrations"):
            seen: set[str] = set()
            for index, item in enumerate(getattr(self, section)):
                if item.id in seen:
                    problems.append(f"{section}[{index}].id: duplicate id {item.id!r}")
                seen.add(item.id)
        endpoint_ids = {e.id for e in self.endpoints}
        system_ids = {s.id for s in self.systems}
        clash = endpoint_ids & system_ids
        for name in sorted(clash):
            problems.append(
                f"systems: id {name!r} is also an endpoint id (ids must be unique across endpoints and systems)"
            )
        kinds = {s.id: s.kind for s in self.systems}
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.system is not None and kinds.get(endpoint.system) != endpoint.kind:
                problems.append(
                    f"endpoints[{index}].system: {endpoint.system!r} is not a {endpoint.kind} system in this config"
                )
        for index, integration in enumerate(self.integrations):
            if integration.source not in endpoint_ids | system_ids:
                problems.append(
                    f"integrations[{index}].source: {integration.source!r} is neither an endpoint nor a system"
                )
            if integration.target not in system_ids:
                problems.append(f"integrations[{index}].target: {integration.target!r} is not a system")
        if problems:
            raise ValueError("; ".join(problems))
        self._endpoints_by_id = {e.id: e for e in self.endpoints}
        return self

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return self._endpoints_by_id.get(endpoint_id)

    def system(self, system_id: str) -> System | None:
        return next((s for s in self.systems if s.id == system_id), None)

    def api_system(self, source: str) -> System | None:
        """The API system behind an integration source: the system itself, or the endpoint's `system`."""
        endpoint = self.endpoint(source)
        if endpoint is None:
            return self.system(source)
        return self.system(endpoint.system) if endpoint.system else None

    def source_kind(self, source: str) -> str | None:
        endpoint = self.endpoint(source)
        if endpoint is not None:
            return endpoint.kind
        system = self.system(source)
        return system.kind if system is not None else None

    def integrations_from(self, source: str) -> list[Integration]:
        """The enabled integrations an event from `source` feeds: those whose source it is, and for an
        endpoint linked to its system (`system = ...`), those whose source is that system; for a system,
        also those whose source is an endpoint linked to it — a system's webhooks and its polls feed the
        same integrations (and a change reached both ways runs once)."""
        endpoint = self.endpoint(source)
        sources = {source, endpoint.system} if endpoint is not None and endpoint.system else {source}
        if endpoint is None:
            sources |= {e.id for e in self.endpoints if e.system == source}
        return [i for i in self.integrations if i.source in sources and i.enabled]

    def linked_endpoints(self, system_id: str) -> list[Endpoint]:
        """The endpoints whose webhooks the system sends (`system = ...` names it)."""
        return [e for e in self.endpoints if e.system == system_id]


def _retention_of(data: Any) -> Any:
    """`data` with `[gateway]`'s old job TTL keys moved to `[retention]` (see `Config._job_ttls`)."""
    if not isinstance(data, Mapping):
        return data
    gateway, retention = data.get("gateway"), data.get("retention", {})
    if not isinstance(gateway, Mapping) or not isinstance(retention, Mapping):
        return data
    moved = {new: gateway[old] for old, new in _LEGACY_JOB_TTLS.items() if old in gateway}
    both = [
        f"gateway.{old}: the old name of retention.{new}, which is given too (keep only retention.{new})"
        for old, new in _LEGACY_JOB_TTLS.items()
        if old in gateway and new in retention
    ]
    if both:
        raise ValueError("; ".join(both))
    if not moved:
        return data
    return {**data, "retention": {**retention, **moved}}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "literal[", "lax-or-strict", "json-or-python")):
            continue  # pydantic's internal validator names add nothing for the user
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _format(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in error.errors(include_input=False, include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        path = _path(err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        if err["type"] == "value_error" and path == "(top level)":
            lines.extend(f"{part}" for part in message.split("; "))
            continue
        lines.append(f"{path}: {message}")
    return lines


def parse_config(
    data: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "config",
    kinds: Collection[str] | None = None,
) -> Config:
    """Validate already-parsed TOML data; raise ConfigError listing every problem. `kinds`: the
    connector kinds to accept (connectors.registry passes them; without, any well-formed kind)."""
    context = {"environ": os.environ if environ is None else environ, "kinds": kinds}
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(_format(exc), source=source) from None


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such file"], source=str(file)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot be read ({exc.__class__.__name__})"], source=str(file)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: not valid TOML: {exc}"], source=str(file)) from None


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, kinds: Collection[str] | None = None
) -> Config:
    """Read and validate a TOML config file."""
    file = Path(path)
    return parse_config(_read_toml(file), environ=environ, source=str(file), kinds=kinds)


_SECTIONS: dict[str, type[_Model]] = {"endpoints": Endpoint, "systems": System, "integrations": Integration}
_ITEM = re.compile(r"\b(endpoints|systems|integrations)\[(\d+)\]")


@dataclass(frozen=True)
class Checked:
    """What `check_config` found: the file's structural problems, and a config of its sound parts
    (None when the file cannot be read) for the checks that go further."""

    config: Config | None
    problems: list[str]
    # Per section, the file's index of each item `config` kept (items with problems are left out).
    indices: dict[str, list[int]]

    def renumber(self, problems: list[str]) -> list[str]:
        """Problems found in `config` with their key paths as in the file."""

        def index(match: re.Match[str]) -> str:
            kept = self.indices.get(match.group(1), [])
            position = int(match.group(2))
            return f"{match.group(1)}[{kept[position] if position < len(kept) else position}]"

        return [_ITEM.sub(index, problem) for problem in problems]


def check_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, kinds: Collection[str] | None = None
) -> Checked:
    """Every problem `load_config` finds, and, when the file parses, a config of the gateway settings and
    items that are sound on their own, so that the connectors' and mappings' checks still run on them:
    `koppel config check` reports all it can in one run."""
    file = Path(path)
    try:
        data = _read_toml(file)
    except ConfigError as exc:
        return Checked(None, exc.problems, {})
    try:
        config = parse_config(data, environ=environ, source=str(file), kinds=kinds)
    except ConfigError as exc:
        problems = exc.problems
    else:
        return Checked(config, [], {section: list(range(len(getattr(config, section)))) for section in _SECTIONS})
    context = {"environ": os.environ if environ is None else environ, "kinds": kinds}
    kept: dict[str, list[Any]] = {}
    indices: dict[str, list[int]] = {}
    for section, model in _SECTIONS.items():
        items = data.get(section)
        kept[section], indices[section] = [], []
        for index, item in enumerate(items if isinstance(items, list) else []):
            try:
                kept[section].append(model.model_validate(item, context=context))
            except ValidationError:
                continue  # reported above
            indices[section].append(index)
    try:
        gateway = GatewaySettings.model_validate(data.get("gateway", {}), context=context)
    except ValidationError:
        gateway = GatewaySettings()
    try:
        retention = RetentionSettings.model_validate(_retention_of(data).get("retention", {}))
    except (ValidationError, ValueError, AttributeError):
        retention = RetentionSettings()
    # Not validated as a whole: its references may be broken (reported above); later checks skip those.
    salvaged = Config.model_construct(
        gateway=gateway, retention=retention, endpoints=kept["endpoints"], systems=kept["systems"],
        integrations=kept["integrations"],
    )  # fmt: skip
    salvaged._endpoints_by_id = {e.id: e for e in salvaged.endpoints}
    return Checked(salvaged, problems, indices)


def config_path(explicit: str | None = None) -> Path | None:
    """The config file to use: --config, else $KOPPEL_CONFIG, else none."""
    value = explicit or os.environ.get("KOPPEL_CONFIG")
    return Path(value) if value else None
