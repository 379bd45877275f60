"""`koppel map`: preview a mapping on a record, diff a user's mapping against the default, reset it.

    koppel map preview --integration ID --flow orders --input order.json [--context ids.json]
    koppel map diff    --integration ID [--flow orders]
    koppel map reset   --integration ID --flow orders [--target exactonline]
    koppel map show    --integration ID --flow orders      (the effective mapping as TOML)

The input record is in the *source* system's shape (a WooCommerce order as its webhook sends it);
the integration's source kind chooses the normaliser. Exit codes: 0 ok, 1 the record has mapping
errors, 2 bad usage or configuration. Map commands never contact a system and need none of the
config's secrets: `env:` references that are not set are filled with a stand-in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gateway import mapview
from gateway.config import FLOWS, Config, Integration, config_path, load_config
from gateway.errors import ConfigError
from gateway.model import NormaliseError
from gateway.payload import dumps
from transforms.configfile import ResetRefused, remove_override
from transforms.errors import MappingError, MappingSpecError
from transforms.integration import build_mapping, effective_mapping
from transforms.spec import render_toml

__all__ = ["register"]

class _Usage(Exception):
    """A sentence for stderr; exit code 2."""


class _StandIn(Mapping[str, str]):
    """The environment, with a stand-in for every secret that is not set (map commands use none)."""

    def __getitem__(self, key: str) -> str:
        return os.environ.get(key) or "00" * 32

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def _config(args: argparse.Namespace) -> tuple[Config, Path]:
    path = config_path(getattr(args, "config", None))
    if path is None:
        raise ConfigError(["no config file: pass --config PATH or set KOPPEL_CONFIG"], source="koppel")
    return load_config(path, environ=_StandIn()), path


def _integration(config: Config, integration_id: str) -> tuple[int, Integration]:
    for index, integration in enumerate(config.integrations):
        if integration.id == integration_id:
            return index, integration
    known = ", ".join(i.id for i in config.integrations) or "none"
    raise _Usage(f"there is no integration {integration_id!r} in the config (integrations: {known})")


def _kinds(config: Config, integration: Integration) -> tuple[str, str]:
    return mapview.kinds(config, integration)


def _flow(integration: Integration, flow: str) -> str:
    if flow not in integration.flows:
        raise _Usage(
            f"integration {integration.id!r} does not run the {flow} flow (flows: {', '.join(integration.flows)})"
        )
    return flow


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _Usage(f"the {what} file {path} cannot be read ({exc.__class__.__name__})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Usage(f"the {what} file {path} is not JSON: {exc}") from None


def _normaliser(source_kind: str, flow: str) -> Callable[..., Any]:
    """The source connector's `normalise` for the flow (no system: map commands contact none)."""
    try:
        return mapview.normaliser(source_kind, flow)
    except mapview.Unpreviewable as exc:
        raise _Usage(str(exc)) from None


def _spec_errors(exc: MappingSpecError, index: int, flow: str, target: str) -> int:
    print("koppel: the mapping does not compile:", file=sys.stderr)
    for path, reason in exc.problems:
        where = f"integrations[{index}].mappings.{flow}.{target}" + (f".{path}" if path else "")
        print(f"  {where}: {reason}", file=sys.stderr)
    return 2


