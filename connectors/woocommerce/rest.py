"""The WooCommerce REST transport: HTTP Basic, error mapping, JSON and paging, on the HTTP kit.

`RestClient` is the plumbing under `WooCommerceClient` (client.py). The kit (connectors/http.py) runs
each request: HTTP Basic with the consumer key and secret → 429 and 5xx retried with jittered
exponential backoff (Retry-After honoured up to `Retry.max_wait`) → 3xx/4xx turned into a permanent
error carrying WooCommerce's `code` and `message` → JSON decoded, a plugin's stray BOM tolerated.
Errors are split retryable/permanent (see errors.py for the tree).

Writes are not blindly retried: a POST that timed out or got a 5xx may have been executed, so it
raises WooCommerceUnavailable and the job retries from the top, where the lookup on a stable key
(SKU, e-mail) turns the replay into an update. A POST is retried in place only when it certainly
was not processed: connection refused, or 429. 501 is WooCommerce's "not supported" (e.g. trashing a
webhook) and permanent.

`calls` counts HTTP requests made (retries included), so a worker can report API calls per record.
Credentials live only in an `httpx.BasicAuth`; no log line or message carries them, nor a query string.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.http import ApiClient, Retry, fold_ids, read_json
from connectors.woocommerce.errors import (
    RateLimited,
    SkuTaken,
    WooCommerceAuthError,
    WooCommerceConfigError,
    WooCommerceNotFound,
    WooCommerceRequestError,
    WooCommerceResponseError,
    WooCommerceUnavailable,
)
from gateway.errors import PermanentError

Record = dict[str, Any]
DateLike = datetime | str

API_PATH = "/wp-json/wc/v3"
MAX_PER_PAGE = 100
BATCH_LIMIT = 100
SKU_TAKEN = "product_invalid_sku"
"""WooCommerce's code for a SKU another product or variation holds ("Invalid or duplicated SKU.")."""

_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class Page:
    """One page of a list and what the paging headers said (None when a header was missing)."""

    items: list[Record]
    number: int
    total: int | None
    total_pages: int | None


def gmt(value: DateLike) -> str:
    """A date as WooCommerce takes it with `dates_are_gmt=true`: UTC, no offset. Naive datetimes are UTC."""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def untagged(text: str) -> str:
    """WooCommerce's message without its HTML (some carry links)."""
    return _TAG.sub("", text)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return gmt(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_query_value(item) for item in value)
    return str(value)


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


