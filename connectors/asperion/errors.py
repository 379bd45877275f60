"""Exceptions of the Asperion connector, drawn once.

Every class is both an `AsperionError` and one of Koppel's generic errors (gateway/errors.py), so flows and
the worker decide with one `isinstance` check that names no system. The HTTP kit raises the ones marked *.

    KoppelError
    ├── TransientError
    │   └── AsperionTransientError
    │       ├── AsperionUnavailable *     (an Unavailable) 5xx, 408, timeouts after the kit's retries;
    │       │                             the identity server unreachable
    │       └── AsperionRateLimited *     (a RateLimited) 429 after the retries
    └── PermanentError
        └── AsperionPermanentError
            ├── AsperionRequestError *    (a Rejected) 4xx: `.status`, the problem's `.code` (its title)
            │   │                         and `.message` (its detail and field errors)
            │   └── AsperionNotFound *    (a NotFound) 404
            ├── AsperionAuthError *       (an AuthFailed) 401/403, no tokens stored, a refused grant:
            │                             run `koppel connect <system>` again
            └── AsperionResponseError *   (a BadResponse) a 2xx body that is not what the API promises

Messages name the method, the endpoint, the status and Asperion's own text; never tokens or secrets.
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


class AsperionError(KoppelError):
    """Base of every error the Asperion connector raises."""


class AsperionTransientError(AsperionError, TransientError):
    """A failure that may pass; the job is retried later."""


class AsperionPermanentError(AsperionError, PermanentError):
    """A failure retrying cannot fix."""


class AsperionUnavailable(AsperionTransientError, Unavailable):
    """Asperion answered 5xx or 408, timed out or could not be reached, after the kit's retries."""


class AsperionRateLimited(AsperionTransientError, RateLimited):
    """429: Asperion asked Koppel to slow down for longer than a request may wait."""


class AsperionRequestError(AsperionPermanentError, Rejected):
    """Asperion refused the request (a problem-details body: `.code` its title, `.message` its detail)."""


class AsperionNotFound(AsperionRequestError, NotFound):
    """404: no record with that id, or no such route."""


class AsperionAuthError(AsperionPermanentError, AuthFailed):
    """Asperion refused Koppel's token or its access to the administration (tenant), the identity server
    refused a grant, or no authorisation is stored."""


class AsperionResponseError(AsperionPermanentError, BadResponse):
    """A successful response whose body is not what the API promises."""


__all__ = [
    "AsperionAuthError",
    "AsperionError",
    "AsperionNotFound",
    "AsperionPermanentError",
    "AsperionRateLimited",
    "AsperionRequestError",
    "AsperionResponseError",
    "AsperionTransientError",
    "AsperionUnavailable",
]
