"""AsperionClient: Asperion's REST API for one administration (tenant), on the HTTP kit (connectors/http.py).

    {base_url}/v1/{resource}      base_url https://api.asperion.nl (sandbox https://api-sandbox.asperion.nl)

Known [D: help.asperion.nl/api.aspx, /api/api-endpoints.aspx]: bearer tokens from the identity server; the
administration chosen by a tenant header on every call (`X-TenantId`; one page of Asperion's writes
`X-Tenant-Id`, so the header's name is a setting); `Accept-Language` choosing the language of error and
validation messages; the resources `v1/articles` (read and write; `currentStock` read only; inactive articles
hidden unless `ActiveState` asks for them) and `v1/SalesOrderWithLines`.

Unverified [U] (the Swagger is behind a partner login), all in `RESOURCES` and `QUERY` below so that one
table changes when the real names differ:

* the resources `v1/relations`, `v1/salesinvoices`, `v1/financialmutations`;
* paging by `page` (1-based) and `pageSize` (at most `MAX_PAGE_SIZE`), answered as
  `{"data": [...], "page", "pageSize", "totalCount"}` (a bare list, or `items`/`value`/`results`, read too);
* `modifiedSince` (inclusive) with `orderBy=modifiedDate` for the changes since a moment, and equality
  filters `code`, `email`, `reference` (whose answers are checked again here: a filter the API ignores
  costs calls, never a wrong match);
* `ActiveState=All` for active and inactive articles;
* errors as RFC 7807 problem details `{"title", "status", "detail", "errors": {field: [messages]}}`;
* writes: POST creates and answers the record; PUT `{resource}/{id}` replaces it (an update reads the record
  first and sends it whole, with the changed fields, read-only fields left out).

Reading changes is keyset-paged on the modification date: each request asks `modifiedSince` the newest date
read so far (page 1 again), so a record edited during the read moves behind the reader instead of shifting
the pages under it. Only a page whose records all share one date is followed by page number; such a group is
read again afterwards until a pass finds nothing new (an edit during the read moves the group's later records
forward, past a page edge).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from connectors.asperion.auth import AUTH_RETRY
from connectors.asperion.errors import (
    AsperionAuthError,
    AsperionNotFound,
    AsperionRateLimited,
    AsperionRequestError,
    AsperionResponseError,
    AsperionUnavailable,
)
from connectors.http import ApiClient, Retry, read_json
from gateway.errors import PermanentError
from gateway.payload import dumps

API_URL = "https://api.asperion.nl"
SANDBOX_API_URL = "https://api-sandbox.asperion.nl"
MAX_PAGE_SIZE = 100
READ_AGAIN_PASSES = 3
Record = dict[str, Any]
log = logging.getLogger(__name__)

RESOURCES: dict[str, str] = {
    "articles": "v1/articles",                        # [D]
    "relations": "v1/relations",                      # [U]
    "salesorders": "v1/SalesOrderWithLines",          # [D] (inTrade)
    "salesinvoices": "v1/salesinvoices",              # [U]
    "financialmutations": "v1/financialmutations",    # [U]
}  # fmt: skip
QUERY: dict[str, str] = {
    "page": "page", "page_size": "pageSize", "since": "modifiedSince", "order": "orderBy",
    "active": "ActiveState", "code": "code", "email": "email", "reference": "reference",
}  # fmt: skip
READ_ONLY = frozenset({"id", "currentstock", "modifieddate", "createddate", "modified", "created"})
"""Fields an update never sends back (compared case-insensitively)."""
_ROW_KEYS = ("data", "items", "value", "results")


def rows_of(body: Any, where: str) -> tuple[list[Record], int | None]:
    """The records of a list answer and its total count when given; AsperionResponseError for another shape."""
    if isinstance(body, list):
        rows: Any = body
        total = None
    elif isinstance(body, dict):
        rows = next((body[k] for k in (*_ROW_KEYS, *(k.capitalize() for k in _ROW_KEYS)) if k in body), None)
        raw_total = next((body[k] for k in ("totalCount", "TotalCount", "total", "count") if k in body), None)
        total = int(raw_total) if isinstance(raw_total, int) and not isinstance(raw_total, bool) else None
    else:
        rows, total = None, None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AsperionResponseError(f"{where}: the answer is not a list of records")
    return rows, total


def query_date(moment: datetime) -> str:
    """A moment as the `modifiedSince` parameter: ISO 8601 in UTC [U: that Asperion honours the offset]."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class AsperionClient(ApiClient):
    """Asperion for one administration (see the module docstring)."""

    system = "Asperion"
    unavailable_error = AsperionUnavailable
    rate_limited_error = AsperionRateLimited
    rejected_error = AsperionRequestError
    not_found_error = AsperionNotFound
    auth_error = AsperionAuthError
    bad_response_error = AsperionResponseError
    auth_statuses = frozenset({401, 403})
    auth_retry_extension = AUTH_RETRY
    auth_advice = ("run `koppel connect` for the Asperion system again; a 403 means the user who approved has "
                   "no access to the administration settings.tenant_id names")  # fmt: skip

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str = API_URL,
        tenant_id: str,
        language: str = "nl-NL",
        tenant_header: str = "X-TenantId",
        page_size: int = MAX_PAGE_SIZE,
        auth: httpx.Auth | None = None,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(http, api_root=base_url, auth=auth, retry=retry, sleep=sleep, jitter=jitter, clock=clock)
        if not tenant_id:
            raise PermanentError("Asperion needs the administration's tenant id (settings.tenant_id)")
        self.tenant_id = tenant_id
        self.headers = {tenant_header: tenant_id, "Accept-Language": language}
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))

    # -- hooks ---------------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, object] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """The kit's request, with the tenant and language headers every Asperion call carries."""
        return super().send(method, url, params=params, json=json, headers={**self.headers, **(headers or {})},
                            content=content)  # fmt: skip

    def encode(self, body: object) -> bytes:
        """JSON with Decimals as their exact digits (mappings give amounts as Decimals, never floats)."""
        return dumps(body).encode()

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        """A problem-details body: (title, detail and field errors); `{"message"}` and `{"error"}` read too."""
        try:
            body = read_json(response.content)
        except ValueError:
            return "", response.text[:200] if response.headers.get("content-type", "").startswith("text/") else ""
        if not isinstance(body, dict):
            return "", ""
        error = body.get("error")
        if isinstance(error, dict):
            body = error
        elif isinstance(error, str) and not body.get("detail"):
            body = {**body, "detail": error}
        title = str(body.get("title") or body.get("code") or "")
        parts = [str(body.get("detail") or body.get("message") or "")]
        errors = body.get("errors")
        if isinstance(errors, dict):
            for name, messages in list(errors.items())[:5]:
                texts = messages if isinstance(messages, list) else [messages]
                parts.append(f"{name}: {'; '.join(str(t) for t in texts[:3])}")
        return title, " ".join(p for p in parts if p)

    def rejection(
        self, error: type[PermanentError], text: str, *, status: int, code: str, message: str
    ) -> PermanentError:
        if issubclass(error, AsperionRequestError):
            return error(text, status=status, code=code, message=message)
        return super().rejection(error, text, status=status, code=code, message=message)

    # -- reading ---------------------------------------------------------------------------------------

    def page(self, resource: str, params: Mapping[str, object] | None = None, *, number: int = 1) -> list[Record]:
        """One page of a resource's list."""
        return self._page(resource, params, number)[0]

    def _page(self, resource: str, params: Mapping[str, object] | None, number: int) -> tuple[list[Record], bool]:
        """(page `number`, whether a page may follow): not after a short page, nor past `totalCount`."""
        path = RESOURCES[resource]
        query = {**(params or {}), QUERY["page"]: number, QUERY["page_size"]: self.page_size}
        rows, total = rows_of(self.request("GET", path, params=query), f"GET {path}")
        more = len(rows) >= self.page_size and (total is None or number * self.page_size < total)
        return rows, more

    def pages(self, resource: str, params: Mapping[str, object] | None = None) -> Iterator[list[Record]]:
        """Every page of a list, until a short (or empty) page or the total count."""
        number, previous = 1, None
        while True:
            rows, more = self._page(resource, params, number)
            previous = _not_repeated(rows, previous, resource, number)
            if rows:
                yield rows
            if not more:
                return
            number += 1

    def where_equal(self, resource: str, name: str, value: str, **params: object) -> list[Record]:
        """The records whose field `name` (a `QUERY` key) equals `value` (case-insensitively), every page."""
        wanted = value.casefold()
        query = {QUERY[name]: value, **params}
        return [row for rows in self.pages(resource, query) for row in rows
                if str(field_of(row, name) or "").casefold() == wanted]  # fmt: skip

    def changed(
        self, resource: str, since: datetime, modified: Callable[[Record], datetime | None],
        params: Mapping[str, object] | None = None,
    ) -> Iterator[list[Record]]:  # fmt: skip
        """Pages of the records modified at or after `since`, oldest first, keyset-paged on the modification
        date (module docstring); a record may come twice (on both sides of a page's edge)."""
        floor, number, previous = since, 1, None
        seen: set[str] = set()
        while True:
            query = {**(params or {}), QUERY["since"]: query_date(floor), QUERY["order"]: "modifiedDate"}
            rows, more = self._page(resource, query, number)
            previous = _not_repeated(rows, previous, resource, number)
            seen.update(str(id_of(r)) for r in rows)
            if rows:
                yield rows
            moments = [m for m in (modified(r) for r in rows) if m is not None]
            newest = max(moments) if moments else None
            moving = more and newest is not None and newest > floor
            if number > 1 and (moving or not more):
                yield from self._read_again(resource, query, number, seen)
            if not more:
                return
            if moving:
                assert newest is not None
                floor, number, previous = newest, 1, None  # a new query: its page 1 may start with the same records
            else:
                number += 1

    def _read_again(
        self, resource: str, query: Mapping[str, object], pages: int, seen: set[str]
    ) -> Iterator[list[Record]]:
        """Pages 1..`pages` of a query that was read by page number (a page's records all shared one date), read
        again until a pass finds no record not `seen`: a record edited meanwhile left the group and moved the
        rest forward, so one of them may have slipped past a page edge unread."""
        for _ in range(READ_AGAIN_PASSES):
            found = False
            for number in range(1, pages + 1):
                rows, more = self._page(resource, query, number)
                new = [r for r in rows if str(id_of(r)) not in seen]
                seen.update(str(id_of(r)) for r in new)
                if new:
                    found = True
                    yield new
                if not more:
                    break
            if not found:
                return
        log.warning("%s: records kept moving while %s was read; the next poll's overlap reads them",
                    self.system, RESOURCES[resource])  # fmt: skip

    def get(self, resource: str, record_id: str) -> Record:
        path = f"{RESOURCES[resource]}/{record_id}"
        found = self.request("GET", path)
        if not isinstance(found, dict):
            raise AsperionResponseError(f"GET {RESOURCES[resource]}/{{id}}: the answer is not a record")
        return found

    # -- writing ---------------------------------------------------------------------------------------

    def create(self, resource: str, body: Mapping[str, Any]) -> Record:
        """POST a record; the record as Asperion holds it (its id at least)."""
        path = RESOURCES[resource]
        created = self.request("POST", path, json=dict(body))
        if not isinstance(created, dict) or id_of(created) is None:
            raise AsperionResponseError(f"POST {path}: the answer carries no id of the record created")
        return created

    def update(self, resource: str, record_id: str, changes: Mapping[str, Any]) -> Record:
        """Read the record, put `changes` over it (nested objects merged) and PUT it back whole."""
        current = exact_numbers(self.get(resource, record_id))
        body = {k: v for k, v in merged(current, changes).items() if k.lower() not in READ_ONLY}
        answer = self.request("PUT", f"{RESOURCES[resource]}/{record_id}", json=body)
        return answer if isinstance(answer, dict) else {**current, **body}


