"""The WooCommerce REST transport: HTTP Basic, retries, error mapping, JSON and paging.

`RestClient` is the plumbing under `WooCommerceClient` (client.py): one logical request goes HTTP Basic
with the consumer key and secret → 429 and 5xx retried with jittered exponential backoff (Retry-After
honoured up to `Retry.max_wait`) → 3xx/4xx turned into a permanent error carrying WooCommerce's `code`
and `message` → JSON decoded. Errors are split retryable/permanent (see errors.py for the tree).

Writes are not blindly retried: a POST that timed out or got a 5xx may have been executed, so it
raises WooCommerceUnavailable and the job retries from the top, where the lookup on a stable key
(SKU, e-mail) turns the replay into an update. A POST is retried in place only when it certainly
was not processed: connection refused, or 429. 501 is WooCommerce's "not supported" (e.g. trashing a
webhook) and permanent.

`calls` counts HTTP requests made (retries included), so a worker can report API calls per record.
Credentials live only in an `httpx.BasicAuth`; no log line or message carries them, nor a query string.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors.woocommerce.errors import (
    RateLimited,
    WooCommerceAuthError,
    WooCommerceConfigError,
    WooCommerceNotFound,
    WooCommerceRequestError,
    WooCommerceResponseError,
    WooCommerceUnavailable,
)

log = logging.getLogger("connectors.woocommerce")

Record = dict[str, Any]
DateLike = datetime | str

API_PATH = "/wp-json/wc/v3"
MAX_PER_PAGE = 100
BATCH_LIMIT = 100

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_HEADERS = {"Accept": "application/json"}
_TAG = re.compile(r"<[^>]*>")
_ID_SEGMENT = re.compile(r"(?<=/)\d+(?=/|$)")


@dataclass(frozen=True)
class Retry:
    """`attempts` tries in all; delays base·2^n capped at `cap`, jittered to 50-100 %; a Retry-After up to
    `max_wait` s is waited out in place, a longer one is raised (`.retry_after`) for the job to reschedule."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 10.0
    max_wait: float = 30.0


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


def _params(values: Mapping[str, object]) -> dict[str, str]:
    return {key: _query_value(value) for key, value in values.items() if value is not None}


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """WooCommerce's `{"code", "message", "data"}`; HTML in messages (some carry links) is stripped."""
    try:
        body = json.loads(response.content.lstrip(b"\xef\xbb\xbf \t\r\n"))
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    code = str(body.get("code") or "")[:100]
    message = " ".join(_TAG.sub("", str(body.get("message") or "")).split())[:300]
    return code, message


def _label(path: str) -> str:
    return _ID_SEGMENT.sub("{id}", "/" + path.strip("/")).lstrip("/")


