"""The HTTP kit: one client base for every connector — retries, 429, budgets, call counts, one error tree.

A connector's client subclasses `ApiClient` and says, in class attributes and a few small hooks, what is
particular to its system: its error classes (subclasses of gateway.errors' `Unavailable`, `RateLimited`,
`Rejected`, `NotFound`, `AuthFailed`, `BadResponse`), where the error code and message sit in an error
body (`error_fields`), how a URL is named in messages and counts (`label`), how a body is encoded
(`encode`). Everything else happens here, once. One logical request (`send`) goes:

    send(method, url)
      │ deadline = budget.deadline()                   once: how long this request may wait for budget
      ▼
    ┌▶ budget.acquire(deadline=…)                      one call slot; sleeps, or raises RateLimited
    │  count "METHOD label"                            every attempt is a call (and an auth flow's retry)
    │  http.request(…) ─ TransportError ─▶ idempotent, or certainly not sent (connect error, pool timeout),
    │    │                                 and attempts left? backoff ─────────────────────────────────────┐
    │    │                                 else Unavailable("… ReadTimeout after n attempt(s)")          │
    │    ▼                                                                                                │
    │  budget.observe(headers)                                                                            │
    │  429 ─ with a budget: budget.throttled(headers, deadline=…) ───────────────────────────────────────┤
    │      └ without: Retry-After ≤ max_wait and attempts left? wait max(backoff, Retry-After) ──────────┤
    │                 else RateLimited(.retry_after)                                                      │
    │  5xx, 408 ─ idempotent, attempts left, Retry-After ≤ max_wait? wait max(backoff, Retry-After) ──────┤
    │             else Unavailable(.status, .retry_after)                                                 │
    └─────────────────────────────────────────────────────────────────────────────────────────────────────┘
       3xx (but 304) → Rejected naming where it points (redirects are never followed: credentials stay put)
       auth_statuses (401) → AuthFailed · 404 → NotFound · other 4xx → Rejected(.status, .code)
       2xx, 304 → the response; `request` decodes its JSON (BOM tolerated, empty → None), else BadResponse

Requests that may have been processed — a POST or PATCH that timed out or got a 5xx — are never retried
in place: the error goes up, and the job retries from the top, where the flow's lookup on a stable key
keeps the replay from writing twice. Idempotent methods (GET, HEAD, PUT, DELETE) are retried, and so is
any request that certainly was not processed: the connection never opened, or the answer was 429.

One `httpx.Client` per worker process is passed in (it holds the connection pool); clients of this kit
are light and many. Messages name the method, the endpoint label (no query string), the status and the
system's own error text: never credentials, tokens or request bodies. A transport error's cause is
dropped (it holds the request, and with it the Authorization header); other causes are kept.
Clock, sleep and jitter are injectable for tests.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import httpx

from gateway import snapshots
from gateway.errors import (
    AuthFailed,
    BadResponse,
    KoppelError,
    NotFound,
    PermanentError,
    RateLimited,
    Rejected,
    Unavailable,
)

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
"""Methods retried in place after a timeout or a 5xx: doing them twice does what doing them once does."""

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors after which the request certainly did not reach the system."""

_KEY = re.compile(r"\([^)]*\)")
_ID_SEGMENT = re.compile(r"(?<=/)(?:\d+|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})(?=/|$)")
_BOM_AND_SPACE = b"\xef\xbb\xbf \t\r\n"


