"""The set-up wizard's steps, without terminal I/O: `koppel init` (gateway/initcli.py) asks them at a prompt,
and a web page can offer the same steps as a form.

    answers: Answers = {}
    while (step := next_step(answers)) is not None:
        answers[step.key] = step.parse(raw_text_from_the_user, answers)   # Invalid(reason): ask again
    text = render(answers)                                                  # the commented TOML file

The steps ask which pair (one of `PAIR_SPECS`, the pairs Koppel is sold for, as `koppel demo --pair` runs
them), the flows in each direction, the gateway's public URL and admin token, and each system's basics:
base URLs, ids, and its credentials as environment variable NAMES (the file says `env:NAME`; the secrets
stay in the environment). Which steps apply depends on the answers before them (`Step.applies`).

A pair's integrations are its demo's (gateway/pairs.py `PAIRS`: ids, sources and targets, flows, settings,
tables but those of the user's own codes), with a note each and the few flows the wizard offers beyond the
demo (`EXTRA_FLOWS`). A system whose webhooks feed Koppel (the demo's integration is fed by an endpoint:
WooCommerce, Business Central, Squarespace) is an `[[endpoints]]` entry that `koppel endpoints sync` makes
the webhooks for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import tomlkit
from tomlkit.items import Table

from connectors import registry
from connectors.oauth import callback_path
from gateway.config import FLOWS
from gateway.pairs import PAIRS, Pair

Answers = dict[str, Any]
"""Step key → parsed answer (str, int, list of str or int, or None for an optional step left blank)."""


class Invalid(ValueError):
    """An answer a step refuses; the message says why and what it takes."""


# -- the pairs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """An integration of a pair: its flows from one system to the other (the demo's, `_spec`)."""

    id: str
    source: str
    target: str
    flows: tuple[str, ...]
    webhooks: bool = False
    """The source's webhooks feed it (through the source's endpoint), else the source is polled."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class PairSpec:
    name: str
    title: str
    systems: tuple[str, str]
    """The two system ids; flows "there" go from the first to the second, flows "back" the other way."""
    links: tuple[Link, ...]

    def flows(self, source: str, target: str) -> list[str]:
        """The flows this pair carries from `source` to `target`, in Koppel's order of flows."""
        found = {flow for link in self.links if (link.source, link.target) == (source, target) for flow in link.flows}
        return [flow for flow in FLOWS if flow in found]


NOTES = {
    "shop-to-exact": "the shop's orders booked in Exact; its products and customers as items and accounts",
    "exact-to-shop": "the status of the shop's orders (delivered in Exact) and Exact's stock back to the shop",
    "winstore-to-exact": "Winstore's articles as Exact items; its own orders booked in Exact",
    "exact-to-winstore": "Exact's orders booked in Winstore, the status of Winstore's orders written back, and stock",
    "winstore-to-bc": "Winstore's articles as BC items; its own orders booked in BC",
    "winstore-customers-to-bc": "customers apart: Winstore's customer ids and article keys are both numbers",
    "bc-to-winstore": "BC's orders booked in Winstore; an order of Winstore's released in BC completes it there",
    "bc-stock-to-winstore": "BC's inventory, polled",
    "exact-to-asperion-products": "Exact's items as Asperion articles",
    "exact-to-asperion-orders": "Exact's orders in Asperion",
    "asperion-to-exact-orders": "Asperion's orders in Exact",
    "sq-to-exact": "Squarespace's orders booked in Exact (notifications, and a poll for missed ones)",
    "exact-to-sq": "orders delivered in Exact fulfilled in Squarespace, and Exact's stock",
}  # fmt: skip
"""What each integration of the pairs (gateway/pairs.py) does, as the file's comment says it."""

EXTRA_FLOWS = {"exact-to-sq": ("stock",)}
"""Flows the wizard offers beyond the demo's integrations (the demo leaves them out to stay short)."""

OWN_CODES = frozenset({"vat_codes", "tax_areas", "payment_terms"})
"""Mapping tables of codes each administration sets up itself (the demo's are its sandboxes'): the file
leaves them to the user (its closing comment says where)."""


def _spec(pair: Pair) -> PairSpec:
    """A pair of the demo as the wizard sets it up: its systems in the order of the pair's name (flows
    "there" from the first); an integration the demo feeds through an endpoint is fed by its system's webhooks."""
    kinds = pair.name.split("-")
    ids = {system.kind: system.id for system in pair.systems}
    endpoints = {endpoint.id: endpoint.system for endpoint in pair.endpoints}
    links = tuple(
        Link(i.id, endpoints.get(i.source, i.source), i.target, i.flows + EXTRA_FLOWS.get(i.id, ()),
             webhooks=i.source in endpoints, settings=i.settings, note=NOTES.get(i.id, ""),
             tables={name: table for name, table in i.tables.items() if name not in OWN_CODES})
        for i in pair.integrations
    )  # fmt: skip
    title = " ⇄ ".join(registry.get(kind).title for kind in kinds)
    return PairSpec(pair.name, title, (ids[kinds[0]], ids[kinds[1]]), links)


SYSTEM_KINDS = {system.id: system.kind for pair in PAIRS.values() for system in pair.systems}
"""The id the wizard gives each kind's system (the demo's: a pair has one system of each of its two kinds)."""

PAIR_SPECS: dict[str, PairSpec] = {name: _spec(pair) for name, pair in PAIRS.items()}
"""Every pair `koppel init` sets up, by the name `koppel demo --pair` knows it by (gateway/pairs.py's `PAIRS`)."""


def endpoint_id(system: str) -> str:
    return f"{system}-hooks"


def title(system: str) -> str:
    return registry.get(SYSTEM_KINDS[system]).title


def is_oauth(system: str) -> bool:
    return registry.get(SYSTEM_KINDS[system]).oauth is not None


# -- what the answers decide ----------------------------------------------------------------------------


def pair_of(answers: Answers) -> PairSpec | None:
    name = answers.get("pair")
    return PAIR_SPECS.get(name) if isinstance(name, str) else None


def direction_flows(answers: Answers, source: str, target: str) -> list[str]:
    """The flows chosen from `source` to `target` (none yet: none)."""
    pair = pair_of(answers)
    if pair is None:
        return []
    key = "flows" if (source, target) == pair.systems else "flows_back"
    chosen = answers.get(key)
    return list(chosen) if isinstance(chosen, list) else []


def integrations(answers: Answers) -> list[tuple[Link, list[str]]]:
    """The pair's integrations that carry a chosen flow, each with the chosen flows it carries."""
    pair = pair_of(answers)
    if pair is None:
        return []
    found = []
    for link in pair.links:
        chosen = direction_flows(answers, link.source, link.target)
        flows = [flow for flow in link.flows if flow in chosen]
        if flows:
            found.append((link, flows))
    return found


def webhook_sources(answers: Answers) -> list[str]:
    """The systems whose webhooks feed a chosen integration: each is an endpoint."""
    found: list[str] = []
    for link, _ in integrations(answers):
        if link.webhooks and link.source not in found:
            found.append(link.source)
    return found


def oauth_systems(answers: Answers) -> list[str]:
    """The pair's systems connected by OAuth consent (`koppel connect <system>`)."""
    pair = pair_of(answers)
    return [system for system in pair.systems if is_oauth(system)] if pair else []


def env_names(answers: Answers) -> dict[str, str]:
    """Every environment variable the file names → what its value is (for the user to set)."""
    return {str(answers[step.key]): step.question for step in applicable(answers)
            if step.kind == "env" and answers.get(step.key)}  # fmt: skip


# -- the steps ------------------------------------------------------------------------------------------

StepKind = Literal["choice", "flows", "text", "url", "int", "ints", "env"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEXT_MAX = 200


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


def _always(answers: Answers) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One question: its answer's key, how it is put, what it takes and its default (as the user would type
    it; None: an answer is needed, unless `optional`)."""

    key: str
    question: str
    kind: StepKind
    help: str = ""
    default: str | Callable[[Answers], str | None] | None = None
    optional: bool = False
    """Left blank without a default: None (the setting is left out)."""
    choices: Callable[[Answers], list[Choice]] | None = None
    applies: Callable[[Answers], bool] = _always

    def default_text(self, answers: Answers) -> str | None:
        return self.default(answers) if callable(self.default) else self.default

    def options(self, answers: Answers) -> list[Choice]:
        return self.choices(answers) if self.choices is not None else []

    def parse(self, raw: str, answers: Answers) -> Any:
        """The answer of this text (blank: the default); Invalid naming what was wrong and what it takes."""
        text = raw.strip()
        if not text:
            default = self.default_text(answers)
            if default is None:
                if self.optional:
                    return None
                raise Invalid("an answer is needed (there is no default)")
            text = default
        return _PARSERS[self.kind](self, text, answers)


def _choice(step: Step, text: str, answers: Answers) -> str:
    options = step.options(answers)
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1].value
    if text in {option.value for option in options}:
        return text
    raise Invalid(f"{text!r} is not one of the choices: {', '.join(o.value for o in options)} (or its number)")


def _flows(step: Step, text: str, answers: Answers) -> list[str]:
    offered = [option.value for option in step.options(answers)]
    words = [word for word in re.split(r"[\s,]+", text.lower()) if word]
    if words in (["none"], ["-"]):
        chosen: list[str] = []
    else:
        unknown = [word for word in words if word not in offered]
        if unknown:
            raise Invalid(f"{', '.join(unknown)}: not a flow of this direction; it carries {', '.join(offered)} "
                          "(or none)")  # fmt: skip
        chosen = [flow for flow in offered if flow in words]
    if step.key == "flows_back" and not chosen and not answers.get("flows"):
        raise Invalid("choose at least one flow in one of the two directions")
    return chosen


def _text(step: Step, text: str, answers: Answers) -> str:
    if len(text) > _TEXT_MAX or any(ch < " " for ch in text):
        raise Invalid(f"one line of at most {_TEXT_MAX} characters")
    return text


def _url(step: Step, text: str, answers: Answers) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{text!r} is not an absolute http(s) URL, e.g. https://example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise Invalid("a URL without credentials, query or fragment")
    return text.rstrip("/")


def _int(step: Step, text: str, answers: Answers) -> int:
    if not text.isdigit() or len(text) > 12:
        raise Invalid(f"{text!r} is not a whole number (0 or more)")
    return int(text)


def _ints(step: Step, text: str, answers: Answers) -> list[int]:
    words = [word for word in re.split(r"[\s,]+", text) if word]
    if not words or not all(word.isdigit() and len(word) <= 12 for word in words):
        raise Invalid(f"{text!r} is not a list of whole numbers, e.g. 1, 2")
    return list(dict.fromkeys(int(word) for word in words))


def _env(step: Step, text: str, answers: Answers) -> str:
    name = text.removeprefix("env:")
    if not _ENV_NAME.match(name):
        # never echoed: it may be the secret itself
        raise Invalid("the NAME of an environment variable (letters, digits and _, not starting with a digit), "
                      "not the secret itself: the file says env:NAME and the value stays in the environment")
    return name


_PARSERS: dict[str, Callable[[Step, str, Answers], Any]] = {
    "choice": _choice, "flows": _flows, "text": _text, "url": _url, "int": _int, "ints": _ints, "env": _env,
}  # fmt: skip


def _uses(system: str) -> Callable[[Answers], bool]:
    def applies(answers: Answers) -> bool:
        pair = pair_of(answers)
        return pair is not None and system in pair.systems

    return applies


def _hooks(system: str) -> Callable[[Answers], bool]:
    return lambda answers: system in webhook_sources(answers)


def _pair_choices(answers: Answers) -> list[Choice]:
    return [Choice(spec.name, spec.title) for spec in PAIR_SPECS.values()]


def _flow_choices(back: bool) -> Callable[[Answers], list[Choice]]:
    def choices(answers: Answers) -> list[Choice]:
        pair = pair_of(answers)
        if pair is None:
            return []
        source, target = reversed(pair.systems) if back else pair.systems
        return [Choice(flow, flow) for flow in pair.flows(source, target)]

    return choices


def _flows_question(back: bool) -> Callable[[Answers], str]:
    def question(answers: Answers) -> str:
        pair = pair_of(answers)
        if pair is None:
            return "flows"
        source, target = reversed(pair.systems) if back else pair.systems
        return f"flows {title(source)} → {title(target)}"

    return question


def _all_flows(back: bool) -> Callable[[Answers], str | None]:
    def default(answers: Answers) -> str | None:
        offered = [choice.value for choice in _flow_choices(back)(answers)]
        return ", ".join(offered) if offered else "none"

    return default


def _stock_warehouse_needed(answers: Answers) -> bool:
    warehouses = answers.get("winstore.warehouses")
    several = not isinstance(warehouses, list) or len(warehouses) != 1
    return _uses("winstore")(answers) and several and any(
        "stock" in flows and link.target == "winstore" for link, flows in integrations(answers)
    )


def _first_warehouse(answers: Answers) -> str | None:
    warehouses = answers.get("winstore.warehouses")
    return str(warehouses[0]) if isinstance(warehouses, list) and warehouses else None


def _secret(system: str, name: str, default: str, what: str) -> Step:
    return Step(f"{system}.{name}", what, "env", help="the environment variable's NAME; its value is the secret",
                default=default, applies=_uses(system))  # fmt: skip


STEPS: tuple[Step, ...] = (
    Step("pair", "which two systems", "choice", help="the pair Koppel connects", choices=_pair_choices,
         default="woocommerce-exactonline"),
    Step("flows", "flows there", "flows", help="comma-separated; none for no flow this way",
         choices=_flow_choices(back=False), default=_all_flows(back=False)),
    Step("flows_back", "flows back", "flows", help="comma-separated; none for no flow this way",
         choices=_flow_choices(back=True), default=_all_flows(back=True)),
    Step("gateway.public_url", "the gateway's public URL", "url",
         help="where the systems reach this gateway (webhooks, OAuth callbacks); behind a proxy, the proxy's",
         default="http://127.0.0.1:8000"),
    Step("gateway.admin_token", "the gateway's admin token", "env",
         help="the environment variable's NAME; its value protects /ops/rq/ and signs OAuth consent",
         default="KOPPEL_ADMIN_TOKEN"),
    # WooCommerce
    Step("shop.base_url", "WooCommerce: the shop's URL", "url", help="the WordPress site, e.g. https://shop.example",
         applies=_uses("shop")),
    _secret("shop", "consumer_key", "WC_CONSUMER_KEY", "WooCommerce: REST API consumer key"),
    _secret("shop", "consumer_secret", "WC_CONSUMER_SECRET", "WooCommerce: REST API consumer secret"),
    Step("shop.webhook_secret", "WooCommerce: webhook secret", "env",
         help="the environment variable's NAME; its value signs the shop's webhooks (e.g. openssl rand -hex 32)",
         default="WC_WEBHOOK_SECRET", applies=_hooks("shop")),
    # Exact Online
    Step("exact.base_url", "Exact Online: API URL", "url", help="your country's Exact, e.g. https://start.exactonline.be",
         default="https://start.exactonline.nl", applies=_uses("exact")),
    Step("exact.client_id", "Exact Online: the app's client id", "text",
         help="the app registered at apps.exactonline.com (its redirect URI: the gateway's /oauth/exact/callback)",
         applies=_uses("exact")),
    _secret("exact", "client_secret", "EXACT_CLIENT_SECRET", "Exact Online: the app's client secret"),
    Step("exact.division", "Exact Online: division", "int",
         help="the division's number; blank: the one the consenting user last used", optional=True,
         applies=_uses("exact")),
    # Business Central
    Step("bc.tenant", "Business Central: tenant", "text", help="the Entra ID tenant: its id or a domain of it",
         applies=_uses("bc")),
    Step("bc.client_id", "Business Central: the app registration's client id", "text",
         help="registered in BC's Microsoft Entra Applications page", applies=_uses("bc")),
    _secret("bc", "client_secret", "BC_CLIENT_SECRET", "Business Central: the app registration's secret value"),
    Step("bc.environment", "Business Central: environment", "text", default="production", applies=_uses("bc")),
    Step("bc.company", "Business Central: company", "text", help="the company's name as BC lists it, or its id",
         applies=_uses("bc")),
    Step("bc.webhook_secret", "Business Central: the subscriptions' clientState", "env",
         help="the environment variable's NAME; its value (at most 2048 characters) vouches for BC's notifications",
         default="BC_HOOK_SECRET", applies=_hooks("bc")),
    # Winstore
    Step("winstore.base_url", "Winstore: web service URL", "url", help="the web service's root (https)",
         default="https://winstore-c.aca.nl/iposws/api/osd", applies=_uses("winstore")),
    _secret("winstore", "username", "WINSTORE_USER", "Winstore: web service user name"),
    _secret("winstore", "password", "WINSTORE_PASSWORD", "Winstore: web service password"),
    Step("winstore.branch", "Winstore: branch", "int", help="the branch number orders are booked on", default="1",
         applies=_uses("winstore")),
    Step("winstore.channel", "Winstore: sales channel of Koppel's orders", "text",
         help="a channel no one else uses: Koppel knows its own orders by it", default="koppel",
         applies=_uses("winstore")),
    Step("winstore.warehouses", "Winstore: warehouses whose stock counts", "ints", help="comma-separated numbers",
         default="1", applies=_uses("winstore")),
    Step("winstore.stock_warehouse", "Winstore: the warehouse Koppel sets stock in", "int",
         help="needed when several warehouses count", default=_first_warehouse, applies=_stock_warehouse_needed),
    # Asperion
    Step("asperion.base_url", "Asperion: API URL", "url", help="sandbox: https://api-sandbox.asperion.nl",
         default="https://api.asperion.nl", applies=_uses("asperion")),
    Step("asperion.identity_url", "Asperion: identity server", "url",
         help="sandbox: https://identity-sandbox.asperion.nl", default="https://identity.asperion.nl",
         applies=_uses("asperion")),
    Step("asperion.client_id", "Asperion: client id", "text", help="issued by Asperion's API support",
         applies=_uses("asperion")),
    _secret("asperion", "client_secret", "ASPERION_CLIENT_SECRET", "Asperion: client secret"),
    Step("asperion.tenant_id", "Asperion: administration (tenant) id", "text",
         help="the administration every call is for", applies=_uses("asperion")),
    # Squarespace
    _secret("sq", "api_key", "SQUARESPACE_API_KEY", "Squarespace: API key or OAuth access token"),
    Step("sq.webhook_secret", "Squarespace: webhook secret", "env",
         help="the environment variable's NAME; its value: hex (Koppel stores the secrets of the subscriptions "
         "it makes; any hex value then, e.g. openssl rand -hex 32)", default="SQ_HOOK_SECRET", applies=_hooks("sq")),
)  # fmt: skip
"""Every step of every pair, in the order they are asked; `applies` picks a pair's."""

_QUESTIONS: dict[str, Callable[[Answers], str]] = {"flows": _flows_question(False), "flows_back": _flows_question(True)}


def question(step: Step, answers: Answers) -> str:
    """The step's question as it reads with these answers (the flows name their direction)."""
    found = _QUESTIONS.get(step.key)
    return found(answers) if found is not None else step.question


def step_named(key: str) -> Step:
    """The step of this key; KeyError naming the keys."""
    for step in STEPS:
        if step.key == key:
            return step
    raise KeyError(f"no step {key!r}; the steps are {', '.join(s.key for s in STEPS)}")


def applicable(answers: Answers) -> list[Step]:
    """The steps that apply with these answers, up to the first that is not answered yet (which may decide
    whether later ones apply)."""
    found = []
    for step in _in_order(answers):
        if step.applies(answers):
            found.append(step)
            if step.key not in answers:
                break
    return found


def _in_order(answers: Answers) -> list[Step]:
    """The steps in the order they are asked: the pair's, the gateway's, then each system's in the pair's order."""
    pair = pair_of(answers)
    if pair is None:
        return list(STEPS)
    rank = {system: number for number, system in enumerate(pair.systems, 1)}
    return sorted(STEPS, key=lambda step: rank.get(step.key.partition(".")[0], 0))


def next_step(answers: Answers) -> Step | None:
    """The first step that applies and is not answered; None when every answer is in."""
    return next((step for step in applicable(answers) if step.key not in answers), None)


def complete(given: Mapping[str, str]) -> tuple[Answers, list[str]]:
    """The answers of these texts (step key → text), each step not given taking its default; and the
    problems, one "key: reason" each: an invalid text, a step without answer or default, a key that is no
    step of the chosen pair. For scripts (`koppel init --yes --set key=value`) and forms sent whole."""
    answers: Answers = {}
    problems: list[str] = []
    while (step := next_step(answers)) is not None:
        try:
            answers[step.key] = step.parse(given.get(step.key, ""), answers)
        except Invalid as exc:
            problems.append(f"{step.key}: {exc}")
            if step.key == "pair":
                return answers, problems
            answers[step.key] = None  # reported; the steps after it are still checked
    asked = [step.key for step in applicable(answers)]
    unknown = [key for key in given if key not in asked]
    if unknown:
        problems.append(f"{', '.join(unknown)}: not asked in this set-up; its steps are {', '.join(asked)}")
    return answers, problems


PLACEHOLDER = "0123456789abcdef" * 4
"""What `check` gives each environment variable the file names (hex: Squarespace's secrets are)."""


def check(text: str, answers: Answers, environ: Mapping[str, str] | None = None) -> list[str]:
    """What `koppel config check` says of this file's text (gateway.checks), with a stand-in value for each
    environment variable it names: the file is checked, not the environment (which the user may set later;
    `koppel init` checks it again, as it is, once the file is written)."""
    import os
    import tempfile
    from pathlib import Path

    from gateway.checks import check_file

    env = dict(os.environ if environ is None else environ)
    env.update(dict.fromkeys(env_names(answers), PLACEHOLDER))
    with tempfile.TemporaryDirectory(prefix="koppel-init-") as folder:
        path = Path(folder) / "koppel.toml"
        path.write_text(text, encoding="utf-8")
        _, problems = check_file(path, environ=env)
    return [problem.replace(str(path), "the file") for problem in problems]


# -- the file -------------------------------------------------------------------------------------------


def _ref(name: object) -> str:
    return f"env:{name}"


def render(answers: Answers) -> str:
    """The config file these answers make: TOML with a comment on what each part is for."""
    pair = pair_of(answers)
    if pair is None or next_step(answers) is not None:
        raise ValueError("render needs every step answered")
    public_url = str(answers["gateway.public_url"])
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Koppel: {pair.title}, as `koppel init` wrote it (pair {pair.name})."))
    doc.add(tomlkit.comment("Check it with `koppel config check`; docs/configuration.md explains every key."))
    doc.add(tomlkit.comment("Secrets are never in this file: env:NAME names the environment variable holding one."))
    doc.add(tomlkit.nl())

    gateway = tomlkit.table()
    gateway.add("public_url", _noted(public_url, "where the systems reach this gateway (webhooks, OAuth callbacks)"))
    gateway.add("admin_token", _noted(_ref(answers["gateway.admin_token"]), "protects /ops/rq/, signs OAuth consent"))
    doc.add("gateway", gateway)

    hooks = webhook_sources(answers)
    if hooks:
        endpoints = tomlkit.aot()
        for system in hooks:
            entry = tomlkit.table()
            url = f"{public_url}/webhooks/{endpoint_id(system)}"
            made = "`koppel endpoints sync` makes them"
            entry.add(tomlkit.comment(f"{title(system)}'s webhooks arrive at {url} ({made})"))
            entry.add("id", endpoint_id(system))
            entry.add("kind", SYSTEM_KINDS[system])
            entry.add("system", system)
            entry.add("secret", _ref(answers[f"{system}.webhook_secret"]))
            endpoints.append(entry)
        doc.add("endpoints", endpoints)

    systems = tomlkit.aot()
    for system in pair.systems:
        systems.append(_system(system, answers, public_url))
    doc.add("systems", systems)

    found = tomlkit.aot()
    for link, flows in integrations(answers):
        entry = tomlkit.table()
        entry.add(tomlkit.comment(f"{title(link.source)} → {title(link.target)}: {link.note}"))
        entry.add("id", link.id)
        entry.add("source", endpoint_id(link.source) if link.webhooks else link.source)
        entry.add("target", link.target)
        entry.add("flows", flows)
        if link.settings:
            entry.add("settings", _table(link.settings))
        if link.tables:
            entry.add("tables", _table(link.tables))
        found.append(entry)
    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("Mapping tables (VAT codes, revenue accounts, ...) go under [integrations.tables.<name>]:"))
    doc.add(tomlkit.comment("docs/configuration.md and docs/datamapper.md list what each pair reads."))
    doc.add("integrations", found)
    return tomlkit.dumps(doc)


