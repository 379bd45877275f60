"""Exceptions of the WooCommerce connector, drawn once.

Every class is both a `WooCommerceError` and one of Koppel's `TransientError` / `PermanentError`, so a
worker decides "retry later" or "fail now" with one `isinstance` check.

    KoppelError
    ├── TransientError                          retry the job later (jittered backoff)
    │   └── WooCommerceTransientError           `.retry_after`: seconds the shop asked for, if it said
    │       ├── WooCommerceUnavailable          5xx, timeouts, connection errors once the client's retries are
    │       │                                   spent; a POST that may have run is never retried in place
    │       └── RateLimited                     429 after the retries, or a Retry-After longer than the client
    │                                           may block
    └── PermanentError                          retrying cannot help: the job fails with this message
        └── WooCommercePermanentError
            ├── WooCommerceRequestError         4xx other than 429: `.status`, WooCommerce's `.code`, `.message`
            │   ├── WooCommerceAuthError        401/403: wrong keys, or a read-only key asked to write
            │   └── WooCommerceNotFound         404: unknown id (`woocommerce_rest_shop_order_invalid_id`, …)
            ├── SkuConflict                     the SKU belongs to another product or variation than the upsert
            │                                   targets
            ├── WooCommerceResponseError        a 2xx body that is not the JSON the REST API promises
            └── WooCommerceConfigError          a base URL the client refuses (HTTP Basic over plain HTTP to a
                                                host that is not loopback)

Messages name the method, the API path (no query string), the status and WooCommerce's own code and
message; never the consumer key or secret, never request bodies.
"""

from __future__ import annotations

from gateway.errors import KoppelError, PermanentError, TransientError


class WooCommerceError(KoppelError):
    """Base of every error the WooCommerce connector raises."""


class WooCommerceTransientError(WooCommerceError, TransientError):
    """A failure that may pass; `retry_after` is the wait the shop asked for (None when it did not say)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class WooCommercePermanentError(WooCommerceError, PermanentError):
    """A failure retrying cannot fix."""


class WooCommerceUnavailable(WooCommerceTransientError):
    """The shop answered 5xx, timed out or could not be reached, after the client's own retries."""


class RateLimited(WooCommerceTransientError):
    """429 (a host's or plugin's limiter; WooCommerce core has none on the REST API)."""


class WooCommerceRequestError(WooCommercePermanentError):
    """WooCommerce refused the request: `{"code", "message", "data": {"status"}}` as `.code`, `.message`."""

    def __init__(self, text: str, *, status: int, code: str = "", message: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.message = message


class WooCommerceAuthError(WooCommerceRequestError):
    """401/403: the consumer key or secret is wrong, revoked, or lacks write permission."""


class WooCommerceNotFound(WooCommerceRequestError):
    """404: no resource with that id, or no such route."""


class SkuConflict(WooCommercePermanentError):
    """An upsert found its SKU on a different product or variation than the one it was told to write."""


class WooCommerceResponseError(WooCommercePermanentError):
    """A successful response whose body is not the JSON the REST API promises."""


class WooCommerceConfigError(WooCommercePermanentError):
    """The client was configured with a base URL it will not send credentials to."""


__all__ = [
    "RateLimited",
    "SkuConflict",
    "WooCommerceAuthError",
    "WooCommerceConfigError",
    "WooCommerceError",
    "WooCommerceNotFound",
    "WooCommercePermanentError",
    "WooCommerceRequestError",
    "WooCommerceResponseError",
    "WooCommerceTransientError",
    "WooCommerceUnavailable",
]
