"""The notification dispatcher: sends the groups `gateway.notify.record` collected, through apprise.

Every `koppel worker` keeps one dispatch job scheduled on Koppel's queue (the pollers' two-slot chain,
job ids `koppel-notify-a|b`, every `DISPATCH_SECONDS`) when an integration has `[integrations.notify]`.
One pass (`Dispatcher.run`):

    watch the polls      a polled stream with no successful poll for `poller_stalled_seconds` is recorded
                         as a `poller_stalled` problem of its system
    retry the outbox     messages whose delivery failed earlier, when their next try is due
    send what is due     each open group whose grouping window (`window_seconds` after its first
                         occurrence) has passed and that was not sent within `repeat_seconds`: taken out
                         of Redis atomically (two workers never send one group twice), rendered as one
                         message, sent to every URL of every integration it concerns

A failed delivery is one warning line naming the integration, the URL's position and its service
(never the URL: it holds secrets) and apprise's reason; it is kept in the outbox and tried again with
backoff (`RETRY_ATTEMPTS` times). Nothing here raises into the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from rq import get_current_job

from gateway import keys, notify
from gateway.config import Config, Integration
from gateway.ingest import make_queue
from workers import runtime
from workers.outage import UNREACHABLE, outage
from workers.pollers import StreamPolls, polled_streams, schedule_chain, stream_polls

log = logging.getLogger("koppel.notify")

DISPATCH_FUNC = "workers.notifier.dispatch"
DISPATCH_SECONDS = 30
JOB_IDS = ["koppel-notify-a", "koppel-notify-b"]
JOB_TIMEOUT = 600
RETRY_ATTEMPTS = 8
RETRY_BASE = 60.0
RETRY_CAP = 3600.0
OUTBOX = keys.notify("outbox")

_TAKE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local group = redis.call('HGETALL', KEYS[2])
local examples = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[2], KEYS[3])
return {group, examples}
"""

Sender = Callable[[str, str, str], str | None]
"""(apprise URL, title, body) → None when delivered, else why not (no secrets)."""

__all__ = ["DISPATCH_SECONDS", "Dispatcher", "dispatch", "render", "schedule_dispatch", "send", "url_problems"]


# -- apprise -----------------------------------------------------------------------------------------

_apprise: ModuleType | None = None


def _load() -> ModuleType:
    """apprise, its plugins loaded once (some import `imghdr`, deprecated in 3.11: not our users' warning)."""
    global _apprise
    if _apprise is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise
            from apprise.plugins import N_MGR

            N_MGR.load_modules()
        _apprise = apprise
    return _apprise


@contextlib.contextmanager
def _quiet() -> Iterator[list[str]]:
    """apprise's own log lines kept out of Koppel's log (they can name recipients): its warnings are
    collected and go into Koppel's one line."""
    _load()
    logger = logging.getLogger("apprise")
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    propagate, level = logger.propagate, logger.level
    logger.propagate = False
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield collected
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)


def _plugin(url: str) -> Any:
    apprise = _load()
    with _quiet():
        return apprise.Apprise.instantiate(url)


def service(url: str) -> str:
    """What a URL delivers to ("Email", "JSON", "Slack"), for log lines; never the URL itself."""
    plugin = _plugin(url)
    return str(getattr(plugin, "service_name", "")) if plugin is not None else "not an apprise URL"


def send(url: str, title: str, body: str) -> str | None:
    """Deliver one message through apprise; None when delivered, else why not."""
    apprise = _load()
    with _quiet() as said:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            return "apprise does not understand this URL (run `koppel config check`)"
        target = apprise.Apprise()
        target.add(plugin)
        try:
            delivered = bool(target.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT))
        except Exception as exc:  # a plugin's bug must not end the dispatch
            return f"apprise failed ({type(exc).__name__})"
    if delivered:
        return None
    return " ".join(line.strip() for line in said)[:300] or "apprise reported a failure"


def url_problems(config: Config) -> list[str]:
    """`koppel config check`: every notification URL apprise does not understand, by key path. The URL
    is never echoed (it may hold a password); its scheme is."""
    problems: list[str] = []
    for index, integration in enumerate(config.integrations):
        if integration.notify is None:
            continue
        for position, url in enumerate(integration.notify.urls):
            text = url.get_secret_value()
            if _plugin(text) is None:
                scheme = urlsplit(text).scheme if "://" in text else ""
                what = f"{scheme}:// URL" if scheme else "URL (no scheme://)"
                problems.append(f"integrations[{index}].notify.urls[{position}]: apprise does not understand this "
                                f"{what}; see docs/notifications.md for the forms it takes")  # fmt: skip
    return problems


# -- messages ----------------------------------------------------------------------------------------