class RestClient(ApiClient):
    """Requests to `{base_url}/wp-json/wc/v3` for one shop; see WooCommerceClient for the resources."""

    system = "WooCommerce"
    unavailable_error = WooCommerceUnavailable
    rate_limited_error = RateLimited
    rejected_error = WooCommerceRequestError
    not_found_error = WooCommerceNotFound
    auth_error = WooCommerceAuthError
    bad_response_error = WooCommerceResponseError
    auth_statuses = frozenset({401, 403})
    permanent_statuses = frozenset({501})
    redirect_advice = "set base_url to the shop's final address"
    auth_advice = ("check the system's consumer key and secret; writing (webhooks, orders, stock) needs a key with "
                   "Read/Write permission (WooCommerce → Settings → Advanced → REST API)")  # fmt: skip

    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WooCommerceConfigError("WooCommerce base_url must be an absolute http(s) URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise WooCommerceConfigError("WooCommerce base_url must not carry credentials, a query or a fragment")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise WooCommerceConfigError(
                f"WooCommerce base_url {parts.scheme}://{parts.netloc}: HTTP Basic credentials go over HTTPS only "
                "(plain HTTP is allowed to loopback, for the sandbox)"
            )
        if not consumer_key or not consumer_secret:
            raise WooCommerceConfigError("WooCommerce consumer key and secret are required")
        self.base_url = base_url.strip().rstrip("/")
        self._owns_http = http is None
        super().__init__(
            http if http is not None else httpx.Client(timeout=timeout), api_root=self.base_url + API_PATH,
            auth=httpx.BasicAuth(consumer_key, consumer_secret), retry=retry, sleep=sleep, jitter=jitter, clock=clock,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def close(self) -> None:
        """Close the httpx.Client if this client created it (an injected one belongs to the caller)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the kit's hooks -------------------------------------------------------------------------

    def label(self, url: str) -> str:
        """The path below `/wp-json/wc/v3`, ids folded out (`orders/{id}/notes`), also in messages."""
        return fold_ids(super().label(url))

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        """WooCommerce's `{"code", "message", "data"}`; HTML in messages (some carry links) is stripped."""
        try:
            body = read_json(response.content)
        except ValueError:
            return "", ""
        if not isinstance(body, dict):
            return "", ""
        return str(body.get("code") or ""), untagged(str(body.get("message") or ""))

    def rejection(
        self, error: type[PermanentError], text: str, *, status: int, code: str, message: str
    ) -> PermanentError:
        """WooCommerce's errors carry its `message` too; a taken SKU (`product_invalid_sku`) is a `SkuTaken`."""
        if error is WooCommerceRequestError and code == SKU_TAKEN:
            error = SkuTaken
        if issubclass(error, WooCommerceRequestError):
            return error(text, status=status, code=code, message=message)
        return super().rejection(error, text, status=status, code=code, message=message)

    def query_value(self, value: object) -> str:
        """Booleans as true/false, datetimes as UTC (`gmt`), lists comma-joined."""
        return _query_value(value)

    def _object(self, method: str, path: str, **kwargs: Any) -> Record:
        body = self.request(method, path, **kwargs)
        if not isinstance(body, dict):
            raise WooCommerceResponseError(f"{self.where(method, path)}: expected a JSON object")
        return body

    def pages(
        self, path: str, params: Mapping[str, object] | None = None, *, per_page: int = MAX_PER_PAGE
    ) -> Iterator[Page]:
        """Every page of a list, lazily: the next page is fetched only when the caller gets to it."""
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{MAX_PER_PAGE}")
        where = self.where("GET", path)
        number = 1
        first_ids: list[Any] = []
        while True:
            response = self.send("GET", path, params={**(params or {}), "per_page": per_page, "page": number})
            items = self.decode(response, where)
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise WooCommerceResponseError(f"{where}: expected a JSON array of objects")
            ids = [item.get("id") for item in items]
            if number > 1 and ids and ids == first_ids:
                raise WooCommerceResponseError(f"{where}: page {number} repeats page 1; the server ignores `page`")
            first_ids = first_ids or ids
            total_pages = _int_header(response, "X-WP-TotalPages")
            yield Page(items, number, _int_header(response, "X-WP-Total"), total_pages)
            last = number >= total_pages if total_pages is not None else len(items) < per_page
            if last or not items:
                return
            number += 1

    def iterate(
        self, path: str, params: Mapping[str, object] | None = None, *, per_page: int = MAX_PER_PAGE
    ) -> Iterator[Record]:
        """Every record of a list, lazily, page after page."""
        for page in self.pages(path, params, per_page=per_page):
            yield from page.items

    def batch(
        self,
        path: str,
        *,
        create: Iterable[Mapping[str, Any]] = (),
        update: Iterable[Mapping[str, Any]] = (),
        delete: Iterable[int] = (),
    ) -> Record:
        """`POST {path}/batch` (e.g. "products", "products/12/variations"); ≤ 100 items in all.

        The answer holds per-item results; a failed item is `{"id", "error": {"code", "message", "data"}}`,
        not an HTTP error — check each.
        """
        body: dict[str, list[Any]] = {"create": [dict(r) for r in create], "update": [dict(r) for r in update],
                                      "delete": list(delete)}  # fmt: skip
        if sum(len(items) for items in body.values()) > BATCH_LIMIT:
            raise ValueError(f"a WooCommerce batch takes at most {BATCH_LIMIT} items")
        return self._object("POST", f"{path.strip('/')}/batch", json={k: v for k, v in body.items() if v})


__all__ = ["API_PATH", "BATCH_LIMIT", "MAX_PER_PAGE", "DateLike", "Page", "Record", "RestClient", "Retry", "gmt",
           "untagged"]
