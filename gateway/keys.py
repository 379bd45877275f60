"""Koppel's Redis keyspace, owned by this one module: every key Koppel writes is named here.

    koppel:dedupe:{endpoint}:{sha256}           STRING  a delivery seen (→ its job id), TTL dedupe window
    koppel:inbox:{queue}                        STREAM  accepted events waiting for the pump
    koppel:merged:{job id}                      STRING  an event the pump merged into another's job (→ that
                                                        job's id), TTL as the jobs'
    koppel:activity:{integration}               STREAM  the activity log, trimmed by age
    koppel:ledger:{integration}:{flow}          HASH    stable key → target id of what Koppel wrote
    koppel:inflight:{integration}:{flow}        HASH    stable keys whose write may have reached the target
    koppel:cache:{scope}:{name}                 HASH    looked-up ids (e-mail → customer, SKU → item, …)
    koppel:cache:{scope}:{name}:{key}           STRING  a negative answer remembered for a while
    koppel:snapshot:{integration}:{job id}      STRING  an event's payload as the flow saw it (JSON), TTL
                                                        `[retention] payloads`
    koppel:lock:{part}:…                        STRING  a lock (one resource, one poll)
    koppel:lockwake:{part}:…                    LIST    a resource lock's wake token (≤ 1, short TTL)
    koppel:cursor:{system}:{stream}             STRING  a poller's cursor (never moves backwards)
    koppel:notify:open                          ZSET    notification groups collecting (→ first seen)
    koppel:notify:group:{id}                    HASH    one group: kind, scope, reason, fix, count, times
    koppel:notify:group:{id}:examples           LIST    the first few record ids of a group
    koppel:notify:sent:{id}                     STRING  a group was sent: not again before it expires
    koppel:notify:outbox                        ZSET    messages whose delivery failed (→ next try)
    koppel:notify:expiry:{endpoint}             HASH    topic → when its subscription expires (last check)
    koppel:polled:{system}                      HASH    per polled stream, fields `{stream}:…`: when a poll
                                                        last read it in full (`read`, of `scope`; the
                                                        console's "last poll"), last success (`ok`) and
                                                        failure (`failed`, `error`), when the notifier's
                                                        stall check began watching it (`watched`)
    koppel:console:ended:{session}              STRING  a web console session logged out, TTL its max age
    koppel:oauth:state:{sha256 of state}        STRING  a consent started: sha256 of its browser's cookie nonce,
                                                        taken (GETDEL) by the one callback that uses it, TTL 600 s
    koppel:oauth:ticket:{ticket id}             STRING  a start ticket used (one use), TTL the ticket's life
    koppel:exact:tokens:{system}                STRING  OAuth tokens of a system (never logged)
    koppel:exact:tokens:{system}:refresh_failed STRING  when and why the system refused a refresh (JSON), gone
                                                        once tokens are saved again (the console shows it)
    koppel:exact:ratelimit:{division}           …       Exact's shared API budget per division
(The two `exact:` names date from when Exact was the only OAuth system; kept so that stored
authorisations and budgets survive upgrades.)

RQ's own keys (`rq:*`) belong to RQ. `scope` is an integration id for what depends on its mapping
(customers as the integration sends them) and a system id for what is a fact of the system (item ids).
"""

from __future__ import annotations

PREFIX = "koppel:"
DEDUPE = PREFIX + "dedupe:"
INBOX = PREFIX + "inbox:"
ACTIVITY = PREFIX + "activity:"
SNAPSHOT = PREFIX + "snapshot:"
TOKENS = PREFIX + "exact:tokens"
RATELIMIT = PREFIX + "exact:ratelimit"


def dedupe(endpoint: str, digest: str) -> str:
    return f"{DEDUPE}{endpoint}:{digest}"


def inbox(queue: str) -> str:
    return f"{INBOX}{queue}"


def merged(job_id: str) -> str:
    return f"{PREFIX}merged:{job_id}"


def done(job_id: str) -> str:
    """An event a worker ran directly from the inbox, without an RQ job (workers/inbox.py): JSON of its
    outcome, kept as long as a finished job's result."""
    return f"{PREFIX}done:{job_id}"


def activity(integration: str) -> str:
    return f"{ACTIVITY}{integration}"


def snapshot(integration: str, job_id: str) -> str:
    return f"{SNAPSHOT}{integration}:{job_id}"


def ledger(integration: str, flow: str) -> str:
    return f"{PREFIX}ledger:{integration}:{flow}"


def in_flight(integration: str, flow: str) -> str:
    return f"{PREFIX}inflight:{integration}:{flow}"


def cache(scope: str, name: str, key: str | None = None) -> str:
    base = f"{PREFIX}cache:{scope}:{name}"
    return base if key is None else f"{base}:{key}"


def lock(*parts: str) -> str:
    return PREFIX + "lock:" + ":".join(parts)


def lock_wake(*parts: str) -> str:
    """The list a released resource lock pushes a token onto, waking one waiter (workers/locks.py)."""
    return PREFIX + "lockwake:" + ":".join(parts)


def cursor(system: str, stream: str) -> str:
    return f"{PREFIX}cursor:{system}:{stream}"


def polled(system: str) -> str:
    return f"{PREFIX}polled:{system}"


def console_ended(session: str) -> str:
    return f"{PREFIX}console:ended:{session}"


def oauth_state(digest: str) -> str:
    return f"{PREFIX}oauth:state:{digest}"


def oauth_ticket(ticket_id: str) -> str:
    return f"{PREFIX}oauth:ticket:{ticket_id}"


def notify(*parts: str) -> str:
    return PREFIX + "notify:" + ":".join(parts)


def text(value: bytes | str) -> str:
    """A value read back from Redis as text (redis-py types replies `bytes | str`: it depends on
    `decode_responses`, which Koppel leaves off)."""
    return value.decode() if isinstance(value, bytes) else value


__all__ = [
    "ACTIVITY", "RATELIMIT", "SNAPSHOT", "TOKENS", "cache", "console_ended", "cursor", "dedupe", "in_flight", "inbox",
    "ledger", "lock", "notify", "oauth_state", "oauth_ticket", "polled", "snapshot", "text",
]  # fmt: skip
