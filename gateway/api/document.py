"""The config file as the admin API edits it: items of `[[endpoints]]`, `[[systems]]` and `[[integrations]]`
read, created, replaced and deleted in a tomlkit document, so that the file's comments and layout stay as they
were; its ETag; the atomic write of a checked result.

Secrets stay references: `SECRET_KEYS` names where an item holds one. A request's literal there is refused
(`literal_secrets`), and an item read from the file shows a literal (written there by hand) as `HIDDEN`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, Comment, InlineTable, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

Section = Literal["endpoints", "systems", "integrations"]
SECTIONS: tuple[Section, ...] = ("endpoints", "systems", "integrations")

ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
"""A secret as the config file takes it (gateway/config.py reads the variable)."""
HIDDEN = "(hidden: a literal value in the config file; write env:NAME there)"
"""What a response shows instead of a secret written in the file as a literal."""

SECRET_KEYS: dict[Section, tuple[str, ...]] = {
    "endpoints": ("secret",),
    "systems": ("credentials.*",),
    "integrations": ("notify.urls[*]",),
}
"""Where an item of each section holds a secret: a key, every value of a table (`.*`), every element (`[*]`)."""


class DocumentError(Exception):
    """A request the document cannot take: `status` and `reason` as the API answers it."""

    def __init__(self, status: int, reason: str, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.problems = status, reason, message, problems or []


def etag_of(data: bytes) -> str:
    """The file's ETag: a strong validator, the SHA-256 of its bytes."""
    return f'"{hashlib.sha256(data).hexdigest()}"'


def matches(if_match: str, etag: str) -> bool:
    """Whether an If-Match header names `etag` (strong comparison; `*` matches any existing file)."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or etag in tags


def plain(value: Any) -> Any:
    """A tomlkit value as JSON takes it: dicts, lists, strings, numbers, booleans; dates as ISO 8601."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    unwrap = getattr(value, "unwrap", None)
    return plain(unwrap()) if callable(unwrap) else value


def _secret_paths(section: Section, item: Mapping[str, Any]) -> Iterator[tuple[str, Any, Callable[[Any], None]]]:
    """Each secret the item holds: its key path in the item, its value, and how to set it (in a mutable item)."""

    def setter(container: Any, key: str | int) -> Callable[[Any], None]:
        return lambda value: container.__setitem__(key, value)

    for pattern in SECRET_KEYS[section]:
        head, _, rest = pattern.partition(".")
        key = head.removesuffix("[*]")
        if key not in item:
            continue
        if pattern == key:
            yield key, item[key], setter(item, key)
            continue
        inner = item[key]
        if rest == "*" and isinstance(inner, Mapping):
            for name in list(inner):
                yield f"{key}.{name}", inner[name], setter(inner, name)
        elif rest.endswith("[*]") and isinstance(inner, Mapping):
            name = rest.removesuffix("[*]")
            values = inner.get(name)
            if isinstance(values, list):
                for index, value in enumerate(values):
                    yield f"{key}.{name}[{index}]", value, setter(values, index)


