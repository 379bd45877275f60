"""The registry of system kinds: every `connectors/<kind>/` package that exposes `CONNECTOR`.

    from connectors import registry
    registry.get("exactonline").target        # the Target class
    registry.kinds()                          # every registered kind, sorted

Built-in connectors are found by walking this package (a new folder with a `CONNECTOR` is a new
kind: no list to edit). `register` adds one at run time (a test's toy connector, a plug-in);
`unregister` takes it away again. Everything in Koppel that needs to know the kinds asks here.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import threading
from collections.abc import Mapping
from typing import Any

from connectors.contract import Connector, Source, Target
from gateway.config import Config, Endpoint, Integration, System

__all__ = ["config_problems", "get", "kinds", "load", "register", "resolve", "unregister"]

_connectors: dict[str, Connector] = {}
_loaded = False
_lock = threading.Lock()


def _discover() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        import connectors

        for module in pkgutil.iter_modules(connectors.__path__):
            if not module.ispkg or module.name.startswith("_"):
                continue
            package = importlib.import_module(f"connectors.{module.name}")
            found = getattr(package, "CONNECTOR", None)
            if isinstance(found, Connector):
                _connectors.setdefault(found.kind, found)
        _loaded = True


def register(connector: Connector, *, replace: bool = False) -> Connector:
    """Add a kind; ValueError when it exists (unless `replace`)."""
    _discover()
    if connector.kind in _connectors and not replace:
        raise ValueError(f"a connector of kind {connector.kind!r} is registered already")
    _connectors[connector.kind] = connector
    return connector


def unregister(kind: str) -> None:
    _connectors.pop(kind, None)


def get(kind: str) -> Connector:
    """The connector of a kind; KeyError naming the known kinds."""
    _discover()
    try:
        return _connectors[kind]
    except KeyError:
        raise KeyError(f"no connector of kind {kind!r}; known: {', '.join(kinds())}") from None


def kinds() -> list[str]:
    _discover()
    return sorted(_connectors)


def connectors() -> Mapping[str, Connector]:
    _discover()
    return dict(_connectors)


def resolve(path: str) -> Any:
    """Import "module:attribute" (how a Connector names its handler and sandbox)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load(path: str | os.PathLike[str], *, strict: bool = False, **kwargs: Any) -> Config:
    """`gateway.config.load_config`, and the kinds checked against the registry: unknown kinds and
    endpoints of a kind that cannot receive webhooks are refused. `strict` adds everything
    `config_problems` finds (each system's settings, the flows each side can give and take): what
    `koppel config check` reports; at run time a system's missing setting fails the work that needs it."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    config = load_config(path, kinds=kinds(), **kwargs)
    problems = config_problems(config) if strict else kind_problems(config)
    if problems:
        raise ConfigError(problems, source=str(path))
    return config


def kind_problems(config: Config) -> list[str]:
    """Endpoints their connector refuses (unknown kinds are refused while loading)."""
    known = kinds()
    problems: list[str] = []
    for index, endpoint in enumerate(config.endpoints):
        problems += _endpoint_problems(config, index, endpoint, known)
    return problems


def config_problems(config: Config) -> list[str]:
    """What the connectors say of a config: unknown kinds, each system's settings through its
    connector's model, endpoints' shapes, and integrations whose flows the source cannot read or
    the target cannot write. One "key.path: message" line per problem."""
    problems: list[str] = []
    known = kinds()
    consent: list[str] = []  # the systems connected by OAuth consent
    for index, endpoint in enumerate(config.endpoints):
        problems += _endpoint_problems(config, index, endpoint, known)
    for index, system in enumerate(config.systems):
        if system.kind not in known:
            problems.append(f"systems[{index}].kind: unknown kind {system.kind!r}; known: {', '.join(known)}")
            continue
        connector = get(system.kind)
        settings, found = connector.settings.validate_system(system)
        problems += [f"systems[{index}] ({system.id}).{p}" for p in found]
        if connector.oauth is not None and settings is not None:
            problems += _consent_problems(index, system, connector, settled=not found)
            consent.append(f"systems[{index}] ({system.id})")
    if consent and config.gateway.admin_token is None:
        problems.append(
            f"gateway.admin_token: required by {', '.join(consent)}: it signs the OAuth consent's state (env:NAME)"
        )
    for index, integration in enumerate(config.integrations):
        source_kind = _kind_of(config, integration.source)
        target = config.system(integration.target)
        if source_kind not in known or target is None or target.kind not in known:
            continue  # reported above (or by the config's own reference check)
        reads, writes = get(source_kind).reads, get(target.kind).writes
        for flow in integration.flows:
            if flow not in reads:
                problems.append(f"integrations[{index}].flows: {source_kind} ({integration.source}) cannot give {flow}")
            if flow not in writes:
                problems.append(f"integrations[{index}].flows: {target.kind} ({target.id}) cannot take {flow}")
        if "orders" in integration.flows and "orders" in writes:
            problems += _order_problems(config, index, integration, get(source_kind).source, get(target.kind).target)
            problems += _booking_problems(index, integration, target, get(target.kind).target)
        target_class = get(target.kind).target
        if "stock" in integration.flows and "stock" in writes and target_class is not None:
            problems += [f"integrations[{index}].target: {p}" for p in target_class.stock_problems(target)]
    return problems


def _consent_problems(index: int, system: System, connector: Connector, *, settled: bool) -> list[str]:
    """A system connected by OAuth consent needs the callback's URL (and the gateway the admin token that
    signs the consent's state): without them `koppel connect` cannot work. `settled`: the system's settings have no
    problem (only then can the flow read its redirect URI)."""
    assert connector.oauth is not None
    from connectors.oauth import callback_path

    problems: list[str] = []
    if settled and not connector.oauth().redirect_uri(system):
        problems.append(
            f"systems[{index}] ({system.id}).settings.redirect_uri: required (the gateway's URL ending in "
            f"{callback_path(system.id)}, as registered for the app at {connector.title})"
        )
    return problems


def _order_problems(
    config: Config, index: int, integration: Integration, source: type[Source] | None, target: type[Target] | None
) -> list[str]:
    """`settings.order_mode` against what the target does; `settings.order_documents` against what the
    source tells of, and against what the integrations booking the target's orders into it book."""
    where = f"integrations[{index}].settings"
    problem = target.order_mode_problem(integration.settings.get("order_mode")) if target is not None else None
    problems = [f"{where}.order_mode: {problem}"] if problem else []
    discount_problem = target.discount_lines_problem(integration.settings.get("discount_lines")) if target else None
    problems += [f"{where}.discount_lines: {discount_problem}"] if discount_problem else []
    document = integration.settings.get("document_type")
    if target is not None and isinstance(document, str) and document not in target.documents:
        problems.append(f"{where}.document_type: {target.title or target.kind} books {', '.join(target.documents)}")
    if source is None or not source.order_documents or target is None or "status" not in target.order_modes:
        return problems
    chosen = integration.settings.get("order_documents")
    known = list(source.order_documents)
    if chosen is not None and (not isinstance(chosen, list) or not set(chosen) <= set(known)):
        return [*problems, f"{where}.order_documents: a list of {', '.join(known)}"]
    polled = set(source.streams_for("orders", integration.settings))
    for other in config.integrations:
        booking = config.system(other.target)
        if other.target != integration.source or "orders" not in other.flows or booking is None:
            continue
        if _kind_of(config, other.source) != target.kind:
            continue
        document = str(other.settings.get("document_type") or "")
        stream = source.order_documents.get(document)
        if stream is not None and stream not in polled:
            problems.append(
                f"{where}.order_documents: integration {other.id!r} books {document} into {booking.id}; add "
                f"{document!r} so that their status is written back"
            )
    return problems


