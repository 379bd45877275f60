"""Mapping previews and diffs, shared by `koppel map` (gateway/mapcli.py) and the web console.

A preview maps a record in the *source* system's shape: the integration's source kind chooses the
normaliser, the integration's effective mapping (default plus overrides) makes the target payload.
A diff compares the effective mapping with the default, line per field path. Neither contacts a system.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from connectors import registry
from gateway.config import Config, Integration
from transforms.errors import MappingSpecError
from transforms.integration import build_mapping, effective_mapping
from transforms.spec import flatten

__all__ = ["Unpreviewable", "diff_lines", "has_default", "kinds", "normaliser", "preview", "remap"]


class Unpreviewable(Exception):
    """A sentence saying why this integration's flow cannot be previewed (no such source kind, or it
    cannot read the flow)."""


def kinds(config: Config, integration: Integration) -> tuple[str, str]:
    """(source kind, target kind) of an integration."""
    endpoint = config.endpoint(integration.source)
    source = endpoint or config.system(integration.source)
    target = config.system(integration.target)
    assert source is not None and target is not None  # the config validator guarantees both
    return source.kind, target.kind


def normaliser(source_kind: str, flow: str) -> Callable[[Any, dict[str, Any]], Any]:
    """The source connector's `normalise` for the flow (no system: previews contact none)."""
    try:
        source = registry.get(source_kind).source
    except KeyError as exc:
        raise Unpreviewable(str(exc).strip('"')) from None
    if source is None or flow not in source.reads():
        raise Unpreviewable(f"Koppel cannot read {flow} from a {source_kind} source")
    reader = source(None, None)
    return lambda record, settings: reader.normalise(flow, record, settings)


def preview(
    config: Config, integration: Integration, flow: str, record: Any, context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The target payload the integration's current mapping makes of `record` (source shape). Ids the
    worker resolves at run time come from `context`, else show as <placeholders>. Raises Unpreviewable,
    MappingSpecError (the mapping does not compile), NormaliseError, MappingError."""
    source_kind, target_kind = kinds(config, integration)
    normalise = normaliser(source_kind, flow)
    mapping = build_mapping(integration, flow, target_kind)
    return mapping.apply(normalise(record, integration.settings), context, placeholders=context is None)


def remap(
    integration: Integration, flow: str, target_kind: str, mapping_input: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The current mapping applied to a mapping input as a flow built it (a payload snapshot's): the same
    input exactly, the flow's own steps included. Ids not in `context` show as <placeholders>."""
    mapping = build_mapping(integration, flow, target_kind)
    return mapping.apply(mapping_input, context, placeholders=True)


def diff_lines(integration: Integration, flow: str, target_kind: str, *, tofile: str) -> list[str] | None:
    """The unified diff (lines) of the effective mapping against the default; None when the integration
    overrides nothing for the flow. Raises MappingSpecError."""
    effective = effective_mapping(integration, flow, target_kind)
    if not effective.override:
        return None
    old = [f"{p} = {v}\n" for p, v in flatten(effective.default.spec)]
    new = [f"{p} = {v}\n" for p, v in flatten(effective.spec)]
    return list(difflib.unified_diff(old, new, fromfile=f"default {effective.name}", tofile=tofile, n=1))


def has_default(exc: MappingSpecError) -> bool:
    """Whether a spec error is something other than "Koppel has no default mapping for this"."""
    return not (exc.problems and exc.problems[0][1].startswith("Koppel has no"))
