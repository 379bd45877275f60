"""Koppel's exceptions, drawn once.

    KoppelError
    ├── ConfigError                 the config file is unreadable or invalid (lists every problem)
    ├── RedisUnavailable            Redis cannot be reached; a request answers 503 + Retry-After
    ├── EmbeddedRedisError          the embedded Redis could not be started
    ├── TransientError              worth retrying later: the job is retried with jittered backoff
    │   ├── Unavailable             a system answered 5xx, timed out or could not be reached
    │   │                           (after the HTTP kit's own retries); `.status` when it answered
    │   └── RateLimited             the system's budget is spent (429, or a rate limit's window);
    │                               `.retry_after` seconds when known
    ├── PermanentError              retrying cannot help: the job fails at once with this message
    │   ├── Rejected                a system refused a request (4xx): `.status`, the system's `.code`
    │   │   ├── NotFound            404: no record with that key, or no such route
    │   │   └── Taken               a create refused: a record holds its stable key already (a SKU)
    │   ├── AuthFailed              credentials refused, or no authorisation stored: someone must
    │   │                           connect the system again (`koppel connect <system>`)
    │   └── BadResponse             a 2xx answer that is not what the system's API promises
    └── WebhookRejected             a webhook request is refused; carries HTTP status and a reason
        ├── UnknownEndpoint         404  no endpoint with that id
        ├── BodyTooLarge            413  body over the endpoint's cap
        ├── MalformedRequest        400  body or headers cannot be understood
        └── SignatureRejected       401  signature missing or wrong (reason: missing / mismatch)

A KoppelError may carry `.calls`: the target calls made for its record before it (its activity line).

Connector errors subclass these (`ExactNotFound` is a `NotFound`, `WooCommerceUnavailable` an
`Unavailable`), so flows and the worker decide with one `isinstance` check and name no system.
Messages never contain secrets or payload data: they say what was wrong, not what was sent.
"""

from __future__ import annotations


class KoppelError(Exception):
    """Base of every error Koppel raises on purpose."""

    calls: int | None = None
    """The target API calls made for the record before this error ended its run (None: not counted); the
    record's activity line shows them (workers/jobs.py sets it where the target's count is known)."""


class ConfigError(KoppelError):
    """The configuration is invalid; `problems` holds one "key.path: message" line per error."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(problems))


class RedisUnavailable(KoppelError):
    """Redis did not answer; the event was not stored."""


class EmbeddedRedisError(KoppelError):
    """The embedded Redis server could not be started or did not become ready."""


class TransientError(KoppelError):
    """A failure that may pass: the worker retries the job with jittered exponential backoff."""


class PermanentError(KoppelError):
    """A failure that will not pass by retrying: the job goes to the failed registry at once."""


class Unavailable(TransientError):
    """A system answered 5xx, timed out or could not be reached, after the HTTP kit's own retries."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RateLimited(TransientError):
    """A system's API budget is spent for longer than a caller may wait; retry after `retry_after` s."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Rejected(PermanentError):
    """A system refused a request (4xx). `code` is the system's own error code and `message` its own
    text, when it gave them (the exception's text is Koppel's sentence around them)."""

    def __init__(self, text: str, *, status: int, code: str = "", message: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.message = message


class Taken(Rejected):
    """A create the system refused because a record already holds its stable key (a SKU another product has):
    the caller may look that record up and update it instead."""


class NotFound(Rejected):
    """404: no record with that key (or no such route)."""

    def __init__(self, text: str, *, status: int = 404, code: str = "", message: str = "") -> None:
        super().__init__(text, status=status, code=code, message=message)


class AuthFailed(PermanentError):
    """The system refused Koppel's credentials, or none are stored: connect the system again."""


class BadResponse(PermanentError):
    """A successful answer whose body is not what the system's API promises."""


class WebhookRejected(KoppelError):
    """A webhook request that Koppel refuses. `reason` is a short metric label."""

    status = 400
    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class UnknownEndpoint(WebhookRejected):
    status = 404
    reason = "unknown_endpoint"


class BodyTooLarge(WebhookRejected):
    status = 413
    reason = "too_large"


class MalformedRequest(WebhookRejected):
    status = 400
    reason = "malformed"


class SignatureRejected(WebhookRejected):
    """Missing (reason "missing_signature") or wrong (reason "bad_signature") signature."""

    status = 401
    reason = "bad_signature"
