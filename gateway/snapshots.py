"""Payload snapshots: per handled job and integration, what came in and what was sent where.

The activity log (gateway/activity.py) keeps ids and outcomes only. For the web console an operator
also needs the payloads: the event as received, the record the source read, what the mapping made of
it, and every API request the job made (system, method, path, status, request body, and the start of
the answer). They are kept as one JSON string per job and integration,

    koppel:snapshot:{integration}:{job id}      STRING  JSON, expires after the payload retention

for a limited time only (the payload retention, default 7 days): they hold personal data. The console
masks personal data unless the operator asks to see it (`mask`). A record the source read that is the
event as received (WooCommerce's) is stored once: `"record_as_received": true` in its place, and loading
puts it back.

Capture: the worker opens a `Recorder` per job and integration (`recording`); the HTTP kit
(connectors/http.py) and the flows note into whichever recorder is current in their context (a
ContextVar, so threads and jobs never mix). Nothing is noted when no recorder is open.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from gateway import keys
from gateway.payload import decimal_text, dumps

DEFAULT_TTL = 7 * 24 * 3600
"""The payload retention when none is configured."""
BODY_LIMIT = 64 * 1024
"""A request body longer than this (as JSON text) is kept cut off, marked so."""
ANSWER_LIMIT = 4 * 1024
"""How much of an answer's body is kept."""

__all__ = [
    "DEFAULT_TTL",
    "Recorder",
    "SnapshotStore",
    "current",
    "floats",
    "mask",
    "note_mapped",
    "note_record",
    "note_request",
    "recording",
    "to_json",
]


@dataclass
class Recorder:
    """What one job did for one integration, noted while it runs."""

    integration: str
    job_id: str
    flow: str = ""
    received: Any = None
    record: Any = None
    mapped: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "integration": self.integration,
            "job_id": self.job_id,
            "flow": self.flow,
            "started_at": self.started_at,
            "received": self.received,
            "record": self.record,
            "mapped": self.mapped,
            "requests": self.requests,
        }


_current: ContextVar[Recorder | None] = ContextVar("koppel_snapshot", default=None)


def current() -> Recorder | None:
    return _current.get()


@contextmanager
def recording(integration: str, job_id: str, *, flow: str = "", received: Any = None) -> Iterator[Recorder]:
    """Open a recorder for the code inside (the worker, per job and integration)."""
    recorder = Recorder(integration, job_id, flow, received)
    token = _current.set(recorder)
    try:
        yield recorder
    finally:
        _current.reset(token)


def note_record(record: Any) -> None:
    """The record the source read (in the source's shape): the input of the mapping."""
    recorder = _current.get()
    if recorder is not None:
        recorder.record = record


def note_mapped(flow: str, payload: Any, context: Any = None, mapping_input: Any = None) -> None:
    """What a mapping produced, from which input (the canonical record as the flow gave it to the mapping,
    after the flow's own steps, as mapping data: transforms.inputs) and the run-time ids it was given."""
    recorder = _current.get()
    if recorder is not None:
        entry = {"flow": flow, "payload": payload, "context": context}
        recorder.mapped.append(entry if mapping_input is None else entry | {"input": mapping_input})


def _body(content: bytes | None, limit: int) -> Any:
    if not content:
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(content)} bytes of binary data>"
    if len(text) > limit:
        return text[:limit] + f"… (cut off; {len(text)} characters in all)"
    try:
        return json.loads(text)
    except ValueError:
        return text


def note_request(system: str, method: str, path: str, status: int, body: bytes | None, answer: bytes | None) -> None:
    """One API call (every attempt): never headers (credentials live there), bodies only."""
    recorder = _current.get()
    if recorder is not None:
        recorder.requests.append(
            {
                "system": system,
                "method": method,
                "path": path,
                "status": status,
                "body": _body(body, BODY_LIMIT),
                "answer": _body(answer, ANSWER_LIMIT),
            }
        )


def _numbers(value: Any) -> Any:
    """`value` with floats as Decimals (`payload.dumps` takes exact numbers only) and NaN or infinities as text."""
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else repr(value)
    if isinstance(value, Decimal) and not value.is_finite():
        return str(value)
    if isinstance(value, dict):
        return {str(k): _numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    return value


def floats(value: Any) -> Any:
    """`value` as read with `json.loads` alone: Decimals as floats (for a source record or a mapping input,
    which held floats; a loaded snapshot has Decimals so that payloads keep their digits)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [floats(v) for v in value]
    return value


def to_json(value: Any, *, indent: int | None = None) -> str:
    """JSON text of a snapshot's part: Decimals and floats with the digits they have; anything else as text."""
    if indent is None:
        try:
            return _compact(value)
        except _Unmarkable:
            pass
    return dumps(_numbers(value), indent=indent, default=str)


_MARK = "\x00koppel-number:"
_MARKED = re.compile(r'"\\u0000koppel-number:(-?[0-9]+(?:\.[0-9]+)?)"')


class _Unmarkable(Exception):
    """A text that looks like `_MARK`'s: the slow encoder takes the value."""


_MARK_JSON = json.dumps(_MARK)[1:-1]
_EXPONENT_END = re.compile(r"e[-+][0-9]+(?:[,\]}]|$)")
"""The end of a number written with an exponent (a literal first: a fast scan of the text)."""


def _has_exponent(text: str) -> bool:
    """Whether the encoder wrote a float with an exponent (`1e-05` as a value; a text that looks like one
    only costs the walk)."""
    for match in _EXPONENT_END.finditer(text):
        start = match.start()
        while start and text[start - 1] in "0123456789.":
            start -= 1
        if start < match.start() and text[start - 1 : start] == "-":
            start -= 1
        if start < match.start() and (start == 0 or text[start - 1] in ":,["):  # a value, the whole text included
            return True
    return False


def _compact(value: Any) -> str:
    """`to_json` without indent, as the stdlib's C encoder writes it (the job's snapshot, per event): every
    number `_numbers` makes a Decimal becomes a marked text, written back as its digits afterwards.

    Fast path, no walk in Python: the encoder writes floats itself (`repr`, what `decimal_text` writes for a
    float without exponent) and hands each Decimal to `default`, which marks it. Anything the fast path cannot
    vouch for (a non-finite float, a float written with an exponent, a text that holds the mark) takes the walk.
    Keys are texts or numbers, as in the JSON records and payloads a snapshot holds (the encoder would write a
    True or None key as `true`/`null` where the walk writes `True`/`None`).
    """
    marks = 0

    def default(obj: Any) -> Any:
        nonlocal marks
        if isinstance(obj, Decimal):
            if not obj.is_finite():
                return str(obj)
            marks += 1
            return _MARK + decimal_text(obj)
        return str(obj)

    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default, allow_nan=False)
    except (ValueError, TypeError):
        text = ""
    if text and text.count(_MARK_JSON) == marks and not _has_exponent(text):
        return _MARKED.sub(r"\1", text) if marks else text
    return _MARKED.sub(r"\1", json.dumps(_marked(value), ensure_ascii=False, separators=(",", ":"), default=str))


