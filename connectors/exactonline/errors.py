"""Exceptions of the Exact Online connector, drawn once.

Every class is both an `ExactError` and one of Koppel's `TransientError` / `PermanentError`, so a
worker decides "retry later" or "fail now" with one `isinstance` check.

    KoppelError
    ├── TransientError                       retry the job later (jittered backoff)
    │   └── ExactTransientError
    │       ├── ExactUnavailable             5xx, timeouts, connection errors once the client's retries are spent
    │       ├── RateLimited                  budget gone for longer than the client may wait; `.retry_after` s
    │       └── TokenRefreshBusy             another process held the refresh lock too long, or Exact
    │                                        answered "Access token not expired" to a refresh after a 401
    └── PermanentError                       retrying cannot help: the job fails with this message
        └── ExactPermanentError
            ├── ExactRequestError            4xx from Exact (validation, 403, ...): `.status`, Exact's message
            │   └── ExactNotFound            404, e.g. an unknown GUID
            ├── ExactPayloadError            a POST lacks fields Exact requires; caught before sending,
            │                                because Exact blocks an app after ~10 errors/endpoint/hour
            ├── ExactAuthError               no stored tokens, refresh token rejected (invalid_grant), or still
            │                                401 after a refresh: an operator must run the OAuth set-up again
            ├── InvalidState                 OAuth `state` tampered with, expired or malformed
            └── ExactResponseError           a 2xx body that is not the OData shape we expect, or a `__next`
                                             link pointing at another host

Messages never contain tokens, client secrets, authorisation codes or query strings: they name the
method, the endpoint path, the status and Exact's own error text.
"""

from __future__ import annotations

from gateway.errors import KoppelError, PermanentError, TransientError


class ExactError(KoppelError):
    """Base of every error the Exact Online connector raises."""


class ExactTransientError(ExactError, TransientError):
    """A failure that may pass; the job should be retried later."""


class ExactPermanentError(ExactError, PermanentError):
    """A failure retrying cannot fix."""


class ExactUnavailable(ExactTransientError):
    """Exact answered 5xx, timed out or could not be reached, after the client's own retries."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(ExactTransientError):
    """The division's API budget is gone for longer than the client may block; retry after `retry_after` s."""

    def __init__(self, message: str, *, retry_after: float, window: str = "minutely") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.window = window


class TokenRefreshBusy(ExactTransientError):
    """The token refresh could not be done now (lock held elsewhere, or refused as too early)."""


class ExactRequestError(ExactPermanentError):
    """Exact refused the request (4xx). `message` is Exact's own text, never the request data."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ExactNotFound(ExactRequestError):
    """404: the entity (GUID) or the endpoint does not exist."""


class ExactPayloadError(ExactPermanentError):
    """A payload lacks fields Exact requires; found before sending (Exact rations errors too)."""


class ExactAuthError(ExactPermanentError):
    """Koppel holds no usable authorisation for this system: run the OAuth set-up again."""


class InvalidState(ExactPermanentError):
    """The OAuth `state` parameter is not one Koppel signed, or it is too old."""


class ExactResponseError(ExactPermanentError):
    """A successful response whose body is not what the OData API promises."""