def literal_secrets(section: Section, item: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The key paths of the item where a secret is given as a value, not as `env:NAME` (never the value)."""
    return [
        f"{prefix}{path}: a secret is given as a value; give env:NAME (the environment variable holding it) — "
        "the admin API never takes a secret's value"
        for path, value, _ in _secret_paths(section, item)
        if not (isinstance(value, str) and ENV_REF.match(value))
    ]


def document_literal_secrets(data: Mapping[str, Any]) -> list[str]:
    """`literal_secrets` over a whole config document, with key paths as `koppel config check` names them."""
    problems: list[str] = []
    gateway = data.get("gateway")
    if isinstance(gateway, Mapping) and "admin_token" in gateway:
        token = gateway["admin_token"]
        if not (isinstance(token, str) and ENV_REF.match(token)):
            problems.append("gateway.admin_token: a secret is given as a value; give env:NAME")
    for section in SECTIONS:
        items = data.get(section)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, Mapping):
                problems += literal_secrets(section, item, prefix=f"{section}[{index}].")
    return problems


def redacted(section: Section, item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of the item with every secret that is not an `env:NAME` reference replaced by `HIDDEN`."""
    copy: dict[str, Any] = _finite(plain(item))
    for _, value, assign in _secret_paths(section, copy):
        if not (isinstance(value, str) and ENV_REF.match(value)):
            assign(HIDDEN)
    return copy


def _finite(value: Any) -> Any:
    """`value` with TOML's inf and nan (which JSON has not) as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def nulls(value: Any, path: str = "") -> list[str]:
    """Key paths of JSON nulls in a value (TOML has no null: a key is left out instead)."""
    if value is None:
        return [f"{path or '(body)'}: null is not a TOML value; leave the key out"]
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in nulls(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in nulls(item, f"{path}[{index}]")]
    return []


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merged key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# -- the tomlkit document -----------------------------------------------------------------------------------


def parse(text: str) -> TOMLDocument:
    return tomlkit.parse(text)


def items(doc: TOMLDocument, section: Section) -> list[Any]:
    """The section's items as the document holds them ([] when it has none)."""
    found = doc.get(section)
    return list(found) if isinstance(found, list | AoT) else []


def index_of(doc: TOMLDocument, section: Section, item_id: str) -> int | None:
    return next((i for i, item in enumerate(items(doc, section)) if isinstance(item, Mapping)
                 and item.get("id") == item_id), None)  # fmt: skip


def _value(value: Any, *, inline: bool) -> Any:
    """A plain value as tomlkit should write it: inside an inline table, tables stay inline."""
    if isinstance(value, Mapping):
        if not inline:
            return {key: _value(item, inline=False) for key, item in value.items()}
        table = tomlkit.inline_table()
        table.update({key: _value(item, inline=True) for key, item in value.items()})
        return table
    if isinstance(value, list):
        if inline or not all(isinstance(item, Mapping) for item in value) or not value:
            array = tomlkit.array()
            array.extend(_value(item, inline=True) for item in value)
            return array
        return [_value(item, inline=False) for item in value]
    return value


def sync(container: MutableMapping[str, Any], new: Mapping[str, Any]) -> None:
    """Make a table hold `new`, touching only what differs: unchanged keys keep their comments and format,
    nested tables are synced key by key."""
    inline = isinstance(container, InlineTable)
    for key in [key for key in container if key not in new]:
        del container[key]
    for key, value in new.items():
        if key in container:
            old = container[key]
            if isinstance(value, Mapping) and isinstance(old, Table | InlineTable):
                sync(old, value)
                continue
            if plain(old) == value and type(plain(old)) is type(value):
                continue
        container[key] = _value(value, inline=inline)


def _trailing_trivia(table: Table) -> list[Any]:
    """Pop the comments and blank lines at the end of a table (of its last sub-table): in the file they come
    before the next section, so a table appended after it takes them along."""
    body: Container = table.value
    if body.body and isinstance(body.body[-1][1], Table) and not body.body[-1][1].is_super_table():
        return _trailing_trivia(body.body[-1][1])
    popped: list[Any] = []
    while body.body and body.body[-1][0] is None and isinstance(body.body[-1][1], Whitespace | Comment):
        popped.append(body.body.pop()[1])
    popped.reverse()
    return popped


def create(doc: TOMLDocument, section: Section, item: Mapping[str, Any]) -> None:
    """Append the item to the section (an array of tables, or an inline array as the file writes it)."""
    found = doc.get(section)
    if found is not None and not isinstance(found, AoT | Array):
        raise DocumentError(409, "config_unreadable", f"the config file's {section} is not a list of tables "
                            f"([[{section}]]): fix it by hand, then retry")  # fmt: skip
    if isinstance(found, Array):
        found.append(_value(item, inline=True))
        return
    table = tomlkit.table()
    sync(table, item)
    if isinstance(found, AoT) and len(found):
        last = found[-1]
        trivia = _trailing_trivia(last)
        last.value.body.append((None, Whitespace("\n")))
        found.append(table)
        for piece in trivia:
            table.value.body.append((None, piece))
        return
    if found is None:
        doc.add(tomlkit.nl())
        doc.append(section, tomlkit.aot())
    doc[section].append(table)


def replace(doc: TOMLDocument, section: Section, index: int, item: Mapping[str, Any]) -> None:
    sync(items(doc, section)[index], item)


def delete(doc: TOMLDocument, section: Section, index: int) -> None:
    """Remove the item; the comments and blank lines that led into the next item stay before it (those that
    led into this one go with it)."""
    found = doc[section]
    assert isinstance(found, AoT | Array)
    if isinstance(found, Array):
        del found[index]
        return
    trivia = _trailing_trivia(found[index])
    if index > 0:
        _trailing_trivia(found[index - 1])
        for piece in trivia:
            found[index - 1].value.body.append((None, piece))
        del found[index]
    else:
        del found[index]
        if len(found):
            text = "".join(piece.as_string() for piece in trivia).lstrip("\n")
            found[0].trivia.indent = text + found[0].trivia.indent
    if not len(found):
        del doc[section]


# -- the file -----------------------------------------------------------------------------------------------

_write_lock = threading.Lock()
"""One change at a time in this process (the ETag check guards against other writers)."""


def read(path: Path) -> tuple[bytes, str]:
    """The file's bytes and ETag."""
    data = path.read_bytes()
    return data, etag_of(data)


def write_checked(path: Path, text: str, expected: str, check: Callable[[Path], list[str]]) -> str:
    """Replace the file with `text` when `check` finds no problem in it and the file's ETag is still
    `expected`; the new ETag. The text is written to a temporary file beside it, fsync'd, checked there, and
    renamed over the file (atomic); on any refusal the file is untouched and the temporary file removed."""
    data = text.encode("utf-8")
    with _write_lock:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".api")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(OSError):
                os.chmod(temporary, path.stat().st_mode & 0o7777)
            problems = check(Path(temporary))
            if problems:
                raise DocumentError(422, "invalid_config", f"the change would make the config invalid "
                                    f"({len(problems)} problem(s)); the file is unchanged", problems)  # fmt: skip
            if etag_of(path.read_bytes()) != expected:
                raise DocumentError(409, "changed", "the config file changed while this change was checked; "
                                    "read it again (GET) and retry with its new ETag")  # fmt: skip
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return etag_of(data)


__all__ = [
    "HIDDEN", "SECRET_KEYS", "SECTIONS", "DocumentError", "Section", "create", "delete", "document_literal_secrets",
    "etag_of", "index_of", "items", "literal_secrets", "matches", "merge_patch", "nulls", "parse", "plain", "read",
    "redacted", "replace", "sync", "write_checked",
]  # fmt: skip
