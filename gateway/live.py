"""Live reload: a running gateway or worker takes a changed config file without a restart.

A `Reloader` watches its process's config file (its mtime, size and content hash, twice a second; a change
is read once it has settled for one look, so a file caught half-written is not taken), reloads on SIGHUP
or when asked in-process (`reload()`), and hears the other processes on the Redis channel
`koppel:config:changed`: a process that applied a new file announces it there, and every other process
re-reads its own file at once. A file with problems (those `koppel config check` prints) is refused in one
log line naming them, and the running config stays; a problem the running file had already (a process starts
without `koppel config check`'s further checks) does not stop a reload. A new config is handed whole to the process's
`apply` (the gateway swaps its `LiveConfig`; a worker swaps its runtime's between jobs).

Settings a running process cannot change (`RESTART_ONLY`: the queue, the journal, the receiver's limits
baked into its protocol, the admin token and the worker's heartbeat...) are named in one line "needs a
restart: ..." and keep their running values. Each reload is one log line naming what changed by id:
never a value (secrets are resolved into the config).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.client import PubSub

from gateway.config import Config, GatewaySettings, RetentionSettings

log = logging.getLogger("koppel.config")

CHANNEL = "koppel:config:changed"
"""Where a process that applied a new config file says so (the message: the file's content hash)."""

WATCH_SECONDS = 0.5
"""How often the file is looked at (a stat; read and hashed only when its mtime or size moved)."""
WATCH_VAR = "KOPPEL_CONFIG_WATCH_SECONDS"
"""Overrides `WATCH_SECONDS`; 0 turns the file watch off (SIGHUP, announcements and `reload()` still work)."""

LIVE_GATEWAY = frozenset({"max_body_bytes", "public_url"})
"""`[gateway]` settings a running process takes; every other one needs a restart."""
LIVE_RETENTION = frozenset({"activity", "inbox", "purge_interval"})
"""`[retention]` settings a running process takes (the others are baked into its inbox pump and stores)."""

RESTART_ONLY: tuple[str, ...] = tuple(
    [f"gateway.{name}" for name in GatewaySettings.model_fields if name not in LIVE_GATEWAY]
    + [f"retention.{name}" for name in RetentionSettings.model_fields if name not in LIVE_RETENTION]
)

Check = Callable[[Path], tuple[Config | None, list[str], list[str]]]
"""Reads and checks a config file (`gateway.checks.check_parts`): the config, the problems of its structure and
references (always refused), and what the further checks found (refused when the running file had not)."""

_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


class LiveConfig:
    """The process's running config, swapped whole: readers take `.config` once per request and keep it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._listeners: list[Callable[[Config, Changes], None]] = []

    def __call__(self) -> Config:
        return self.config

    def on_swap(self, listener: Callable[[Config, Changes], None]) -> None:
        """Call `listener(new, changes)` after each swap (caches keyed by what changed drop it there)."""
        self._listeners.append(listener)

    def swap(self, config: Config, changes: Changes) -> None:
        self.config = config
        for listener in self._listeners:
            listener(config, changes)


ConfigSource = Config | Callable[[], Config]
"""A config, or what returns the running one (a `LiveConfig`): read per request."""


def current(source: ConfigSource) -> Config:
    return source if isinstance(source, Config) else source()


_SECTIONS = ("endpoints", "systems", "integrations")


@dataclass(frozen=True)
class Changes:
    """What a new config changes, by section and id (no values), and what needs a restart."""

    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    changed: dict[str, list[str]] = field(default_factory=dict)
    settings: list[str] = field(default_factory=list)
    """Key paths of live `[gateway]` / `[retention]` settings that changed."""
    restart: list[str] = field(default_factory=list)
    """Key paths of settings that changed in the file and keep their running values until a restart."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings)

    def stale(self) -> set[str]:
        """The ids whose objects built from the old config are out of date (changed or removed)."""
        return {i for ids in (*self.changed.values(), *self.removed.values()) for i in ids}

    def describe(self) -> str:
        parts = [
            f"{section} {what}: {', '.join(ids[section])}"
            for section in _SECTIONS
            for what, ids in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
            if ids.get(section)
        ]
        if self.settings:
            parts.append(f"settings changed: {', '.join(self.settings)}")
        return "; ".join(parts) or "nothing the process uses"


def effective(running: Config, new: Config) -> tuple[Config, Changes]:
    """The config to apply (`new`, with the restart-only settings kept at their running values) and
    what it changes."""
    restart = [
        path for path in RESTART_ONLY
        if getattr(getattr(running, path.split(".")[0]), path.split(".")[1])
        != getattr(getattr(new, path.split(".")[0]), path.split(".")[1])
    ]  # fmt: skip
    if restart:
        kept_gateway = {p.split(".")[1]: getattr(running.gateway, p.split(".")[1]) for p in restart
                        if p.startswith("gateway.")}  # fmt: skip
        kept_retention = {p.split(".")[1]: getattr(running.retention, p.split(".")[1]) for p in restart
                          if p.startswith("retention.")}  # fmt: skip
        new = new.model_copy(
            update={
                "gateway": new.gateway.model_copy(update=kept_gateway),
                "retention": new.retention.model_copy(update=kept_retention),
            }
        )
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    changed: dict[str, list[str]] = {}
    for section in _SECTIONS:
        old_items = {item.id: item for item in getattr(running, section)}
        new_items = {item.id: item for item in getattr(new, section)}
        if ids := [i for i in new_items if i not in old_items]:
            added[section] = ids
        if ids := [i for i in old_items if i not in new_items]:
            removed[section] = ids
        if ids := [i for i in new_items if i in old_items and new_items[i] != old_items[i]]:
            changed[section] = ids
    settings = [
        f"{section}.{name}"
        for section, names in (("gateway", LIVE_GATEWAY), ("retention", LIVE_RETENTION))
        for name in sorted(names)
        if getattr(getattr(running, section), name) != getattr(getattr(new, section), name)
    ]
    return new, Changes(added, removed, changed, settings, restart)


@dataclass(frozen=True)
class _Seen:
    stat: tuple[int, int] | None
    digest: str | None


def _look(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Reloader:
    """Keeps one process's config in step with its file (see the module docstring)."""

    def __init__(
        self, path: Path, live: Callable[[], Config], apply: Callable[[Config, Changes], None], check: Check, *,
        connection: redis.Redis | None = None, name: str = "gateway", interval: float | None = None,
    ) -> None:  # fmt: skip
        self.path = path
        self._live, self._apply, self._check = live, apply, check
        self.connection = connection
        self.name = name
        if interval is None:
            interval = watch_seconds()
        self.watching = interval > 0
        self.interval = interval if self.watching else 1.0  # off: how often the thread looks for a stop
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The file may have changed since the running config was read from it: the first look reads and
        # compares it (nothing is applied or logged when it gives the running config).
        self._seen = _Seen(None, None)
        self._applied: str | None = None
        try:
            self._tolerated = set(check(path)[2])  # what the further checks say of the running file
        except Exception:  # a check that fails is the reload's to report, not the start's
            log.exception("%s: config %s could not be checked; the first reload will say why", name, path)
            self._tolerated = set()
        self._refused: str | None = None  # the digest of the last file refused (logged once)
        self._restart_told: tuple[str, ...] = ()

    # -- reloading ---------------------------------------------------------------------------------

    def reload(self, *, why: str = "asked") -> list[str]:
        """Read and check the file now, and apply it when it is sound and differs from the running config;
        its problems (an empty list: applied, or nothing to apply)."""
        with self._lock:
            return self._reload(why, announce=True)

    def _reload(self, why: str, *, announce: bool) -> list[str]:
        digest = _digest(self.path)
        self._seen = _Seen(_look(self.path), digest)
        config, structure, further = self._check(self.path)
        problems = structure + [p for p in further if p not in self._tolerated]
        if problems or config is None:
            problems = problems or [f"{self.path}: cannot be read"]
            if digest != self._refused or why != "file changed":
                log.warning("%s: config %s refused (%s), the running config stays: %s",
                            self.name, self.path, why, "; ".join(problems))  # fmt: skip
            self._refused = digest
            return problems
        self._refused = None
        self._tolerated = set(further)
        running = self._live()
        new, changes = effective(running, config)
        self._applied = digest
        if changes.restart and tuple(changes.restart) != self._restart_told:
            log.warning("%s: config %s: needs a restart: %s (running values kept)",
                        self.name, self.path, ", ".join(changes.restart))  # fmt: skip
        self._restart_told = tuple(changes.restart)
        if changes.empty:
            return []
        self._apply(new, changes)
        log.info("%s: config %s reloaded (%s): %s", self.name, self.path, why, changes.describe())
        if announce:
            self._announce(digest)
        return []

    def _announce(self, digest: str | None) -> None:
        if self.connection is None or digest is None:
            return
        try:
            self.connection.publish(CHANNEL, digest)
        except (redis.RedisError, OSError) as exc:  # the others still see the file by their own watch
            log.debug("%s: config change not announced (%s)", self.name, type(exc).__name__)

    def request(self) -> None:
        """Reload at once on the watch thread (safe from a signal handler)."""
        self._wake.set()

    def _poll(self) -> None:
        """A look at the file: reloaded once a change has settled (the same mtime and size twice)."""
        stat = _look(self.path)
        if stat == self._seen.stat:
            if self._seen.digest is None or self._seen.digest in (self._applied, self._refused):
                return
            with self._lock:
                self._reload("file changed", announce=True)
            return
        self._seen = _Seen(stat, _digest(self.path) if stat is not None else None)
        if self._seen.digest == self._applied:
            return  # touched, not changed
        # Changed: taken at the next look when it stays so.

    # -- the watch thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"config watch ({self.name})", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        pubsub: PubSub | None = None
        retry_at = 0.0
        while not self._stop.is_set():
            heard = False
            if pubsub is None and self.connection is not None and time.monotonic() >= retry_at:
                try:
                    pubsub = self.connection.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(CHANNEL)
                except (*_UNREACHABLE, redis.RedisError):
                    _closed(pubsub)
                    pubsub, retry_at = None, time.monotonic() + 5
            if pubsub is not None:
                try:
                    message = pubsub.get_message(timeout=self.interval)
                except (*_UNREACHABLE, redis.RedisError):  # Redis away: the file watch goes on alone
                    _closed(pubsub)
                    pubsub, retry_at = None, time.monotonic() + 5
                    self._wake.wait(self.interval)
                else:
                    heard = message is not None and _text(message.get("data")) not in (self._applied, self._refused)
            else:
                self._wake.wait(self.interval)
            if self._stop.is_set():
                break
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    self.reload(why="SIGHUP")
                elif heard:
                    with self._lock:
                        self._reload("announced by another process", announce=False)
                elif self.watching:
                    self._poll()
            except Exception:  # the watch must outlive any one reload
                log.exception("%s: config reload failed; the running config stays", self.name)
        _closed(pubsub)


def watch_seconds() -> float:
    """The file watch's interval: `KOPPEL_CONFIG_WATCH_SECONDS` when set (0: off), else `WATCH_SECONDS`."""
    value = os.environ.get(WATCH_VAR, "").strip()
    if not value:
        return WATCH_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        log.warning("%s=%r is not a number of seconds; watching the config file every %s s",
                    WATCH_VAR, value, WATCH_SECONDS)  # fmt: skip
        return WATCH_SECONDS
    return max(0.0, seconds)


def _closed(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            pubsub.close()


def _text(data: object) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


def install_sighup(reloader: Reloader) -> bool:
    """SIGHUP reloads the config (only the main thread may set signal handlers: elsewhere False)."""
    import signal

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return False
    signal.signal(signal.SIGHUP, lambda signum, frame: reloader.request())
    return True


__all__ = [
    "CHANNEL",
    "LIVE_GATEWAY",
    "LIVE_RETENTION",
    "RESTART_ONLY",
    "WATCH_VAR",
    "Changes",
    "Check",
    "ConfigSource",
    "LiveConfig",
    "Reloader",
    "current",
    "effective",
    "install_sighup",
]  # fmt: skip
