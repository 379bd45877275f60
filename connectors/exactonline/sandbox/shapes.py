"""The JSON the Exact sandbox answers with: records as OData v2 entities (`__metadata` with the entity's URI,
`/Date(ms)/` dates, lines `__deferred` or expanded), `Timestamp` optionally as a string."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.exactonline.odata import format_date
from connectors.exactonline.sandbox.entities import SPECS, Record, Spec
from connectors.exactonline.sandbox.store import Store

_URLS = frozenset({"PictureUrl", "PictureThumbnailUrl"})
"""Properties holding a path of the sandbox's own, answered as an absolute URL."""


def visible(spec: Spec) -> list[str]:
    return sorted(spec.fields - spec.write_only)


def value(name: str, raw: Any, *, timestamps_as_strings: bool = False, base: str = "") -> Any:
    if isinstance(raw, datetime):
        return format_date(raw)
    if name in _URLS and isinstance(raw, str) and raw.startswith("/"):
        return f"{base}{raw}"
    if name == "Timestamp" and timestamps_as_strings:
        return str(raw)
    return raw


def render(
    store: Store, base: str, division: int, spec: Spec | None, record: Record, names: list[str], *,
    expand: bool = False, timestamps_as_strings: bool = False,
) -> Record:  # fmt: skip
    """`record` as an entity of `base`'s API with the properties `names` (and its lines when `expand`)."""
    out: Record = {}
    if spec is not None and spec.key in record:
        uri = f"{base}/api/v1/{division}/{spec.path}(guid'{record[spec.key]}')"
        out["__metadata"] = {"uri": uri, "type": spec.type_name}
    for name in names:
        if spec is not None and name == spec.lines:
            if expand:
                line_spec = SPECS[spec.line_path or ""]
                lines = [render(store, base, division, line_spec, line, visible(line_spec),
                                timestamps_as_strings=timestamps_as_strings)
                         for line in store.lines_of(division, spec, record[spec.key])]  # fmt: skip
                out[name] = {"results": lines}
            else:
                out[name] = {
                    "__deferred": {"uri": f"{base}/api/v1/{division}/{spec.path}(guid'{record[spec.key]}')/{name}"}
                }
        else:
            if spec is not None and name in spec.write_only:
                continue
            out[name] = value(name, record.get(name), timestamps_as_strings=timestamps_as_strings, base=base)
    return out