def cmd_preview(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    index, integration = _integration(config, args.integration)
    flow = _flow(integration, args.flow)
    source_kind, target_kind = _kinds(config, integration)
    record_json = _read_json(args.input, "input")
    context = _read_json(args.context, "context") if args.context else None
    if context is not None and not isinstance(context, dict):
        raise _Usage('the context file must hold a JSON object, e.g. {"account": "…", "items": {"SKU": "…"}}')
    normalise = _normaliser(source_kind, flow)
    try:
        mapping = build_mapping(integration, flow, target_kind)
    except MappingSpecError as exc:
        return _spec_errors(exc, index, flow, target_kind)
    try:
        record = normalise(record_json, integration.settings)
        payload = mapping.apply(record, context, placeholders=context is None)
    except NormaliseError as exc:
        print(f"koppel: the input is not a {source_kind} {flow[:-1]} Koppel can read: {exc}", file=sys.stderr)
        return 1
    except MappingError as exc:
        print(f"koppel: {exc.record} cannot be mapped with {mapping.name}:", file=sys.stderr)
        for line in exc.lines():
            print(f"  {line}", file=sys.stderr)
        return 1
    print(dumps(payload, indent=2))
    if context is None and mapping.ids:
        kinds = ", ".join(sorted(mapping.ids))
        print(
            f"(ids the worker resolves at run time are shown as <placeholders>: {kinds}; "
            "pass --context FILE to fill them)",
            file=sys.stderr,
        )
    return 0


def _flows_with_targets(integration: Integration, target_kind: str, flow: str | None) -> list[str]:
    if flow is not None:
        return [_flow(integration, flow)]
    return [f for f in FLOWS if f in integration.flows]


def cmd_diff(args: argparse.Namespace) -> int:
    config, path = _config(args)
    index, integration = _integration(config, args.integration)
    _, target_kind = _kinds(config, integration)
    changed = False
    for flow in _flows_with_targets(integration, target_kind, args.flow):
        tofile = f"{path} integrations[{index}] ({integration.id}) mappings.{flow}.{target_kind}"
        try:
            lines = mapview.diff_lines(integration, flow, target_kind, tofile=tofile)
        except MappingSpecError as exc:
            if not mapview.has_default(exc):
                continue
            return _spec_errors(exc, index, flow, target_kind)
        if lines is None:
            continue
        changed = True
        sys.stdout.writelines(lines)
    if not changed:
        which = f"the {args.flow} flow" if args.flow else "any flow"
        print(f"integration {integration.id!r} uses the default mapping for {which}: no overrides")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    index, integration = _integration(config, args.integration)
    flow = _flow(integration, args.flow)
    _, target_kind = _kinds(config, integration)
    try:
        effective = effective_mapping(integration, flow, target_kind)
    except MappingSpecError as exc:
        return _spec_errors(exc, index, flow, target_kind)
    print(f"# {effective.default.description}; overrides of integration {integration.id!r} applied")
    print(render_toml(effective.spec, f"integrations.mappings.{flow}.{target_kind}"), end="")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    config, path = _config(args)
    _, integration = _integration(config, args.integration)
    flow = args.flow
    if flow not in FLOWS:
        raise _Usage(f"{flow!r} is not a flow (flows: {', '.join(FLOWS)})")
    try:
        removed = remove_override(path, integration.id, flow, args.target)
    except ResetRefused as exc:
        print(f"koppel: cannot reset: {exc}", file=sys.stderr)
        return 2
    if not removed:
        which = f"{flow}.{args.target}" if args.target else flow
        print(f"integration {integration.id!r} has no {which} mapping override in {path}: nothing to reset")
        return 0
    targets = ", ".join(removed)
    print(
        f"removed the {flow} mapping override ({targets}) of integration {integration.id!r} from {path}; "
        "the default mapping applies again"
    )
    return 0


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _Usage as exc:
            print(f"koppel: {exc}", file=sys.stderr)
            return 2
        except ConfigError as exc:
            print(f"koppel: {exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            return 2

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `map` with its subcommands to the `koppel` parser."""
    parser = subparsers.add_parser("map", help="preview, diff, show and reset datamapper mappings")
    sub = parser.add_subparsers(dest="map_command", required=True, metavar="SUBCOMMAND")

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="config TOML file (default: $KOPPEL_CONFIG)")
        p.add_argument("--integration", required=True, metavar="ID", help="the integration's id")
        return p

    preview = common(sub.add_parser("preview", help="map a source record and print the target payload"))
    preview.add_argument("--flow", required=True, choices=FLOWS)
    preview.add_argument(
        "--input", required=True, metavar="FILE", help="the record as the source system sends it (JSON)"
    )
    preview.add_argument(
        "--context",
        metavar="FILE",
        help='target ids resolved at run time, e.g. {"account": "…", "items": {"SKU": "…"}}',
    )
    preview.set_defaults(func=_guard(cmd_preview))

    diff = common(sub.add_parser("diff", help="show the integration's mapping against the default"))
    diff.add_argument("--flow", choices=FLOWS, help="one flow (default: every flow with an override)")
    diff.set_defaults(func=_guard(cmd_diff))

    show = common(sub.add_parser("show", help="print the effective mapping for a flow as TOML"))
    show.add_argument("--flow", required=True, choices=FLOWS)
    show.set_defaults(func=_guard(cmd_show))

    reset = common(sub.add_parser("reset", help="remove the integration's override for a flow from the config file"))
    reset.add_argument("--flow", required=True, choices=FLOWS)
    reset.add_argument("--target", help="only this target's override (default: every target of the flow)")
    reset.set_defaults(func=_guard(cmd_reset))
