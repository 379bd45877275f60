"""Integrations a system switched off at run time, and the hook that tells the operator.

A source may say that the system cut Koppel off (`Source.lifecycle`: Squarespace's `extension.uninstall`).
The worker then switches off every integration the notification's endpoint feeds — events for them are
skipped, naming why, until the operator switches them on again — and tells the operator: one warning log
line and an activity entry per integration, a `consent` notification (gateway/notify.py: sent when the
integration has `[integrations.notify]`), then every function in `OPERATOR_NOTICES`.

    koppel:cache:{integration}:switched_off     why, as the source said it (no expiry)

`koppel integrations` lists them; `koppel integrations on ID` switches one on again (after the system was
connected again, e.g. the extension reinstalled).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from redis.client import Pipeline

from gateway import keys, notify
from gateway.activity import Activity, ActivityLog
from gateway.config import Config

log = logging.getLogger("koppel.switches")

Notice = Callable[[str, str], None]
OPERATOR_NOTICES: list[Notice] = []
"""Called with (integration id, message) after an integration was switched off."""

__all__ = ["OPERATOR_NOTICES", "all_off", "switch_off", "switch_on", "switch_read", "switched_off"]


def _key(integration_id: str) -> str:
    return keys.cache(integration_id, "switched_off")


def switched_off(connection: redis.Redis, integration_id: str) -> str | None:
    """Why the integration is switched off, or None."""
    raw = connection.get(_key(integration_id))
    return keys.text(raw) if raw is not None else None


def switch_read(integration_id: str) -> Callable[[Pipeline], None]:
    """Queues the read `switched_off` makes on a pipeline (its reply: the reason as bytes, or None)."""

    def read(pipe: Pipeline) -> None:
        pipe.get(_key(integration_id))

    return read


def all_off(connection: redis.Redis, config: Config, source_id: str) -> bool:
    """Whether every enabled integration the endpoint or system `source_id` feeds is switched off (and it
    feeds some): nothing is to be read from it, nor its webhooks kept, until the operator switches one on."""
    fed = [i.id for i in config.integrations_from(source_id) if i.enabled]
    return bool(fed) and all(switched_off(connection, integration) for integration in fed)


def switch_on(connection: redis.Redis, integration_id: str) -> bool:
    """Switch the integration on again; whether it was off."""
    return bool(connection.delete(_key(integration_id)))


def switch_off(connection: redis.Redis, integration_id: str, reason: str, *, topic: str = "", job_id: str = "") -> None:
    """Switch the integration off and notify the operator (log, activity, notification, `OPERATOR_NOTICES`)."""
    connection.set(_key(integration_id), reason)
    log.warning("integration %s switched off: %s", integration_id, reason)
    now = time.time()
    ActivityLog(connection).record(Activity(integration=integration_id, flow="", topic=topic, resource_id="",
                                            outcome="skipped", received_at=now, done_at=now, job_id=job_id,
                                            reason=f"switched off: {reason}", level="error"))  # fmt: skip
    notify.record(connection, "consent", f"the integration was switched off: {reason}", integration=integration_id,
                  fix=f"connect the system again, then switch the integration on: `koppel integrations on "
                      f"{integration_id}`")  # fmt: skip
    for notice in OPERATOR_NOTICES:
        try:
            notice(integration_id, reason)
        except Exception:  # a failing notifier must not undo the switch
            log.exception("integration %s: an operator notice failed", integration_id)