def _not_repeated(rows: list[Record], previous: list[str] | None, resource: str, number: int) -> list[str]:
    """The page's ids; AsperionResponseError when they are the page before's (the API ignored the paging
    parameters: reading on would never end)."""
    ids = [str(id_of(r)) for r in rows]
    if ids and ids == previous:
        raise AsperionResponseError(f"GET {RESOURCES[resource]}: page {number} repeats the page before; the API "
                                    "ignores the paging parameters (client.QUERY names them)")  # fmt: skip
    return ids


def exact_numbers(value: Any) -> Any:
    """`value` with every float (a JSON number as read) a Decimal of its shortest repr: what Asperion answered
    goes back unchanged, and Koppel's payloads never carry floats."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: exact_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact_numbers(v) for v in value]
    return value


def merged(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `changes` over it; a nested object is merged field by field, a list replaced whole.
    Keys match case-insensitively (the record's spelling kept)."""
    out = dict(current)
    spelled = {k.lower(): k for k in out}
    for key, value in changes.items():
        name = spelled.get(key.lower(), key)
        old = out.get(name)
        out[name] = merged(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "Id", "ID"),
    "code": ("code", "articleCode", "Code", "number"),
    "email": ("email", "emailAddress", "Email"),
    "reference": ("reference", "yourReference", "externalReference", "Reference"),
    "modified": ("modifiedDate", "modifiedOn", "lastModified", "dateModified", "ModifiedDate", "modified"),
}
"""The spellings a record's key fields are read by [U]; the first is what the sandbox answers."""


def field_of(record: Mapping[str, Any], name: str) -> Any:
    for spelling in FIELDS.get(name, (name,)):
        value = record.get(spelling)
        if value is not None and value != "":
            return value
    return None


def id_of(record: Mapping[str, Any]) -> str | None:
    value = field_of(record, "id")
    return None if value is None else str(value)


__all__ = ["API_URL", "FIELDS", "MAX_PAGE_SIZE", "QUERY", "RESOURCES", "AsperionClient", "field_of", "id_of",
           "merged", "query_date", "rows_of"]  # fmt: skip