def _plural(noun: str, count: int) -> str:
    noun = noun or "record"
    return f"{count} {noun}" if count == 1 or noun.endswith("s") else f"{count} {noun}s"


def _when(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M} UTC"


def headline(group: notify.Group, integration: Integration) -> str:
    subject = group.subject
    return {
        "failure": f"{_plural(group.noun, group.count)} failed for integration {integration.id}",
        "consent": f"system {subject} must be connected again (integration {integration.id} uses it)"
        if group.scope == "system" else f"integration {integration.id} needs its system connected again",
        "poller_stalled": f"polling {subject} stopped advancing (integration {integration.id} reads it)",
        "webhook_disabled": f"a webhook integration {integration.id} receives was disabled by the source",
        "subscription_expiring": f"a webhook subscription of integration {integration.id} is about to expire",
        "budget_low": f"the daily API budget of {subject} is nearly spent (integration {integration.id} uses it)",
    }.get(group.kind, f"{group.kind} for integration {integration.id}")


def render(group: notify.Group, integration: Integration, config: Config) -> tuple[str, str]:
    """(title, body) of one group's message for one integration."""
    head = headline(group, integration)
    lines = [f"{head}: {group.reason}"]
    if group.examples:
        more = group.count - len(group.examples)
        tail = f" and {more} more" if more > 0 and group.kind == "failure" else ""
        lines.append(f"Records: {', '.join(group.examples)}{tail}")
    first, last = _when(group.first), _when(group.last)
    if group.count > 1 and group.kind != "failure":
        lines.append(f"Seen {group.count} times " + (f"from {first} to {last}." if last != first else f"at {first}."))
    else:
        lines.append(f"First seen {first}" + (f", last {last}." if last != first else "."))
    fix = group.fix.replace("--integration ID`", f"--integration {integration.id}`")
    if group.kind == "failure" and config.gateway.public_url and "/console/" in fix:
        fix = fix.replace("/console/", f"{config.gateway.public_url}/console/", 1)
    if fix:
        lines.append(f"What to do: {fix}")
    return f"Koppel {integration.id}: {head}", "\n".join(lines)


# -- the dispatcher ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    stalled: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, "stalled": self.stalled}


def _told(integration: Integration, kind: str) -> bool:
    return integration.enabled and integration.notify is not None and kind in integration.notify.events


