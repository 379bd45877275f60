"""ExactClient: the Exact Online REST API over one reusable `httpx.Client`.

One `httpx.Client` per worker process (connection pool, timeouts); one light `ExactClient` per system
and division on top of it. Each request goes: shared rate-limit slot (ratelimit.py) → bearer token
(auth.py, refreshed once on 401) → response headers folded back into the budget → 429 waited out →
5xx/timeouts retried with jittered exponential backoff → OData envelope unwrapped, `/Date(ms)/`
parsed. Errors are split retryable/permanent (see errors.py for the tree).

Writes are not blindly retried: a POST that timed out or got a 5xx may have been executed, so it
raises ExactUnavailable and the job retries from the top, where the flow's lookup on a stable key
(`find_sales_order_by_your_ref`, …) keeps the replay from creating a second document. A POST is
retried in place only when it certainly was not processed: connection refused, or 429.

`calls` counts HTTP calls made to Exact (including the retry after a token refresh), so a worker can
report Exact calls per synced order.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from connectors.exactonline.auth import ExactAuth, OAuthApp, TokenStore
from connectors.exactonline.endpoints import (
    DIRECT_SALES_INVOICE,
    Accounts,
    Contacts,
    Endpoint,
    Items,
    PaymentConditions,
    SalesEntries,
    SalesInvoices,
    SalesOrders,
    VATCodes,
)
from connectors.exactonline.errors import (
    ExactAuthError,
    ExactNotFound,
    ExactPayloadError,
    ExactRequestError,
    ExactResponseError,
    ExactUnavailable,
)
from connectors.exactonline.odata import (
    EXACT_TZ,
    Record,
    any_of,
    encode,
    eq,
    error_text,
    key_path,
    unwrap,
    unwrap_page,
)
from connectors.exactonline.ratelimit import Limits, RateLimiter

log = logging.getLogger(__name__)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Retry:
    """Backoff for 5xx and timeouts: `attempts` tries in all, delays base·2^n capped, with full jitter."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 10.0


