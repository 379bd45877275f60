"""ExactClient: the Exact Online REST API over one reusable `httpx.Client`, on the HTTP kit.

One `httpx.Client` per worker process (connection pool, timeouts); one light `ExactClient` per system
and division on top of it. The kit (connectors/http.py) runs each request: shared rate-limit slot
(ratelimit.py, the kit's budget) → bearer token (auth.py, refreshed once on 401) → response headers
folded back into the budget → 429 waited out → 5xx/timeouts of idempotent requests retried with jittered
exponential backoff → errors mapped onto Exact's classes (see errors.py for the tree). On top, this
module unwraps the OData envelope, parses `/Date(ms)/`, follows `__next` and checks payloads.

Writes are not blindly retried: a POST that timed out or got a 5xx may have been executed, so it
raises ExactUnavailable and the job retries from the top, where the flow's lookup on a stable key
(`find_sales_order_by_your_ref`, …) keeps the replay from creating a second document. A POST is
retried in place only when it certainly was not processed: connection refused, or 429.

`calls` counts HTTP calls made to Exact (including the retry after a token refresh), so a worker can
report Exact calls per synced order.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import tzinfo
from typing import Any

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
    RateLimited,
)
from connectors.exactonline.odata import (
    EXACT_TZ,
    Guid,
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
from connectors.http import ApiClient, Retry, read_json
from connectors.tokens import AUTH_RETRY


class ExactClient(ApiClient):
    """Exact Online for one division. Domain quirks:

    * Base `{base_url}/api/v1/{division}/`; the current division comes from `current/Me`.
    * Lists page by 60 (1 000 on sync/bulk endpoints); `__next` carries a `$skiptoken` and is followed
      as given — but only to the same host, so the bearer token never leaves for another one.
    * Rate limits are per app per division (60/min, 5 000/day): pass a RateLimiter shared through
      Redis; without one the client still waits out a 429 from its headers.
    * Exact blocks an app for a while after ~10 4xx errors per endpoint per hour: required fields are
      checked before POSTing (ExactPayloadError), and lookups use filters that cannot fail.
    """

    system = "Exact"
    unavailable_error = ExactUnavailable
    rate_limited_error = RateLimited
    rejected_error = ExactRequestError
    not_found_error = ExactNotFound
    auth_error = ExactAuthError
    bad_response_error = ExactResponseError
    auth_retry_extension = AUTH_RETRY
    code_in_messages = False
    auth_advice = "the access token was refused even after a refresh: run the Exact Online authorisation again"

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
        clock: Callable[[], float] = time.time,
        tz: tzinfo = EXACT_TZ,
        item_chunk: int = 20,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._limiter = limiter or RateLimiter.unlimited(clock=clock, sleep=sleep)
        super().__init__(
            http, api_root=f"{self.base_url}/api/v1", auth=auth, retry=retry, budget=self._limiter, sleep=sleep,
            jitter=jitter, clock=clock,
        )  # fmt: skip
        self._division = division
        self.tz = tz
        self.item_chunk = item_chunk

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
        client = cls(http, base_url=app.base_url, division=division, auth=auth, clock=clock, **options)
        if division is None:
            store.save_division(client.division)
        client.limiter = RateLimiter(conn, client.division, limits or Limits(), clock=clock, sleep=client.sleep,
                                     system_id=system_id)  # fmt: skip
        if client.last_headers is not None:
            client.limiter.observe(client.last_headers)  # the current/Me call spent budget too
        return client

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def limiter(self) -> RateLimiter:
        """The division's API budget: the kit's `budget`."""
        return self._limiter

    @limiter.setter
    def limiter(self, limiter: RateLimiter) -> None:
        self._limiter = self.budget = limiter

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

    def label(self, url: str) -> str:
        """The endpoint below `/api/v1/{division}/` (`crm/Accounts(guid'…')`), or below `/api/v1/`."""
        rest = super().label(url)
        head, _, tail = rest.partition("/")
        return tail if head.isdigit() else rest

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        """Exact's OData error `{"error": {"code", "message": {"lang", "value"}}}`."""
        try:
            parsed = error_text(read_json(response.content))
        except ValueError:
            return "", ""
        return parsed if parsed is not None else ("", "")

    def encode(self, body: object) -> bytes:
        """Exact's JSON: Decimals as their exact digits, dates in Exact's time zone, floats refused."""
        return encode(body)

    def iter_pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[list[Record]]:
        """Every page of a list, following `__next` (same host only)."""
        url: str | None = self.url(path)
        query: Mapping[str, str] | None = params
        while url is not None:
            body = self.request("GET", url, params=query)
            records, following = unwrap_page(body, self.tz)
            yield records
            if following is not None and not self.same_origin(following):
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
        """The created entity as Exact answers it, its own fields' dates parsed; what it embeds (a sales order's
        lines) is left as sent: a creation's answer is read for its ids, and parsing a whole order's lines was a
        measurable part of booking it (docs/benchmarks.md)."""
        _check_required(endpoint, payload)
        data = unwrap(self.request("POST", self.url(endpoint.path), json=dict(payload)), self.tz, nested=False)
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

    def item_sales_prices(self, item_ids: Iterable[str]) -> dict[str, Any]:
        """{item ID: StandardSalesPrice} from logistics/Items, one request per `item_chunk` ids (an `or`
        filter). The Sync and Bulk Items endpoints carry no sales price; the REST entity does."""
        distinct = list(dict.fromkeys(str(i) for i in item_ids if i))
        found: dict[str, Any] = {}
        for start in range(0, len(distinct), self.item_chunk):
            chunk = [Guid(i) for i in distinct[start : start + self.item_chunk]]
            params = {"$filter": any_of("ID", chunk), "$select": "ID,StandardSalesPrice"}
            for page in self.iter_pages(Items.path, params):
                for record in page:
                    found[str(record["ID"]).lower()] = record.get("StandardSalesPrice")
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