class Dispatcher:
    def __init__(
        self, connection: redis.Redis, config: Config, *, sender: Sender = send, clock: Callable[[], float] = time.time
    ) -> None:
        self.connection = connection
        self.config = config
        self.sender = sender
        self.clock = clock
        self._take = connection.register_script(_TAKE)

    def recipients(self, scope: str, subject: str, kind: str) -> list[Integration]:
        return [i for i in notify.integrations_of(self.config, scope, subject) if _told(i, kind)]

    def run(self) -> Outcome:
        outcome = Outcome()
        now = self.clock()
        outcome.stalled = self.watch_polls(now)
        self.retry(now, outcome)
        self.send_due(now, outcome)
        return outcome

    def watch_polls(self, now: float) -> int:
        """Record a `poller_stalled` problem for every polled stream without a successful poll for longer
        than its integrations' `poller_stalled_seconds` (counted from when the dispatcher first watched it)."""
        stalled = 0
        for system_id, streams in polled_streams(self.config).items():
            told = self.recipients("system", system_id, "poller_stalled")
            if not told:
                continue
            limit = min(i.notify.poller_stalled_seconds for i in told if i.notify is not None)
            polls = stream_polls(self.connection, system_id, watch=streams, now=now)
            for stream in streams:
                seen = polls.get(stream, StreamPolls(watched=now))
                good = max(seen.ok, seen.watched)
                if now - good <= limit:
                    continue
                stalled += 1
                error = seen.error if seen.failed > good else ""
                since = _when(good)
                notify.record(
                    self.connection, "poller_stalled", f"stream {stream} has had no successful poll since {since}",
                    system=system_id, now=now,
                    fix=(f"the last poll failed: {error}. " if error else "no poll ran since: its schedule stopped. ")
                    + "Polls resume by themselves once the cause is fixed; a worker (re)start schedules a stopped one.",
                )  # fmt: skip
        return stalled

    def send_due(self, now: float, outcome: Outcome) -> None:
        members = cast(list[bytes], self.connection.zrangebyscore(notify.OPEN, "-inf", now))
        for member in members:
            gid = keys.text(member)
            raw = {keys.text(k): keys.text(v) for k, v in self.connection.hgetall(notify.group_key(gid)).items()}
            peek = notify.Group.parse(gid, raw, [])
            told = self.recipients(peek.scope, peek.subject, peek.kind) if peek is not None else []
            if peek is not None and told:
                window = min(i.notify.window_seconds for i in told if i.notify is not None)
                until = self.connection.get(notify.sent_key(gid))
                if peek.first + window > now or (until is not None and float(keys.text(until)) > now):
                    continue  # still collecting, or the same problem was sent a short while ago
            taken = self._take(keys=[notify.OPEN, notify.group_key(gid), notify.examples_key(gid)], args=[gid])
            if not taken or not told:
                continue  # another worker took it, or no integration is told about it: forgotten
            fields, examples = taken
            pairs = [keys.text(x) for x in fields]
            group = notify.Group.parse(gid, dict(zip(pairs[::2], pairs[1::2], strict=True)),
                                       [keys.text(e) for e in examples])  # fmt: skip
            if group is None:
                continue
            repeat = min(i.notify.repeat_seconds for i in told if i.notify is not None)
            self.connection.set(notify.sent_key(gid), repr(now + repeat), ex=repeat)  # not again until then
            for integration in told:
                title, body = render(group, integration, self.config)
                for position in range(len(integration.notify.urls) if integration.notify else 0):
                    self.deliver({"integration": integration.id, "url": position, "title": title, "body": body,
                                  "kind": group.kind, "attempt": 0}, now, outcome)  # fmt: skip

    def deliver(self, message: dict[str, Any], now: float, outcome: Outcome) -> None:
        """Send one message to one URL; a failure is logged once and queued for a later try."""
        integration = next((i for i in self.config.integrations if i.id == message["integration"]), None)
        position = int(message["url"])
        if integration is None or integration.notify is None or position >= len(integration.notify.urls):
            outcome.dropped += 1
            return  # the config changed since: that URL is no more
        url = integration.notify.urls[position].get_secret_value()
        where = f"integration {integration.id}: notify.urls[{position}] ({service(url)})"
        problem = self.sender(url, str(message["title"]), str(message["body"]))
        if problem is None:
            outcome.sent += 1
            log.info("%s: sent %s message", where, message.get("kind", ""))
            return
        outcome.failed += 1
        attempt = int(message["attempt"]) + 1
        if attempt >= RETRY_ATTEMPTS:
            outcome.dropped += 1
            log.warning("%s: %s message not delivered (%s); given up after %d tries", where, message.get("kind", ""),
                        problem, attempt)  # fmt: skip
            return
        delay = min(RETRY_CAP, RETRY_BASE * 2 ** (attempt - 1))
        log.warning("%s: %s message not delivered (%s); next try in %.0f s", where, message.get("kind", ""), problem,
                    delay)  # fmt: skip
        entry = json.dumps({**message, "attempt": attempt, "at": now}, sort_keys=True)
        self.connection.zadd(OUTBOX, {entry: now + delay})

    def retry(self, now: float, outcome: Outcome) -> None:
        members = cast(list[bytes], self.connection.zrangebyscore(OUTBOX, "-inf", now))
        for member in members:
            if not self.connection.zrem(OUTBOX, member):
                continue  # another worker is on it
            try:
                message = json.loads(member)
            except ValueError:
                continue
            self.deliver(message, now, outcome)


# -- the job and its schedule ------------------------------------------------------------------------


def wanted(config: Config) -> bool:
    return any(i.notify is not None and i.enabled for i in config.integrations)


def schedule_dispatch(connection: redis.Redis, config: Config, *, running: str | None = None) -> str | None:
    """Keep one dispatch pending when an integration has notifications (safe from every worker)."""
    if not wanted(config):
        return None
    return schedule_chain(
        make_queue(connection, config.gateway.queue), DISPATCH_FUNC, (), JOB_IDS, DISPATCH_SECONDS,
        running=running, timeout=JOB_TIMEOUT, description="send due notifications", meta={"notify": "dispatch"},
    )  # fmt: skip


def dispatch() -> dict[str, Any]:
    """RQ job: one dispatcher pass, then the next one scheduled (also after a failure)."""
    rt = runtime.current()
    job = get_current_job()
    outcome: dict[str, Any]
    try:
        outcome = dict(Dispatcher(rt.connection, rt.config).run().as_dict())
    except redis.RedisError as exc:
        log.warning("notifications: dispatch pass failed (Redis: %s); the next pass tries again", type(exc).__name__)
        outcome = {"error": type(exc).__name__}
    finally:
        try:
            next_id = schedule_dispatch(rt.connection, rt.config, running=job.id if job else None)
        except UNREACHABLE as exc:  # Redis away: the worker schedules the chain again when it is back
            outage.failed(exc, "scheduling the next notification dispatch")
            next_id = None
        except Exception:  # never hide the pass's outcome behind a scheduling failure
            log.exception("notifications: scheduling the next dispatch failed")
            next_id = None
    return outcome | {"next_dispatch": next_id}
