"""Editing the user's config file in place: remove one mapping override, keep everything else.

`tomllib` cannot write, and re-serialising the parsed file would lose the user's comments, order
and layout (the file lives in git, so every unrelated change is noise in a review). tomlkit keeps
them. After the edit the new text is parsed again with `tomllib` and must equal the old document
minus exactly the removed override; otherwise nothing is written and the user is told why.
"""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

__all__ = ["ResetRefused", "remove_override"]


class ResetRefused(Exception):
    """The override cannot be removed safely; the message says why and what to do."""


def _expected(data: dict[str, Any], index: int, flow: str, target: str | None) -> dict[str, Any]:
    expected = copy.deepcopy(data)
    integration = expected["integrations"][index]
    mappings = integration.get("mappings", {})
    if target is None:
        mappings.pop(flow, None)
    else:
        mappings.get(flow, {}).pop(target, None)
        if not mappings.get(flow, True):
            mappings.pop(flow, None)
    if not mappings:
        integration.pop("mappings", None)
    return expected


def remove_override(path: Path, integration_id: str, flow: str, target: str | None = None) -> list[str]:
    """Remove the integration's override for `flow` (or only `flow.target`); return the targets
    removed (empty when there was none). Raises ResetRefused when the file cannot be edited safely."""
    try:
        text = path.read_text(encoding="utf-8")
        before = tomllib.loads(text)
        document = tomlkit.parse(text)
    except OSError as exc:
        raise ResetRefused(f"{path} cannot be read ({exc.__class__.__name__})") from None
    except (tomllib.TOMLDecodeError, TOMLKitError) as exc:
        raise ResetRefused(f"{path} is not valid TOML: {exc}") from None
    integrations = before.get("integrations", [])
    index = next((i for i, item in enumerate(integrations) if item.get("id") == integration_id), None)
    if index is None:
        raise ResetRefused(f"{path} has no [[integrations]] entry with id {integration_id!r}")
    flows = integrations[index].get("mappings", {}).get(flow)
    if not isinstance(flows, dict) or not flows or (target is not None and target not in flows):
        return []
    removed = [target] if target is not None else sorted(flows)
    try:
        # tomlkit's item types differ between its releases; a shape other than the one tomllib read
        # fails here with KeyError or TypeError, and the edit is refused below.
        tables: Any = document["integrations"]
        node = tables[index]
        mappings = node["mappings"]
        if target is None:
            del mappings[flow]
        else:
            del mappings[flow][target]
            if not mappings[flow]:
                del mappings[flow]
        if not mappings:
            del node["mappings"]
        new_text = tomlkit.dumps(document)
    except (KeyError, TypeError, TOMLKitError) as exc:
        raise ResetRefused(
            f"the override is written in a form Koppel cannot edit safely ({exc.__class__.__name__}); "
            f"delete integrations[{index}].mappings.{flow} by hand"
        ) from None
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        after = None
    if after != _expected(before, index, flow, target):
        raise ResetRefused(
            f"editing {path} would change more than the {flow} override; nothing was written. "
            f"Delete integrations[{index}].mappings.{flow} by hand"
        )
    _write_atomically(path, new_text)
    return removed


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file in one rename, keeping its permissions; refuse when it is not writable."""
    real = path.resolve()  # a symlinked config is edited where it lives
    if not os.access(real, os.W_OK) or not os.access(real.parent, os.W_OK):
        raise ResetRefused(f"{path} is not writable; nothing was changed")
    mode = real.stat().st_mode & 0o777
    handle, temp = tempfile.mkstemp(prefix=f".{real.name}.", dir=real.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temp, mode)
        os.replace(temp, real)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