def _marked(value: Any) -> Any:
    if isinstance(value, str):
        if _MARK in value:
            raise _Unmarkable
        return value
    if isinstance(value, float):
        return _MARK + decimal_text(Decimal(repr(value))) if math.isfinite(value) else repr(value)
    if isinstance(value, Decimal):
        return _MARK + decimal_text(value) if value.is_finite() else str(value)
    if isinstance(value, dict):
        return {_marked_key(k): _marked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(v) for v in value]
    return value


def _marked_key(key: Any) -> str:
    text = str(key)
    if _MARK in text:
        raise _Unmarkable
    return text


AS_RECEIVED = "record_as_received"
"""In a stored snapshot, in place of `record`: the record is the event as received (not written twice)."""


def _loaded(data: dict[str, Any]) -> dict[str, Any]:
    """A stored snapshot as `Recorder.as_dict` made it: a record stored as the event received, put back."""
    if data.pop(AS_RECEIVED, False):
        data["record"] = copy.deepcopy(data.get("received"))
    return data


class SnapshotStore:
    """Snapshots in Redis, each expiring after `ttl` seconds (the payload retention)."""

    def __init__(self, connection: redis.Redis, ttl: int = DEFAULT_TTL) -> None:
        self.connection = connection
        self.ttl = ttl

    def save(self, recorder: Recorder, pipe: redis.client.Pipeline | None = None) -> None:
        """Store the snapshot (or queue its SET on `pipe`, which the caller executes)."""
        data = recorder.as_dict()
        if recorder.record is not None and recorder.record is recorder.received:  # written once (`_loaded`)
            del data["record"]
            data[AS_RECEIVED] = True
        text = to_json(data)
        (pipe or self.connection).set(keys.snapshot(recorder.integration, recorder.job_id), text, ex=self.ttl)

    def load(self, integration: str, job_id: str) -> dict[str, Any] | None:
        raw = self.connection.get(keys.snapshot(integration, job_id))
        if raw is None:
            return None
        try:
            data = json.loads(raw, parse_float=Decimal)  # numbers with the digits they were written with
        except ValueError:
            return None
        return _loaded(data) if isinstance(data, dict) else None

    def load_many(self, integration: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """{job id: snapshot} for those of `job_ids` that have one."""
        ids = [job_id for job_id in dict.fromkeys(job_ids) if job_id]
        if not ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for job_id, raw in zip(ids, self.connection.mget([keys.snapshot(integration, i) for i in ids]), strict=True):
            if raw is None:
                continue
            try:
                data = json.loads(raw, parse_float=Decimal)
            except ValueError:
                continue
            if isinstance(data, dict):
                found[job_id] = _loaded(data)
        return found


# -- masking personal data ---------------------------------------------------------------------------

_PERSONAL = re.compile(
    r"(e-?mail|name|phone|mobile|fax|tel|address|street|house|city|town|postcode|postal|zip|"
    r"birth|iban|bic|vat|coc|kvk|ip_?address|customer_note|company|contact|"
    r"avatar|username|login|ssn|bsn|passport)",
    re.IGNORECASE,
)
_NOT_PERSONAL = re.compile(r"^(.*_)?(id|ids|code|codes|status|sku|type|kind|method_id|country_code)$", re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}")
MASK = "•••"


def _masked_value(value: Any) -> Any:
    if isinstance(value, str):
        return MASK if value else value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return MASK
    return mask(value, all_personal=True)


def mask(data: Any, *, all_personal: bool = False) -> Any:
    """A copy of `data` with personal data masked: the values of keys that name personal data (e-mail,
    names, phone numbers, addresses, …), nested objects under such keys entirely, and e-mail addresses
    wherever they appear. Ids, codes, amounts and statuses stay readable."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key)
            personal = all_personal or (_PERSONAL.search(name) is not None and not _NOT_PERSONAL.match(name))
            out[key] = _masked_value(value) if personal and value is not None else mask(value)
        return out
    if isinstance(data, list):
        return [mask(item, all_personal=all_personal) for item in data]
    if isinstance(data, str):
        if all_personal and data:
            return MASK
        return _EMAIL.sub(MASK, data)
    return data