def _booking_problems(index: int, integration: Integration, system: System, target: type[Target] | None) -> list[str]:
    """What the target system's settings lack for booking orders, when this integration books them."""
    mode = integration.settings.get("order_mode")
    if target is None or target.order_mode_problem(mode) is not None:
        return []  # no target, or a mode reported above
    if target.order_mode_of(integration.settings) not in ("book", "both"):
        return []
    return [f"integrations[{index}].target: {problem}" for problem in target.booking_problems(system)]


def _endpoint_problems(config: Config, index: int, endpoint: Endpoint, known: list[str]) -> list[str]:
    if endpoint.kind not in known:
        return [f"endpoints[{index}].kind: unknown kind {endpoint.kind!r}; known: {', '.join(known)}"]
    connector = get(endpoint.kind)
    problems: list[str] = []
    if connector.handler is None:
        problems.append(f"endpoints[{index}].kind: {endpoint.kind} sends no webhooks Koppel can receive")
    if connector.check_endpoint is not None:
        problems += [f"endpoints[{index}].{p}" for p in connector.check_endpoint(endpoint)]
    return problems


def _kind_of(config: Config, name: str) -> str:
    endpoint = config.endpoint(name)
    if endpoint is not None:
        return endpoint.kind
    system: System | None = config.system(name)
    return system.kind if system is not None else ""
