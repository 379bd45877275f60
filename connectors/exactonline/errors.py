"""Exceptions of the Exact Online connector, drawn once.

Every class is both an `ExactError` and one of Koppel's generic errors (gateway/errors.py), so a worker
or a flow decides "retry later" or "fail now", "not found" or "connect again" with one `isinstance`
check that names no system. The HTTP kit (connectors/http.py) raises the ones marked *.

    KoppelError
    ├── TransientError                       retry the job later (jittered backoff)
    │   └── ExactTransientError
    │       ├── ExactUnavailable *           (also an Unavailable) 5xx, timeouts, connection errors once the
    │       │                                client's retries are spent: `.status`, `.retry_after`
    │       ├── RateLimited *                (also gateway's RateLimited) budget gone for longer than the
    │       │                                client may wait: `.retry_after` s, `.window` minutely/daily
    │       └── TokenRefreshBusy             another process held the refresh lock too long, or Exact
    │                                        answered "Access token not expired" to a refresh after a 401
    └── PermanentError                       retrying cannot help: the job fails with this message
        └── ExactPermanentError
            ├── ExactRequestError *          (also a Rejected) 4xx from Exact (validation, 403, a redirect):
            │   │                            `.status`, `.code`, Exact's message
            │   └── ExactNotFound *          (also a NotFound) 404, e.g. an unknown GUID
            ├── ExactPayloadError            a POST lacks fields Exact requires; caught before sending,
            │                                because Exact blocks an app after ~10 errors/endpoint/hour
            ├── ExactAuthError *             (also an AuthFailed) no stored tokens, refresh token rejected
            │                                (invalid_grant), or still 401 after a refresh: an operator must
            │                                run the OAuth set-up again
            ├── InvalidState                 OAuth `state` tampered with, expired or malformed
            └── ExactResponseError *         (also a BadResponse) a 2xx body that is not the OData shape we
                                             expect, or a `__next` link pointing at another host

Messages never contain tokens, client secrets, authorisation codes or query strings: they name the
method, the endpoint path, the status and Exact's own error text.
"""

from __future__ import annotations

from gateway.errors import (
    AuthFailed,
    BadResponse,
    KoppelError,
    NotFound,
    PermanentError,
    Rejected,
    TransientError,
    Unavailable,
)
from gateway.errors import RateLimited as RateLimitedError


class ExactError(KoppelError):
    """Base of every error the Exact Online connector raises."""


class ExactTransientError(ExactError, TransientError):
    """A failure that may pass; the job should be retried later."""


class ExactPermanentError(ExactError, PermanentError):
    """A failure retrying cannot fix."""


class ExactUnavailable(ExactTransientError, Unavailable):
    """Exact answered 5xx, timed out or could not be reached, after the client's own retries."""


class RateLimited(ExactTransientError, RateLimitedError):
    """The division's API budget is gone for longer than the client may block; retry after `retry_after` s."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = 429, window: str = "minutely"
    ) -> None:
        super().__init__(message, retry_after=retry_after, status=status)
        self.window = window


class TokenRefreshBusy(ExactTransientError):
    """The token refresh could not be done now (lock held elsewhere, or refused as too early)."""


class ExactRequestError(ExactPermanentError, Rejected):
    """Exact refused the request (4xx). The message carries Exact's own text, never the request data."""


class ExactNotFound(ExactRequestError, NotFound):
    """404: the entity (GUID) or the endpoint does not exist."""


class ExactPayloadError(ExactPermanentError):
    """A payload lacks fields Exact requires; found before sending (Exact rations errors too)."""


class ExactAuthError(ExactPermanentError, AuthFailed):
    """Koppel holds no usable authorisation for this system: run the OAuth set-up again."""


class InvalidState(ExactPermanentError):
    """The OAuth `state` parameter is not one Koppel signed, or it is too old."""


class ExactResponseError(ExactPermanentError, BadResponse):
    """A successful response whose body is not what the OData API promises."""
