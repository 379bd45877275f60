"""Exceptions of the Winstore connector, drawn once.

Every class is both a `WinstoreError` and one of Koppel's generic errors (gateway/errors.py), so a
worker or a flow decides "retry later" or "fail now" with one `isinstance` check that names no system.
The HTTP kit (connectors/http.py) raises the ones marked *.

    KoppelError
    ├── TransientError
    │   └── WinstoreTransientError              `.status`, `.retry_after`
    │       ├── WinstoreUnavailable *           (also an Unavailable) 5xx, timeouts, connection errors after the
    │       │                                   client's retries; a POST that may have run is never retried in place
    │       └── WinstoreRateLimited *           (also a RateLimited) 429 after the retries
    └── PermanentError
        └── WinstorePermanentError
            ├── WinstoreRequestError *          (also a Rejected) a 4xx other than 429, a redirect, or a 2xx whose
            │   │                               body carries a failing status code (`.status`, `.code`, `.message`)
            │   ├── WinstoreAuthError *         (also an AuthFailed) 401/403: wrong user name or password
            │   └── WinstoreNotFound *          (also a NotFound) 404
            └── WinstoreResponseError *         (also a BadResponse) a body that is neither the XML nor the JSON
                                                its Content-Type announces, or XML with a DTD or entities

Messages name the method, the endpoint (no query string), the status and Winstore's own message; never
the credentials, never request bodies (an order document holds a customer's name and address).
"""

from __future__ import annotations

from gateway.errors import (
    AuthFailed,
    BadResponse,
    KoppelError,
    NotFound,
    PermanentError,
    RateLimited,
    Rejected,
    TransientError,
    Unavailable,
)


class WinstoreError(KoppelError):
    """Base of every error the Winstore connector raises."""


class WinstoreTransientError(WinstoreError, TransientError):
    """A failure that may pass."""


class WinstorePermanentError(WinstoreError, PermanentError):
    """A failure retrying cannot fix."""


class WinstoreUnavailable(WinstoreTransientError, Unavailable):
    """Winstore answered 5xx, timed out or could not be reached, after the client's own retries."""


class WinstoreRateLimited(WinstoreTransientError, RateLimited):
    """429: Winstore (or a proxy before it) asked Koppel to slow down."""


class WinstoreRequestError(WinstorePermanentError, Rejected):
    """Winstore refused the request; `.message` is its own text."""



class WinstoreAuthError(WinstoreRequestError, AuthFailed):
    """401/403: the user name or password is wrong, or the user may not use the web service."""


class WinstoreNotFound(WinstoreRequestError, NotFound):
    """404: no such record or route."""


class WinstoreResponseError(WinstorePermanentError, BadResponse):
    """A successful response whose body cannot be read."""


__all__ = [
    "WinstoreAuthError",
    "WinstoreError",
    "WinstoreNotFound",
    "WinstorePermanentError",
    "WinstoreRateLimited",
    "WinstoreRequestError",
    "WinstoreResponseError",
    "WinstoreTransientError",
    "WinstoreUnavailable",
]
