"""Exceptions of the Business Central connector, drawn once.

Every class is both a `BusinessCentralError` and one of Koppel's generic errors (gateway/errors.py), so a
worker or a flow decides "retry later" or "fail now", "not found" or "connect again" with one `isinstance`
check that names no system. The HTTP kit (connectors/http.py) raises the ones marked *.

    KoppelError
    ├── TransientError
    │   └── BusinessCentralTransientError
    │       ├── BusinessCentralUnavailable *   (also an Unavailable) 5xx, 408, timeouts once the kit's retries
    │       │                                  are spent: `.status`, `.retry_after`
    │       └── RateLimited *                  (also gateway's RateLimited) 429 after the retries
    └── PermanentError
        └── BusinessCentralPermanentError
            ├── BusinessCentralRequestError *  (also a Rejected) 4xx: `.status`, BC's `.code` (`BadRequest`,
            │   │                              `Internal_RecordNotFound`, …) and `.message`
            │   ├── BusinessCentralNotFound *  (also a NotFound) 404
            │   ├── BusinessCentralConflict *  409, and 412 twice: the record changed in BC meanwhile
            │   └── BusinessCentralAuthError * (also an AuthFailed) 401 after a new token; 403 (permissions);
            │                                  the token endpoint's AADSTS errors, each naming its fix
            └── BusinessCentralResponseError * (also a BadResponse) a 2xx body that is not the OData shape,
                                               or a paging link to another host

Messages name the method, the endpoint (company id folded out), the status and BC's own code and message;
never the client secret or a token.
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


class BusinessCentralError(KoppelError):
    """Base of every error the Business Central connector raises."""


class BusinessCentralTransientError(BusinessCentralError, TransientError):
    """A failure that may pass; the job is retried later."""


class BusinessCentralPermanentError(BusinessCentralError, PermanentError):
    """A failure retrying cannot fix."""


class BusinessCentralUnavailable(BusinessCentralTransientError, Unavailable):
    """BC answered 5xx or 408, timed out or could not be reached, after the kit's retries."""


class RateLimited(BusinessCentralTransientError, RateLimitedError):
    """429: the user's request budget (6 000 per 5 minutes, 5 at once) is spent."""


class BusinessCentralRequestError(BusinessCentralPermanentError, Rejected):
    """BC refused the request: `{"error": {"code", "message"}}` as `.code`, `.message`."""



class BusinessCentralNotFound(BusinessCentralRequestError, NotFound):
    """404: no record with that id, or no such entity (or company, or environment)."""


class BusinessCentralConflict(BusinessCentralRequestError):
    """409, or a 412 again after re-reading the record: someone changes it in BC right now."""


class BusinessCentralAuthError(BusinessCentralRequestError, AuthFailed):
    """The token endpoint refused the app, BC refused its token, or the app lacks permissions."""


class BusinessCentralResponseError(BusinessCentralPermanentError, BadResponse):
    """A successful response whose body is not what the API promises."""


__all__ = [
    "BusinessCentralAuthError",
    "BusinessCentralConflict",
    "BusinessCentralError",
    "BusinessCentralNotFound",
    "BusinessCentralPermanentError",
    "BusinessCentralRequestError",
    "BusinessCentralResponseError",
    "BusinessCentralTransientError",
    "BusinessCentralUnavailable",
    "RateLimited",
]
