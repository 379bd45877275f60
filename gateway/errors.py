"""Koppel's exceptions, drawn once.

    KoppelError
    ├── ConfigError                 the config file is unreadable or invalid (lists every problem)
    ├── RedisUnavailable            Redis cannot be reached; a request answers 503 + Retry-After
    ├── EmbeddedRedisError          the embedded Redis could not be started
    ├── TransientError              worth retrying later: timeouts, 5xx, 429, a busy lock
    ├── PermanentError              retrying cannot help: validation, missing SKUs, 4xx mapping errors;
    │                               the job fails at once with this message as its reason
    └── Rejected                    a webhook request is refused; carries HTTP status and a reason
        ├── UnknownEndpoint         404  no endpoint with that id
        ├── BodyTooLarge            413  body over the endpoint's cap
        ├── MalformedRequest        400  body or headers cannot be understood
        └── SignatureRejected       401  signature missing or wrong (reason: missing / mismatch)

Messages never contain secrets or payload data: they say what was wrong, not what was sent.
"""

from __future__ import annotations


class KoppelError(Exception):
    """Base of every error Koppel raises on purpose."""


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


class Rejected(KoppelError):
    """A webhook request that Koppel refuses. `reason` is a short metric label."""

    status = 400
    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class UnknownEndpoint(Rejected):
    status = 404
    reason = "unknown_endpoint"


class BodyTooLarge(Rejected):
    status = 413
    reason = "too_large"


class MalformedRequest(Rejected):
    status = 400
    reason = "malformed"


class SignatureRejected(Rejected):
    """Missing (reason "missing_signature") or wrong (reason "bad_signature") signature."""

    status = 401
    reason = "bad_signature"
