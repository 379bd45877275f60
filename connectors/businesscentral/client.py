"""BusinessCentralClient: Business Central's API v2.0 for one company, on the HTTP kit (connectors/http.py).

    {base_url}/v2.0/{environment}/api/v2.0/companies({company id})/{entity}

Quirks this client is built around:

* Every entity lives under a company; the system's settings name it by name or id. The id is looked up
  once (`GET companies?$filter=name eq '…'`) and cached in Redis a day (`koppel:cache:{system}:bc_company`).
* Lists page server-side: a page ends with `@odata.nextLink` (followed as given, same host only, so the
  token never leaves for another one). `$filter` literals: strings in single quotes with `'` doubled,
  datetimes bare (`lastModifiedDateTime gt 2026-03-14T13:00:00Z`), GUIDs bare.
* PATCH and DELETE need `If-Match` with the record's `@odata.etag` (W/"…", new on every write); a stale
  one answers 412. `patch` re-reads the record and tries once more; a second 412 is a
  `BusinessCentralConflict` (someone edits it in BC right now), which fails the job with that message.
* Errors are `{"error": {"code", "message"}}` (`BadRequest_NotFound`, `Internal_RecordNotFound`,
  `Request_EntityChanged`, …): mapped onto errors.py's tree; 429 and 503 (with `Retry-After`) and other
  5xx of idempotent requests are retried by the kit.
* An item's picture is its own entity (`items({id})/picture`); its content is PATCHed as raw bytes to
  `items({id})/picture/pictureContent`, with the picture's ETag.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import redis

from connectors.businesscentral.auth import AUTH_RETRY, App, ClientCredentialsAuth, TokenCache
from connectors.businesscentral.errors import (
    BusinessCentralAuthError,
    BusinessCentralConflict,
    BusinessCentralNotFound,
    BusinessCentralRequestError,
    BusinessCentralResponseError,
    BusinessCentralUnavailable,
    RateLimited,
)
from connectors.http import ApiClient, Retry, read_json
from gateway import keys
from gateway.errors import KoppelError, PermanentError

API_URL = "https://api.businesscentral.dynamics.com"
COMPANY_TTL = 24 * 3600
NUMBER_CHUNK = 15
"""Item or customer numbers asked for in one `or` filter (BC's URLs stay well under their limit)."""
BATCH_LIMIT = 100
"""Requests in one `$batch` (BC's operational limit)."""

Record = dict[str, Any]
BatchRequest = tuple[str, str, Mapping[str, Any] | None, Mapping[str, str] | None]
"""One request of a `$batch`: method, path below the company (`items({id})`), JSON body, headers."""


def quote(value: str) -> str:
    """An OData string literal: single quotes, a quote inside doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def eq(field: str, value: str) -> str:
    return f"{field} eq {quote(value)}"


def any_of(field: str, values: Iterable[str]) -> str:
    return " or ".join(eq(field, v) for v in values)


def is_guid(value: str) -> bool:
    parts = value.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdefABCDEF" for c in "".join(parts))


class BusinessCentralClient(ApiClient):
    """Business Central's API v2.0 for one environment and company (see the module docstring)."""

    system = "Business Central"
    unavailable_error = BusinessCentralUnavailable
    rate_limited_error = RateLimited
    rejected_error = BusinessCentralRequestError
    not_found_error = BusinessCentralNotFound
    auth_error = BusinessCentralAuthError
    bad_response_error = BusinessCentralResponseError
    auth_statuses = frozenset({401, 403})
    auth_retry_extension = AUTH_RETRY
    auth_advice = (
        "Business Central refused the app (401) or its permissions (403): enter the app in Business Central's page "
        '"Microsoft Entra Applications" (state Enabled) with permission sets that cover the data (e.g. D365 BUS '
        "FULL ACCESS)"
    )

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str = API_URL,
        environment: str,
        company: str,
        auth: httpx.Auth | None = None,
        company_cache: tuple[redis.Redis, str] | None = None,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.environment = environment
        super().__init__(http, api_root=f"{self.base_url}/v2.0/{environment}/api/v2.0", auth=auth, retry=retry,
                         sleep=sleep, jitter=jitter, clock=clock)  # fmt: skip
        self.company = company
        self._company_id: str | None = company if is_guid(company) else None
        self._company_cache = company_cache

    @classmethod
    def for_system(
        cls,
        http: httpx.Client,
        conn: redis.Redis,
        system_id: str,
        app: App,
        *,
        base_url: str = API_URL,
        environment: str,
        company: str,
        **options: Any,
    ) -> BusinessCentralClient:
        """The usual wiring: the token and the company id cached in Redis, per system."""
        auth = ClientCredentialsAuth(app, http, TokenCache(conn, system_id), clock=options.get("clock", time.time))
        return cls(http, base_url=base_url, environment=environment, company=company, auth=auth,
                   company_cache=(conn, keys.cache(system_id, "bc_company")), **options)  # fmt: skip

    # -- hooks ---------------------------------------------------------------------------------------

    def label(self, url: str) -> str:
        """The path below the company (`customers({id})`), or below the API root (`companies`)."""
        rest = super().label(url)
        head, sep, tail = rest.partition("/")
        return tail if sep and head.startswith("companies(") else rest

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        """BC's `{"error": {"code", "message"}}`."""
        try:
            body = read_json(response.content)
        except ValueError:
            return "", ""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return "", ""
        return str(error.get("code") or ""), str(error.get("message") or "")

    def rejection(
        self, error: type[PermanentError], text: str, *, status: int, code: str, message: str
    ) -> PermanentError:
        if error is self.rejected_error and status in (409, 412):
            error = BusinessCentralConflict
        if issubclass(error, BusinessCentralRequestError):
            return error(text, status=status, code=code, message=message)
        return super().rejection(error, text, status=status, code=code, message=message)

    # -- the company -------------------------------------------------------------------------------

    @property
    def company_id(self) -> str:
        if self._company_id is None:
            self._company_id = self._cached_company() or self.resolve_company()
        return self._company_id

    def _cached_company(self) -> str | None:
        if self._company_cache is None:
            return None
        conn, key = self._company_cache
        found = conn.hget(key, self.company)
        return keys.text(found) if found else None

    def resolve_company(self) -> str:
        """The id of the company the settings name (by `name`, else `displayName`); cached a day."""
        companies = list(self.pages("companies", {"$select": "id,name,displayName"}, company=False))
        rows = [row for page in companies for row in page]
        found = next((r for r in rows if str(r.get("name")) == self.company), None)
        found = found or next((r for r in rows if str(r.get("displayName")) == self.company), None)
        if found is None:
            names = ", ".join(sorted(repr(str(r.get("name"))) for r in rows)[:10]) or "none"
            raise PermanentError(
                f"Business Central environment {self.environment!r} has no company {self.company!r} "
                f"(it has {names}): set settings.company to one of them, or to the company's id"
            )
        company_id = str(found["id"])
        if self._company_cache is not None:
            conn, key = self._company_cache
            conn.hset(key, self.company, company_id)
            conn.expire(key, COMPANY_TTL)
        return company_id

    def url(self, path: str) -> str:
        return f"{self.api_root}/companies({self.company_id})/{path.lstrip('/')}"

    # -- reading ---------------------------------------------------------------------------------------

    def pages(
        self, path: str, params: Mapping[str, object] | None = None, *, company: bool = True
    ) -> Iterator[list[Record]]:
        """Every page of a list, following `@odata.nextLink` (same host only)."""
        url: str | None = self.url(path) if company else f"{self.api_root}/{path}"
        query = params
        while url is not None:
            body = self.request("GET", url, params=query)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise BusinessCentralResponseError(f"GET {self.label(url)}: the answer is not an OData list")
            yield [row for row in body["value"] if isinstance(row, dict)]
            following = body.get("@odata.nextLink")
            if following is not None and (not isinstance(following, str) or not self.same_origin(following)):
                raise BusinessCentralResponseError(f"GET {path}: @odata.nextLink points at another host; not followed")
            url, query = following, None

    def query(
        self,
        path: str,
        *,
        filter: str | None = None,
        select: Iterable[str] | None = None,
        expand: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
    ) -> list[Record]:
        params = _params(filter=filter, select=select, expand=expand, orderby=orderby, top=top)
        out: list[Record] = []
        for page in self.pages(path, params):
            out.extend(page)
            if top is not None and len(out) >= top:
                return out[:top]
        return out

    def first(self, path: str, *, filter: str, select: Iterable[str] | None = None) -> Record | None:
        found = self.query(path, filter=filter, select=select, top=1)
        return found[0] if found else None

    def get(
        self, path: str, record_id: str, *, select: Iterable[str] | None = None, expand: str | None = None
    ) -> Record:
        body = self.request("GET", self.url(f"{path}({record_id})"), params=_params(select=select, expand=expand))
        if not isinstance(body, dict):
            raise BusinessCentralResponseError(f"GET {path}: the answer is not a record")
        return body

    # -- writing ---------------------------------------------------------------------------------------

    def create(self, path: str, body: Mapping[str, Any]) -> Record:
        created = self.request("POST", self.url(path), json=dict(body))
        if not isinstance(created, dict) or not created.get("id"):
            raise BusinessCentralResponseError(f"POST {path}: Business Central did not return the created record")
        return created

    def patch(self, path: str, record_id: str, body: Mapping[str, Any], *, etag: str | None = None) -> Record:
        """PATCH with `If-Match`: the `etag` given (else the record is read for it); on 412 the record is
        read again and the PATCH tried once more."""
        url = self.url(f"{path}({record_id})")
        for attempt in (1, 2):
            if etag is None:
                etag = _etag(self.get(path, record_id, select=("id",)), path)
            try:
                updated = self.request("PATCH", url, json=dict(body), headers={"If-Match": etag})
            except BusinessCentralConflict as exc:
                if exc.status != 412:
                    raise
                if attempt == 2:
                    raise BusinessCentralConflict(
                        f"PATCH {path}: the record changed in Business Central while Koppel wrote it, twice; "
                        "it is retried later", status=412, code=exc.code, message=exc.message,
                    ) from None  # fmt: skip
                etag = None
                continue
            return updated if isinstance(updated, dict) else {}
        raise AssertionError("unreachable")  # pragma: no cover

    def delete(self, path: str, record_id: str, *, etag: str | None = None) -> None:
        url = self.url(f"{path}({record_id})")
        if etag is None:
            etag = _etag(self.get(path, record_id, select=("id",)), path)
        self.send("DELETE", url, headers={"If-Match": etag})

    def batch(self, requests: Sequence[BatchRequest]) -> list[Record | KoppelError]:
        """`POST $batch` (OData's JSON batch format), `BATCH_LIMIT` requests a call, without `Isolation`: each
        request stands alone. Per request, in order: its JSON body ({} when empty), or the error BC answered
        it with (a `BusinessCentralConflict` for a stale ETag, as a request alone would raise). An error of a
        whole call (5xx, 401) is raised."""
        out: list[Record | KoppelError] = []
        for start in range(0, len(requests), BATCH_LIMIT):
            chunk = requests[start : start + BATCH_LIMIT]
            body = {"requests": [
                {"id": str(n), "method": method, "url": f"companies({self.company_id})/{path.lstrip('/')}",
                 "headers": {"Content-Type": "application/json", **(headers or {})},
                 **({"body": dict(payload)} if payload is not None else {})}
                for n, (method, path, payload, headers) in enumerate(chunk)]}  # fmt: skip
            answer = self.request("POST", f"{self.api_root}/$batch", json=body)
            responses = answer.get("responses") if isinstance(answer, dict) else None
            if not isinstance(responses, list):
                raise BusinessCentralResponseError("POST $batch: the answer holds no `responses`")
            by_id = {str(r.get("id")): r for r in responses if isinstance(r, dict)}
            out += [self._answer(method, path, by_id.get(str(n))) for n, (method, path, _, _) in enumerate(chunk)]
        return out

    def _answer(self, method: str, path: str, response: Mapping[str, Any] | None) -> Record | KoppelError:
        where = f"{self.where(method, self.url(path))} (in a $batch)"
        if response is None:
            return BusinessCentralResponseError(f"{where}: the $batch answer lacks it")
        status, body = response.get("status"), response.get("body")
        if not isinstance(status, int):
            return BusinessCentralResponseError(f"{where}: the $batch answer gives it no status")
        if status < 300:
            return body if isinstance(body, dict) else {}
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        return self.item_error(where, status, str(error.get("code") or ""), str(error.get("message") or ""))

    # -- items -----------------------------------------------------------------------------------------

    def find_numbers(
        self, path: str, numbers: Iterable[str], *, select: Iterable[str] = ("id", "number")
    ) -> dict[str, Record]:
        """{number: record} for the numbers that exist, one request per `NUMBER_CHUNK`; BC's numbers are
        upper-case codes, so they match case-insensitively and the keys are the numbers as asked."""
        wanted: dict[str, list[str]] = {}
        for number in numbers:
            text = str(number).strip()
            if text and text not in wanted.get(text.upper(), []):
                wanted.setdefault(text.upper(), []).append(text)
        found: dict[str, Record] = {}
        distinct = list(wanted)
        for start in range(0, len(distinct), NUMBER_CHUNK):
            chunk = distinct[start : start + NUMBER_CHUNK]
            for page in self.pages(path, _params(filter=any_of("number", chunk), select=select)):
                for record in page:
                    for asked in wanted.get(str(record.get("number") or "").upper(), []):
                        found.setdefault(asked, record)
        return found

    def picture(self, item_id: str) -> Record:
        return self.request("GET", self.url(f"items({item_id})/picture")) or {}

    def set_picture(self, item_id: str, content: bytes, content_type: str) -> None:
        """The item's picture content replaced (PATCH with the picture's ETag; re-read once on 412)."""
        for attempt in (1, 2):
            etag = str(self.picture(item_id).get("@odata.etag") or "*")
            try:
                self.send("PATCH", self.url(f"items({item_id})/picture/pictureContent"), content=content,
                          headers={"If-Match": etag, "Content-Type": content_type})  # fmt: skip
                return
            except BusinessCentralConflict as exc:
                if exc.status != 412 or attempt == 2:
                    raise


def _etag(record: Mapping[str, Any], path: str) -> str:
    etag = record.get("@odata.etag")
    if not isinstance(etag, str) or not etag:
        raise BusinessCentralResponseError(f"GET {path}: the record carries no @odata.etag")
    return etag


def _params(
    *,
    filter: str | None = None,
    select: Iterable[str] | None = None,
    expand: str | None = None,
    orderby: str | None = None,
    top: int | None = None,
) -> dict[str, str] | None:
    params: dict[str, str] = {}
    if filter:
        params["$filter"] = filter
    if select:
        params["$select"] = ",".join(select)
    if expand:
        params["$expand"] = expand
    if orderby:
        params["$orderby"] = orderby
    if top is not None:
        params["$top"] = str(top)
    return params or None
