"""Exceptions of the WooCommerce connector, drawn once.

Every class is both a `WooCommerceError` and one of Koppel's generic errors (gateway/errors.py), so a
worker or a flow decides "retry later" or "fail now", "not found" or "connect again" with one
`isinstance` check that names no system. The HTTP kit (connectors/http.py) raises the ones marked *.

    KoppelError
    ├── TransientError                          retry the job later (jittered backoff)
    │   └── WooCommerceTransientError           `.status`; `.retry_after`: seconds the shop asked for, if it said
    │       ├── WooCommerceUnavailable *        (also an Unavailable) 5xx, timeouts, connection errors once the
    │       │                                   client's retries are spent; a POST that may have run is never
    │       │                                   retried in place
    │       └── RateLimited *                   (also gateway's RateLimited) 429 after the retries, or a
    │                                           Retry-After longer than the client may block
    └── PermanentError                          retrying cannot help: the job fails with this message
        └── WooCommercePermanentError
            ├── WooCommerceRequestError *       (also a Rejected) 4xx other than 429, or a redirect: `.status`,
            │   │                               WooCommerce's `.code` and `.message`
            │   ├── WooCommerceAuthError *      (also an AuthFailed) 401/403: wrong keys, or a read-only key
            │   │                               asked to write
            │   ├── WooCommerceNotFound *       (also a NotFound) 404: unknown id
            │   │                               (`woocommerce_rest_shop_order_invalid_id`, …)
            │   └── SkuTaken *                  (also a Taken) 400 `product_invalid_sku`: a product or
            │                                   variation holds the SKU already (or it is not a valid SKU)
            ├── SkuConflict                     the SKU belongs to another product or variation than the upsert
            │                                   targets
            ├── WooCommerceResponseError *      (also a BadResponse) a 2xx body that is not the JSON the REST
            │                                   API promises
            └── WooCommerceConfigError          a base URL the client refuses (HTTP Basic over plain HTTP to a
                                                host that is not loopback)

Messages name the method, the API path (no query string), the status and WooCommerce's own code and
message; never the consumer key or secret, never request bodies.
"""

from __future__ import annotations

from gateway.errors import (
    AuthFailed,
    BadResponse,
    KoppelError,
    NotFound,
    PermanentError,
    Rejected,
    Taken,
    TransientError,
    Unavailable,
)
from gateway.errors import RateLimited as RateLimitedError


class WooCommerceError(KoppelError):
    """Base of every error the WooCommerce connector raises."""


class WooCommerceTransientError(WooCommerceError, TransientError):
    """A failure that may pass; its subclasses carry `.status` and `.retry_after` (the wait the shop asked for)."""


class WooCommercePermanentError(WooCommerceError, PermanentError):
    """A failure retrying cannot fix."""


class WooCommerceUnavailable(WooCommerceTransientError, Unavailable):
    """The shop answered 5xx, timed out or could not be reached, after the client's own retries."""


class RateLimited(WooCommerceTransientError, RateLimitedError):
    """429 (a host's or plugin's limiter; WooCommerce core has none on the REST API)."""


class WooCommerceRequestError(WooCommercePermanentError, Rejected):
    """WooCommerce refused the request: `{"code", "message", "data": {"status"}}` as `.code`, `.message`."""



class WooCommerceAuthError(WooCommerceRequestError, AuthFailed):
    """401/403: the consumer key or secret is wrong, revoked, or lacks write permission."""


class WooCommerceNotFound(WooCommerceRequestError, NotFound):
    """404: no resource with that id, or no such route."""


class SkuTaken(WooCommerceRequestError, Taken):
    """400 `product_invalid_sku` ("Invalid or duplicated SKU."): a create (or update) whose SKU another product
    or variation holds already."""


class SkuConflict(WooCommercePermanentError):
    """An upsert found its SKU on a different product or variation than the one it was told to write."""


class WooCommerceResponseError(WooCommercePermanentError, BadResponse):
    """A successful response whose body is not the JSON the REST API promises."""


class WooCommerceConfigError(WooCommercePermanentError):
    """The client was configured with a base URL it will not send credentials to."""


__all__ = [
    "RateLimited",
    "SkuConflict",
    "SkuTaken",
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
