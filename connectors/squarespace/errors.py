"""Exceptions of the Squarespace connector, drawn once.

Every class is both a `SquarespaceError` and one of Koppel's generic errors (gateway/errors.py), so a
worker or a flow decides "retry later" or "fail now" with one `isinstance` check that names no system.
The HTTP kit (connectors/http.py) raises the ones marked *.

    KoppelError
    ├── TransientError
    │   └── SquarespaceTransientError           `.status`, `.retry_after`
    │       ├── SquarespaceUnavailable *        (also an Unavailable) 5xx, timeouts, connection errors
    │       └── SquarespaceRateLimited *        (also a RateLimited) 429 (300 requests a minute, then a
    │                                           minute's cool-down) after the client's retries
    └── PermanentError
        └── SquarespacePermanentError
            ├── SquarespaceRequestError *       (also a Rejected) 4xx other than 429: Squarespace's `.code`
            │   │                               (its error `type`, e.g. INVALID_REQUEST_ERROR) and `.message`
            │   ├── SquarespaceAuthError *      (also an AuthFailed) 401/403: a wrong, revoked or too weak key
            │   └── SquarespaceNotFound *       (also a NotFound) 404
            └── SquarespaceResponseError *      (also a BadResponse) a 2xx body that is not the JSON promised

Messages name the method, the API path (no query string), the status and Squarespace's own type and
message; never the API key, the OAuth token, a webhook secret or a request body.
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


class SquarespaceError(KoppelError):
    """Base of every error the Squarespace connector raises."""


class SquarespaceTransientError(SquarespaceError, TransientError):
    """A failure that may pass."""


class SquarespacePermanentError(SquarespaceError, PermanentError):
    """A failure retrying cannot fix."""


class SquarespaceUnavailable(SquarespaceTransientError, Unavailable):
    """Squarespace answered 5xx, timed out or could not be reached, after the client's own retries."""


class SquarespaceRateLimited(SquarespaceTransientError, RateLimited):
    """429: over the site's request budget."""


class SquarespaceRequestError(SquarespacePermanentError, Rejected):
    """Squarespace refused the request: `{"type", "subtype", "message", "details", "contextId"}`."""


class SquarespaceAuthError(SquarespaceRequestError, AuthFailed):
    """401/403: the API key or OAuth token is wrong, revoked, or lacks the permission asked for."""


class SquarespaceNotFound(SquarespaceRequestError, NotFound):
    """404: no record with that id, or no such route."""


class SquarespaceResponseError(SquarespacePermanentError, BadResponse):
    """A successful response whose body is not the JSON the API promises."""


__all__ = [
    "SquarespaceAuthError",
    "SquarespaceError",
    "SquarespaceNotFound",
    "SquarespacePermanentError",
    "SquarespaceRateLimited",
    "SquarespaceRequestError",
    "SquarespaceResponseError",
    "SquarespaceTransientError",
    "SquarespaceUnavailable",
]
