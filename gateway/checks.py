"""What `koppel config check` checks, as a function: the CLI, the set-up wizard (gateway/wizard.py) and
anything else that writes or shows a config ask here, so that they all agree on what is valid."""

from __future__ import annotations

import os
from collections.abc import Mapping

from connectors import registry
from gateway.config import Config, check_config


def check_file(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> tuple[Config | None, list[str]]:
    """Every problem of the config file in one run: its structure and references, then, on the parts that
    are sound, the connectors' checks (settings, flows, order settings) and the mappings'. `environ`: where
    `env:NAME` references are read (default the process's environment). The config is None when the file
    cannot be read or parsed."""
    config, structure, further = check_parts(path, environ=environ)
    return config, structure + further


def check_parts(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> tuple[Config | None, list[str], list[str]]:
    """`check_file`'s findings in two parts: the file's structure and references (a config with such problems
    is only its sound parts, never one to run), and what the connectors' and mappings' checks found on a
    config that loads (gateway/live.py: a live reload refuses the first always, the second when it is new)."""
    from transforms import validate_integration

    checked = check_config(path, environ=environ, kinds=registry.kinds())
    config, structure, further = checked.config, list(checked.problems), []
    if config is not None:
        found = registry.config_problems(config)
        for index, integration in enumerate(config.integrations):
            target = config.system(integration.target)
            found.extend(validate_integration(integration, index, target_kind=target.kind if target else None))
        further += checked.renumber(found)
        if any(i.notify is not None for i in config.integrations):
            from workers.notifier import url_problems

            further += checked.renumber(url_problems(config))
    return config, structure, further


__all__ = ["check_file", "check_parts"]