def _noted(value: Any, note: str) -> Any:
    item = tomlkit.item(value)
    item.comment(note)
    return item


def _table(values: Mapping[str, Any]) -> Table:
    table = tomlkit.table()
    for key, value in values.items():
        table.add(key, _table(value) if isinstance(value, Mapping) else value)
    return table


def _system(system: str, answers: Answers, public_url: str) -> Table:
    """A `[[systems]]` entry: its URL, credentials (env:NAME) and settings from the answers."""
    kind = SYSTEM_KINDS[system]

    def given(name: str) -> Any:
        return answers.get(f"{system}.{name}")

    entry = tomlkit.table()
    entry.add(tomlkit.comment(f"{title(system)} ({kind}; docs/configuration.md)"))
    entry.add("id", system)
    entry.add("kind", kind)
    if given("base_url"):
        entry.add("base_url", given("base_url"))
    credentials = tomlkit.table()
    settings = tomlkit.table()
    names = {"woocommerce": ("consumer_key", "consumer_secret"), "winstore": ("username", "password"),
             "squarespace": ("api_key",)}.get(kind, ("client_secret",))  # fmt: skip
    for name in names:
        credentials.add(name, _ref(given(name)))
    if kind in ("exactonline", "asperion", "businesscentral"):
        settings.add("client_id", given("client_id"))
    if is_oauth(system):
        settings.add("redirect_uri", _noted(public_url + callback_path(system), "register this URL with the app"))
    for name in {"exactonline": ("division",), "businesscentral": ("tenant", "environment", "company"),
                 "winstore": ("branch", "channel", "warehouses", "stock_warehouse"),
                 "asperion": ("tenant_id", "identity_url")}.get(kind, ()):  # fmt: skip
        if given(name) is not None:
            settings.add(name, given(name))
    entry.add("credentials", credentials)
    if settings:
        entry.add("settings", settings)
    return entry


__all__ = ["EXTRA_FLOWS", "NOTES", "OWN_CODES", "PAIR_SPECS", "STEPS", "SYSTEM_KINDS", "Answers", "Choice", "Invalid",
           "Link", "PairSpec", "Step", "applicable", "check", "complete", "direction_flows", "endpoint_id", "env_names",
           "integrations", "is_oauth", "next_step", "oauth_systems", "question", "render", "step_named", "title",
           "webhook_sources"]  # fmt: skip