class RestClient:
    """Requests to `{base_url}/wp-json/wc/v3` for one shop; see WooCommerceClient for the resources."""

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
        self.api_root = self.base_url + API_PATH
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout)
        self._auth = httpx.BasicAuth(consumer_key, consumer_secret)
        self.retry = retry or Retry()
        self.sleep = sleep
        self.jitter = jitter
        self.clock = clock
        self.calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()
        self._count_lock = threading.Lock()

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

    # -- plumbing ------------------------------------------------------------------------------

    def _count(self, method: str, label: str) -> None:
        with self._count_lock:
            self.calls += 1
            self.calls_by_endpoint[f"{method} {label}"] += 1

    def _delay(self, attempt: int) -> float:
        return float(min(self.retry.cap, self.retry.base * 2 ** (attempt - 1)) * (0.5 + self.jitter() / 2))

    def send(
        self, method: str, path: str, *, params: Mapping[str, object] | None = None, json: object = None
    ) -> httpx.Response:
        """One logical request (path relative to `/wp-json/wc/v3`) with retries; returns the 2xx response."""
        url = f"{self.api_root}/{path.strip('/')}"
        label = _label(path)
        where = f"{method} {label}"
        query = _params(params or {})
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        attempt = 1
        while True:
            self._count(method, label)
            try:
                response = self.http.request(
                    method, url, params=query, json=json, headers=_HEADERS, auth=self._auth, follow_redirects=False
                )
            except httpx.TransportError as exc:
                if (idempotent or isinstance(exc, _NOT_SENT)) and attempt < self.retry.attempts:
                    log.warning("woocommerce %s: %s, retrying (%d/%d)", where, type(exc).__name__, attempt,
                                self.retry.attempts)  # fmt: skip
                    self.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise WooCommerceUnavailable(f"{where}: {type(exc).__name__} after {attempt} attempt(s)") from None
            status = response.status_code
            if status == 429 or (status >= 500 and status != 501):
                retry_after = _retry_after(response.headers.get("retry-after"), self.clock())
                may_retry = (status == 429 or idempotent) and attempt < self.retry.attempts
                if may_retry and (retry_after is None or retry_after <= self.retry.max_wait):
                    delay = max(self._delay(attempt), retry_after or 0.0)
                    log.warning("woocommerce %s: %d, retrying in %.1fs (%d/%d)", where, status, delay, attempt,
                                self.retry.attempts)  # fmt: skip
                    self.sleep(delay)
                    attempt += 1
                    continue
                error = RateLimited if status == 429 else WooCommerceUnavailable
                code, message = _error_fields(response)
                detail = f" {code}: {message}" if code or message else ""
                raise error(f"{where}: WooCommerce answered {status}{detail} after {attempt} attempt(s)",
                            status=status, retry_after=retry_after)  # fmt: skip
            if 300 <= status < 400:
                location = urlsplit(response.headers.get("location", ""))
                target = f"{location.scheme}://{location.netloc}{location.path}" if location.netloc else "elsewhere"
                raise WooCommerceRequestError(
                    f"{where}: redirected ({status}) to {target}; set base_url to the shop's final address",
                    status=status,
                )
            if status >= 400:
                code, message = _error_fields(response)
                error_class = {401: WooCommerceAuthError, 403: WooCommerceAuthError, 404: WooCommerceNotFound}.get(
                    status, WooCommerceRequestError
                )
                text = f"{where}: WooCommerce answered {status} {code or '(no code)'}: {message or '(no message)'}"
                raise error_class(text, status=status, code=code, message=message)
            return response

    def request(
        self, method: str, path: str, *, params: Mapping[str, object] | None = None, json: object = None
    ) -> Any:
        """`send`, then the decoded JSON body (a stray UTF-8 BOM from a plugin is tolerated)."""
        response = self.send(method, path, params=params, json=json)
        return self._decode(response, f"{method} {_label(path)}")

    @staticmethod
    def _decode(response: httpx.Response, where: str) -> Any:
        try:
            return json.loads(response.content.lstrip(b"\xef\xbb\xbf \t\r\n"))
        except ValueError:
            raise WooCommerceResponseError(f"{where}: the response is not JSON") from None

    def _object(self, method: str, path: str, **kwargs: Any) -> Record:
        body = self.request(method, path, **kwargs)
        if not isinstance(body, dict):
            raise WooCommerceResponseError(f"{method} {_label(path)}: expected a JSON object")
        return body

    def pages(
        self, path: str, params: Mapping[str, object] | None = None, *, per_page: int = MAX_PER_PAGE
    ) -> Iterator[Page]:
        """Every page of a list, lazily: the next page is fetched only when the caller gets to it."""
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{MAX_PER_PAGE}")
        where = f"GET {_label(path)}"
        number = 1
        first_ids: list[Any] = []
        while True:
            response = self.send("GET", path, params={**(params or {}), "per_page": per_page, "page": number})
            items = self._decode(response, where)
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


__all__ = ["API_PATH", "BATCH_LIMIT", "MAX_PER_PAGE", "DateLike", "Page", "Record", "RestClient", "Retry", "gmt"]