class ExactClient:
    """Exact Online for one division. Domain quirks:

    * Base `{base_url}/api/v1/{division}/`; the current division comes from `current/Me`.
    * Lists page by 60 (1 000 on sync/bulk endpoints); `__next` carries a `$skiptoken` and is followed
      as given — but only to the same host, so the bearer token never leaves for another one.
    * Rate limits are per app per division (60/min, 5 000/day): pass a RateLimiter shared through
      Redis; without one the client still waits out a 429 from its headers.
    * Exact blocks an app for a while after ~10 4xx errors per endpoint per hour: required fields are
      checked before POSTing (ExactPayloadError), and lookups use filters that cannot fail.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str,
        division: int | None = None,
        auth: httpx.Auth | None = None,
        limiter: RateLimiter | None = None,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        tz: tzinfo = EXACT_TZ,
        item_chunk: int = 20,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.api_root = f"{self.base_url}/api/v1"
        self._division = division
        self.auth = auth
        self.limiter = limiter or RateLimiter.unlimited(sleep=sleep)
        self.retry = retry or Retry()
        self.sleep = sleep
        self.jitter = jitter
        self.tz = tz
        self.item_chunk = item_chunk
        self.calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()
        self.last_headers: httpx.Headers | None = None
        self._count_lock = threading.Lock()
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

    @classmethod
    def for_system(
        cls,
        http: httpx.Client,
        conn: redis.Redis,
        app: OAuthApp,
        system_id: str,
        *,
        division: int | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> ExactClient:
        """The usual wiring: tokens and budget in Redis.

        Without `division`, the one `current/Me` named is used; it is cached in Redis next to the tokens
        (cleared on re-authorisation), so only the first worker spends a call on it.
        """
        store = TokenStore(conn, system_id)
        auth = ExactAuth(store, app, http, clock=clock)
        division = division if division is not None else store.load_division()
        client = cls(http, base_url=app.base_url, division=division, auth=auth, **options)
        if division is None:
            store.save_division(client.division)
        client.limiter = RateLimiter(conn, client.division, limits or Limits(), clock=clock, sleep=client.sleep)
        if client.last_headers is not None:
            client.limiter.observe(client.last_headers)  # the current/Me call spent budget too
        return client

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def division(self) -> int:
        if self._division is None:
            self._division = self.current_division()
        return self._division

    def current_division(self) -> int:
        """`GET current/Me?$select=CurrentDivision` — the division the authorising user last used."""
        body = self.request("GET", f"{self.api_root}/current/Me", params={"$select": "CurrentDivision"})
        data = unwrap(body, self.tz)
        me = data[0] if isinstance(data, list) and data else data
        if not isinstance(me, dict) or not isinstance(me.get("CurrentDivision"), int):
            raise ExactResponseError("current/Me did not return a CurrentDivision")
        return int(me["CurrentDivision"])

    def url(self, path: str) -> str:
        return f"{self.api_root}/{self.division}/{path.lstrip('/')}"

    def _label(self, url: str) -> str:
        path = urlsplit(url).path
        root = urlsplit(self.api_root).path
        rest = path[len(root) :].lstrip("/") if path.startswith(root) else path
        head, _, tail = rest.partition("/")
        return tail if head.isdigit() else rest

    def _count(self, method: str, label: str) -> None:
        with self._count_lock:
            self.calls += 1
            self.calls_by_endpoint[f"{method} {label.split('(')[0]}"] += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        delay = min(self.retry.cap, self.retry.base * 2 ** (attempt - 1)) * (0.5 + self.jitter() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry.cap * 3))
        self.sleep(delay)

    def send(
        self, method: str, url: str, *, params: Mapping[str, str] | None = None, json: object = None
    ) -> httpx.Response:
        """One logical request with budget, auth, 429 waits and retries; returns the 2xx response."""
        idempotent = method in ("GET", "PUT", "DELETE", "HEAD")
        content = None if json is None else encode(json)
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        label = self._label(url)
        where = f"{method} {label}"
        deadline = self.limiter.deadline()
        attempt = 1
        while True:
            self.limiter.acquire(deadline=deadline)
            self._count(method, label)
            try:
                response = self.http.request(
                    method, url, params=params, content=content, headers=headers,
                    auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
                )  # fmt: skip
            except httpx.TransportError as exc:
                if (idempotent or isinstance(exc, _NOT_SENT)) and attempt < self.retry.attempts:
                    log.warning(
                        "exact %s: %s, retrying (%d/%d)", where, type(exc).__name__, attempt, self.retry.attempts
                    )
                    self._backoff(attempt, None)
                    attempt += 1
                    continue
                raise ExactUnavailable(f"{where}: {type(exc).__name__} after {attempt} attempt(s)") from None
            if response.request.extensions.get("koppel_exact_auth_retry"):
                self._count(method, label)
            self.last_headers = response.headers
            self.limiter.observe(response.headers)
            status = response.status_code
            if status == 429:
                log.info("exact %s: 429 rate limited, waiting for the reset", where)
                self.limiter.throttled(response.headers, deadline=deadline)
                continue
            if status >= 500 or status == 408:
                if idempotent and attempt < self.retry.attempts:
                    log.warning("exact %s: %d, retrying (%d/%d)", where, status, attempt, self.retry.attempts)
                    self._backoff(attempt, _retry_after(response))
                    attempt += 1
                    continue
                raise ExactUnavailable(f"{where}: Exact answered {status}{_detail(response)}", status=status)
            if status == 401:
                raise ExactAuthError(
                    f"{where}: Exact refused the access token (401) even after a refresh; "
                    "run the Exact Online authorisation again"
                )
            if status == 404:
                raise ExactNotFound(f"{where}: not found (404){_detail(response)}", status=404, code=_code(response))
            if status >= 400:
                raise ExactRequestError(
                    f"{where}: Exact answered {status}{_detail(response)}", status=status, code=_code(response)
                )
            return response

    def request(self, method: str, url: str, *, params: Mapping[str, str] | None = None, json: object = None) -> Any:
        """`send`, then the decoded JSON body (None for the empty body of PUT/DELETE)."""
        response = self.send(method, url, params=params, json=json)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise ExactResponseError(f"{method} {self._label(url)}: response is not JSON") from None

    def iter_pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[list[Record]]:
        """Every page of a list, following `__next` (same host only)."""
        url: str | None = self.url(path)
        query: Mapping[str, str] | None = params
        while url is not None:
            body = self.request("GET", url, params=query)
            records, following = unwrap_page(body, self.tz)
            yield records
            if following is not None:
                parts = urlsplit(following)
                if (parts.scheme, parts.netloc) != self._origin:
                    raise ExactResponseError(f"GET {path}: __next points at another host; not followed")
            url, query = following, None

    # -- generic entity access ---------------------------------------------------------------------

    def query(
        self,
        endpoint: type[Endpoint],
        *,
        filter: str | None = None,
        select: Iterable[str] | None = None,
        top: int | None = None,
        expand: str | None = None,
    ) -> list[Record]:
        params: dict[str, str] = {}
        if filter:
            params["$filter"] = filter
        fields = tuple(select) if select is not None else endpoint.select
        if fields:
            params["$select"] = ",".join(fields)
        if top is not None:
            params["$top"] = str(top)
        if expand:
            params["$expand"] = expand
        out: list[Record] = []
        for page in self.iter_pages(endpoint.path, params):
            out.extend(page)
            if top is not None and len(out) >= top:
                return out[:top]
        return out

    def first(
        self,
        endpoint: type[Endpoint],
        *,
        filter: str,
        select: Iterable[str] | None = None,
    ) -> Record | None:
        found = self.query(endpoint, filter=filter, select=select, top=1)
        return found[0] if found else None

    def get(self, endpoint: type[Endpoint], key: str, *, select: Iterable[str] | None = None) -> Record:
        fields = tuple(select) if select is not None else endpoint.select
        params = {"$select": ",".join(fields)} if fields else None
        data = unwrap(self.request("GET", self.url(key_path(endpoint.path, key)), params=params), self.tz)
        if isinstance(data, list):
            if not data:
                raise ExactNotFound(f"GET {endpoint.path}: not found", status=404)
            return data[0]
        return data

    def create(self, endpoint: type[Endpoint], payload: Mapping[str, Any]) -> Record:
        _check_required(endpoint, payload)
        data = unwrap(self.request("POST", self.url(endpoint.path), json=dict(payload)), self.tz)
        if not isinstance(data, dict):
            raise ExactResponseError(f"POST {endpoint.path}: Exact did not return the created entity")
        return data

    def update(self, endpoint: type[Endpoint], key: str, payload: Mapping[str, Any]) -> None:
        self.request("PUT", self.url(key_path(endpoint.path, key)), json=dict(payload))

    def delete(self, endpoint: type[Endpoint], key: str) -> None:
        self.request("DELETE", self.url(key_path(endpoint.path, key)))

    # -- what the order flow needs -----------------------------------------------------------------

    def find_account_by_email(self, email: str) -> Record | None:
        """The first account with this e-mail address (Exact does not enforce unique e-mails)."""
        return self.first(Accounts, filter=eq("Email", email.strip()))

    def create_account(self, fields: Mapping[str, Any]) -> Record:
        return self.create(Accounts, fields)

    def update_account(self, account_id: str, fields: Mapping[str, Any]) -> None:
        self.update(Accounts, account_id, fields)

    def create_contact(self, fields: Mapping[str, Any]) -> Record:
        return self.create(Contacts, fields)

    def find_item_ids_by_codes(self, codes: Iterable[str]) -> dict[str, str]:
        """{code: item ID} for the codes that exist; one request per `item_chunk` codes (an `or` filter).

        Codes match case-insensitively; the keys are the codes as asked. Missing codes are absent.
        """
        wanted: dict[str, list[str]] = {}
        for code in codes:
            text = str(code).strip()
            if text and text not in wanted.get(text.casefold(), []):
                wanted.setdefault(text.casefold(), []).append(text)
        found: dict[str, str] = {}
        distinct = [asked[0] for asked in wanted.values()]
        for start in range(0, len(distinct), self.item_chunk):
            params = {"$filter": any_of("Code", distinct[start : start + self.item_chunk]), "$select": "ID,Code"}
            for page in self.iter_pages(Items.path, params):
                for record in page:
                    for asked in wanted.get(str(record.get("Code", "")).strip().casefold(), []):
                        found.setdefault(asked, str(record["ID"]))
        return found

    def find_sales_order_by_your_ref(self, your_ref: str) -> Record | None:
        return self.first(SalesOrders, filter=eq("YourRef", your_ref))

    def find_sales_invoice_by_your_ref(self, your_ref: str) -> Record | None:
        return self.first(SalesInvoices, filter=eq("YourRef", your_ref))

    def find_sales_entry_by_your_ref(self, your_ref: str) -> Record | None:
        return self.first(SalesEntries, filter=eq("YourRef", your_ref))

    def create_sales_order(self, payload: Mapping[str, Any]) -> Record:
        return self.create(SalesOrders, payload)

    def create_sales_invoice(self, payload: Mapping[str, Any], *, direct: bool = False) -> Record:
        """A sales invoice (Type 8020), or with `direct=True` a direct sales invoice (Type 8023, needs Warehouse)."""
        body = dict(payload)
        if direct:
            body["Type"] = DIRECT_SALES_INVOICE
            if not body.get("Warehouse"):
                raise ExactPayloadError("salesinvoice/SalesInvoices: a direct sales invoice needs a Warehouse")
        return self.create(SalesInvoices, body)

    def create_sales_entry(self, payload: Mapping[str, Any]) -> Record:
        return self.create(SalesEntries, payload)

    def list_vat_codes(self) -> list[Record]:
        return self.query(VATCodes)

    def list_payment_conditions(self) -> list[Record]:
        return self.query(PaymentConditions)


def _check_required(endpoint: type[Endpoint], payload: Mapping[str, Any]) -> None:
    missing = [name for name in endpoint.required if payload.get(name) in (None, "")]
    if endpoint.lines is not None:
        lines = payload.get(endpoint.lines)
        if not isinstance(lines, list) or not lines:
            missing.append(endpoint.lines)
        else:
            for number, line in enumerate(lines, start=1):
                gaps = [n for n in endpoint.line_required if not isinstance(line, Mapping) or line.get(n) in (None, "")]
                missing += [f"{endpoint.lines}[{number}].{n}" for n in gaps]
    if missing:
        raise ExactPayloadError(f"{endpoint.path}: missing required field(s) {', '.join(missing)}")


def _decoded(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: httpx.Response) -> str:
    parsed = error_text(_decoded(response))
    if parsed is None:
        return ""
    text = " ".join(parsed[1].split())
    return f": {text[:300]}" if text else ""


def _code(response: httpx.Response) -> str:
    parsed = error_text(_decoded(response))
    return parsed[0] if parsed else ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