@dataclass(frozen=True)
class Retry:
    """`attempts` tries in all; delays base·2^n capped at `cap`, jittered to 50-100 %. A Retry-After up to
    `max_wait` s is waited out in place; a longer one is raised (`.retry_after`) for the job to reschedule."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 10.0
    max_wait: float = 30.0

    def delay(self, attempt: int, jitter: float) -> float:
        """The pause after failed attempt `attempt` (1-based); `jitter` in [0, 1]."""
        return float(min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + jitter / 2))


class Budget(Protocol):
    """A system's API budget, shared by every worker (connectors.exactonline.ratelimit.RateLimiter is one)."""

    def deadline(self) -> float:
        """The clock time after which a caller stops waiting for budget (taken once per logical request)."""
        ...

    def acquire(self, *, deadline: float | None = None) -> float:
        """Take one call slot, sleeping while none is free; RateLimited when none frees up by `deadline`."""
        ...

    def observe(self, headers: Mapping[str, str]) -> None:
        """Fold a response's rate-limit headers into the budget."""
        ...

    def throttled(self, headers: Mapping[str, str], *, deadline: float | None = None) -> None:
        """The system answered 429: mark the budget spent until its reset (or wait it out, within `deadline`)."""
        ...


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None when absent or
    unreadable. Never negative, never raises."""
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
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = when.timestamp() - now
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, wait) if math.isfinite(wait) else None


def read_json(content: bytes) -> Any:
    """JSON from a body, a stray UTF-8 BOM (some WordPress plugins print one) and whitespace tolerated;
    None when empty; ValueError when it is not JSON."""
    content = content.lstrip(_BOM_AND_SPACE)
    return json.loads(content) if content.strip() else None


def fold_ids(label: str) -> str:
    """An endpoint label with record ids folded out: `orders/7/notes` → `orders/{id}/notes`,
    `crm/Accounts(guid'…')` → `crm/Accounts` (OData keys dropped), GUID segments → `{id}`."""
    return _ID_SEGMENT.sub("{id}", "/" + _KEY.sub("", label).strip("/")).lstrip("/")


class ApiClient:
    """Requests to one system's API over a shared `httpx.Client` (see the module docstring for the flow).

    Subclasses set `system` (its name in messages), the error classes, and override the hooks they need.
    `calls` and `calls_by_endpoint` ("METHOD label", ids folded out) count every HTTP call, retries
    included, so a worker can report API calls per synced record; both are safe to read across threads.
    """

    system: ClassVar[str] = "the API"
    unavailable_error: ClassVar[type[Unavailable]] = Unavailable
    rate_limited_error: ClassVar[type[RateLimited]] = RateLimited
    rejected_error: ClassVar[type[Rejected]] = Rejected
    not_found_error: ClassVar[type[NotFound]] = NotFound
    auth_error: ClassVar[type[PermanentError]] = AuthFailed
    """Raised for `auth_statuses`; an `AuthFailed`, which may also be a `Rejected` (then built with status, code)."""
    bad_response_error: ClassVar[type[BadResponse]] = BadResponse
    auth_statuses: ClassVar[frozenset[int]] = frozenset({401})
    permanent_statuses: ClassVar[frozenset[int]] = frozenset()
    """5xx answers that mean "never" rather than "not now" (WooCommerce's 501 "not supported")."""
    auth_retry_extension: ClassVar[str | None] = None
    """A request extension the auth flow sets when it sent the request twice (refresh after 401): one call more."""
    code_in_messages: ClassVar[bool] = True
    auth_advice: ClassVar[str] = ""
    """Appended to an auth error's message: what an operator must do."""
    redirect_advice: ClassVar[str] = "redirects are not followed"

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_root: str,
        auth: httpx.Auth | None = None,
        retry: Retry | None = None,
        budget: Budget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.api_root = api_root.rstrip("/")
        self.auth = auth
        self.retry = retry or Retry()
        self.budget = budget
        self.sleep = sleep
        self.jitter = jitter
        self.clock = clock
        self.calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()
        self.last_headers: httpx.Headers | None = None
        """Headers of the last response (e.g. to fold a call made before a budget existed into it)."""
        self._count_lock = threading.Lock()
        root = urlsplit(self.api_root)
        self._origin = (root.scheme, root.netloc)
        self._root_path = root.path.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_root!r})"

    # -- hooks ---------------------------------------------------------------------------------------

    def label(self, url: str) -> str:
        """How `url` is named in messages: its path below `api_root`, without the query string."""
        path = urlsplit(url).path
        if path == self._root_path or path.startswith(self._root_path + "/"):
            path = path[len(self._root_path) :]
        return path.strip("/")

    def error_fields(self, response: httpx.Response) -> tuple[str, str]:
        """(code, message) the system put in an error body; ("", "") when it said nothing readable."""
        return "", ""

    def query_value(self, value: object) -> str:
        """A query value as the system takes it (default: `str()`); a None value leaves its key out."""
        return str(value)

    def encode(self, body: object) -> bytes:
        """A JSON request body; NaN and infinities are refused before sending."""
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    def rejection(
        self, error: type[PermanentError], text: str, *, status: int, code: str, message: str
    ) -> PermanentError:
        """The error for a refused request; override when the system's errors carry more of the body."""
        if issubclass(error, Rejected):
            return error(text, status=status, code=code)
        return error(text)

    # -- helpers for subclasses ------------------------------------------------------------------------

    def resolve(self, url: str) -> str:
        """An absolute URL as given; a path relative to `api_root`."""
        return url if urlsplit(url).scheme else f"{self.api_root}/{url.strip('/')}"

    def where(self, method: str, url: str) -> str:
        """`METHOD label`: how messages name a request."""
        return f"{method.upper()} {self.label(self.resolve(url))}"

    def same_origin(self, url: str) -> bool:
        """Whether `url` is on the API's own scheme and host (follow paging links only there)."""
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == self._origin

    # -- the request loop ------------------------------------------------------------------------------

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
        """One logical request with budget, auth, 429 waits and retries; returns the 2xx (or 304) response.
        `content` sends raw bytes (a picture) instead of `json`; set its Content-Type in `headers`."""
        method = method.upper()
        url = self.resolve(url)
        if content is None and json is not None:
            content = self.encode(json)
        sent_headers = {"Accept": "application/json", **(headers or {})}
        if content is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        query = None  # a query in `url` (a paging link) is kept; httpx would replace it with `params`
        if params is not None:
            query = {key: self.query_value(value) for key, value in params.items() if value is not None}
        label = self.label(url)
        where = f"{method} {label}"
        idempotent = method in IDEMPOTENT
        deadline = self.budget.deadline() if self.budget is not None else None
        attempt = 1
        while True:
            if self.budget is not None:
                self.budget.acquire(deadline=deadline)
            self._count(method, label)
            try:
                response = self.http.request(
                    method, url, params=query, content=content, headers=sent_headers, follow_redirects=False,
                    auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
                )  # fmt: skip
            except httpx.TransportError as exc:
                if (idempotent or isinstance(exc, NOT_SENT)) and attempt < self.retry.attempts:
                    self._backoff(where, type(exc).__name__, attempt, None)
                    attempt += 1
                    continue
                # The httpx error holds the request and its Authorization header: not kept as the cause.
                raise self.unavailable_error(f"{where}: {type(exc).__name__} after {attempt} attempt(s)") from None
            snapshots.note_request(self.system, method, label, response.status_code, content, response.content)
            if self.auth_retry_extension and response.request.extensions.get(self.auth_retry_extension):
                self._count(method, label)
            self.last_headers = response.headers
            if self.budget is not None:
                self.budget.observe(response.headers)
            status = response.status_code
            if status == 429 and self.budget is not None:
                log.info("%s %s: 429 rate limited, waiting for the budget's reset", self.system, where)
                self.budget.throttled(response.headers, deadline=deadline)
                continue
            transient = status == 429 or status == 408 or (status >= 500 and status not in self.permanent_statuses)
            if transient:
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
                may_retry = (status == 429 or idempotent) and attempt < self.retry.attempts
                if may_retry and (retry_after is None or retry_after <= self.retry.max_wait):
                    self._backoff(where, str(status), attempt, retry_after)
                    attempt += 1
                    continue
                text = f"{self._answered(where, response)[0]} after {attempt} attempt(s)"
                if status == 429:
                    raise self.rate_limited_error(text, retry_after=retry_after, status=status)
                raise self.unavailable_error(text, status=status, retry_after=retry_after)
            if 300 <= status < 400 and status != 304:
                text = f"{where}: redirected ({status}) to {_target(response)}; {self.redirect_advice}"
                raise self.rejection(self.rejected_error, text, status=status, code="", message="")
            if status >= 400:
                raise self._refused(response, where)
            return response

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, object] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """`send`, then the decoded JSON body (None for an empty body)."""
        response = self.send(method, url, params=params, json=json, headers=headers)
        return self.decode(response, self.where(method, url))

    def decode(self, response: httpx.Response, where: str) -> Any:
        """The JSON of a response (a stray UTF-8 BOM tolerated); None when empty; else BadResponse."""
        try:
            return read_json(response.content)
        except ValueError as exc:
            raise self.bad_response_error(f"{where}: the response is not JSON") from exc

    # -- plumbing ---------------------------------------------------------------------------------------

    def _count(self, method: str, label: str) -> None:
        with self._count_lock:
            self.calls += 1
            self.calls_by_endpoint[f"{method} {fold_ids(label)}"] += 1

    def _backoff(self, where: str, reason: str, attempt: int, retry_after: float | None) -> None:
        delay = max(self.retry.delay(attempt, self.jitter()), retry_after or 0.0)
        log.warning("%s %s: %s, retrying in %.1fs (%d/%d)", self.system, where, reason, delay, attempt,
                    self.retry.attempts)  # fmt: skip
        self.sleep(delay)

    def _answered(self, where: str, response: httpx.Response) -> tuple[str, str, str]:
        """("<where>: <system> answered <status> <code>: <message>", code, message)."""
        return self._said(where, response.status_code, *self.error_fields(response))

    def _said(self, where: str, status: int, code: str, message: str) -> tuple[str, str, str]:
        code, message = str(code)[:100], " ".join(str(message).split())[:300]
        text = f"{where}: {self.system} answered {status}"
        text += f" {code}" if code and self.code_in_messages else ""
        return text + (f": {message}" if message else ""), code, message

    def item_error(self, where: str, status: int, code: str, message: str) -> KoppelError:
        """The error for one request of a batch the system answered alone with `status` (`where` names it):
        the one that request sent on its own would have raised once the retries were spent."""
        text, code, message = self._said(where, status, code, message)
        if status == 429:
            return self.rate_limited_error(text, retry_after=None, status=status)
        if status == 408 or (status >= 500 and status not in self.permanent_statuses):
            return self.unavailable_error(text, status=status, retry_after=None)
        return self._refusal(status, text, code, message)

    def _refused(self, response: httpx.Response, where: str) -> PermanentError:
        text, code, message = self._answered(where, response)
        return self._refusal(response.status_code, text, code, message)

    def _refusal(self, status: int, text: str, code: str, message: str) -> PermanentError:
        error: type[PermanentError] = self.rejected_error
        if status in self.auth_statuses:
            error = self.auth_error
            text += f"; {self.auth_advice}" if self.auth_advice else ""
        elif status == 404:
            error = self.not_found_error
        return self.rejection(error, text, status=status, code=code, message=message)


def _target(response: httpx.Response) -> str:
    """Where a redirect points: scheme, host and path (never its query string)."""
    location = response.headers.get("Location")
    if not location:
        return "elsewhere"
    try:
        url = response.request.url.join(location)
    except httpx.InvalidURL:
        return "elsewhere"
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


__all__ = ["IDEMPOTENT", "NOT_SENT", "ApiClient", "Budget", "Retry", "fold_ids", "parse_retry_after", "read_json"]
