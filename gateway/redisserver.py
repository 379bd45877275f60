"""Which Redis Koppel talks to, and the embedded one it runs when there is none.

Resolution (`resolve_redis`):
1. `REDIS_URL` set → that server, nothing started.
2. Something answers on localhost:6379 → that server.
3. Otherwise Koppel starts Debian's `redis-server` as a supervised child process: AOF persistence
   on (fsync every second) plus RDB snapshots, data under `<data dir>/redis`, bound to 127.0.0.1.

The embedded Redis is its owner's only: it requires a password (random, generated once into
`<data dir>/redis/password`, owner-only, and put into the URL Koppel uses; it is in its config file
`redis.conf`, never on the command line other users can read), and it runs with umask 077, so its
append-only and snapshot files are 0600 in a 0700 directory. Step 2 tries the data directory's password
first, so a second Koppel process finds an embedded Redis that another one started.

No orphan: the child is started with PR_SET_PDEATHSIG, so the kernel sends it SIGTERM when the
Koppel process dies — even on SIGKILL — and Redis shuts down cleanly (writing its AOF). A normal
stop sends SHUTDOWN and waits for the process to exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from gateway import vault
from gateway.errors import EmbeddedRedisError

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:  # pragma: no cover - runs in a forked child
    """Ask the kernel to SIGTERM this (forked) process when its parent dies, even by SIGKILL.

    With `parent_pid`, exit at once if that parent is already gone (it died before the request).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn for the embedded redis-server: die with Koppel, in a process group of its own, creating
    its files owner-only."""
    die_with_parent()
    os.umask(0o077)
    # New process group: a Ctrl-C in the terminal goes to Koppel, which then stops Redis in order.
    os.setpgid(0, 0)


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server at `url` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _server_pid(url: str) -> int | None:
    """The pid of the server at `url` once it serves commands (None while it starts, or still loads its
    data: INFO answers during loading, everything else fails with LOADING)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        info = client.info()
        return None if int(info.get("loading", 0)) else int(info["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


PASSWORD_FILE = "password"  # noqa: S105 - a file name
"""The embedded Redis's password, in its directory (`<data dir>/redis`)."""


def embedded_password(data_dir: Path) -> str | None:
    """The password of the embedded Redis whose data is in `data_dir`, if one was ever started there."""
    try:
        return (Path(data_dir) / "redis" / PASSWORD_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def local_url(port: int, password: str | None) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A redis-server child process with persistence, stopped when Koppel stops."""

    data_dir: Path
    port: int = 6379
    binary: str = "redis-server"
    process: subprocess.Popen[bytes] | None = None
    password: str = field(default="", repr=False)
    """Set by `start` (kept in `<data dir>/redis/password`)."""

    @property
    def url(self) -> str:
        """The URL Koppel connects with, password included (`redact_url` before showing it)."""
        return local_url(self.port, self.password or embedded_password(self.data_dir))

    def _prepare(self, directory: Path) -> Path:
        """The owner-only directory, its password and the config file holding it: the config's path."""
        vault.private_dir(Path(self.data_dir))
        vault.private_dir(directory)
        self.password = embedded_password(Path(self.data_dir)) or secrets.token_urlsafe(32)
        vault.private_file(directory / PASSWORD_FILE, f"{self.password}\n")
        for existing in directory.rglob("*"):  # files an earlier Redis (or Koppel) wrote with wider modes
            with contextlib.suppress(OSError):
                existing.chmod(0o700 if existing.is_dir() else 0o600)
        return vault.private_file(directory / "redis.conf", f"requirepass {self.password}\n")

    def start(self, timeout: float = 10.0) -> str:
        executable = shutil.which(self.binary)
        if executable is None:
            raise EmbeddedRedisError(
                "redis-server is not installed: install it (apt-get install redis-server, or ./run.sh does it) "
                "or set REDIS_URL to a Redis you run"
            )
        if _port_taken(self.port):
            raise EmbeddedRedisError(f"cannot start the embedded Redis: port {self.port} is already in use")
        directory = Path(self.data_dir) / "redis"
        conf = self._prepare(directory)
        args = [
            executable,
            str(conf.resolve()),  # the password, out of the command line (ps shows that to every user)
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(directory.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "3600 1 300 100 60 10000",
            "--logfile", str((directory / "redis.log").resolve()),
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                log = directory / "redis.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
                raise EmbeddedRedisError(
                    f"embedded redis-server exited with code {self.process.returncode} on port {self.port}: "
                    + (err.strip() or " / ".join(tail) or "no output")
                )
            if _server_pid(self.url) == self.process.pid:  # ours, not another server on the port
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"embedded redis-server did not answer on port {self.port} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            with contextlib.suppress(redis.ConnectionError):
                client.shutdown(save=True)  # the server closes the connection as it goes
            client.close()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object | type[BaseException] | TracebackType | None) -> None:
        self.stop()


@dataclass
class RedisChoice:
    url: str
    embedded: EmbeddedRedis | None = None

    def describe(self) -> str:
        if self.embedded is not None:
            return f"embedded redis-server on 127.0.0.1:{self.embedded.port} (data in {self.embedded.data_dir}/redis)"
        return f"Redis at {redact_url(self.url)}"

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def redact_url(url: str) -> str:
    """A Redis URL fit for logs: any password replaced."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"


_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:)[^\s@/]+@")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|sentinel_password)=)[^&\s]+", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """`text` with the password of every URL in it masked (`redis://:***@host`, `?password=***`): log lines
    and error messages quote a REDIS_URL, an exception that names one, a notification URL."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def data_dir() -> Path:
    return Path(os.environ.get("KOPPEL_DATA_DIR", ".koppel"))


def resolve_redis(*, embedded: bool | None = None, environ: dict[str, str] | None = None) -> RedisChoice:
    """Pick the Redis to use, starting the embedded one when none is configured or running.

    `embedded=True` forces an embedded server (on a free port if 6379 is taken); `False` never starts one.
    """
    env = os.environ if environ is None else environ
    url = env.get("REDIS_URL")
    if url and not embedded:
        return RedisChoice(url=url)
    directory = Path(env.get("KOPPEL_DATA_DIR", ".koppel"))
    if not embedded:
        for candidate in dict.fromkeys((local_url(6379, embedded_password(directory)), DEFAULT_URL)):
            if answers(candidate):
                return RedisChoice(url=candidate)
    if embedded is False:
        raise EmbeddedRedisError("no REDIS_URL set and nothing answers on 127.0.0.1:6379")
    port = int(env.get("KOPPEL_REDIS_PORT", "0")) or (6379 if not _port_taken(6379) else free_port())
    server = EmbeddedRedis(data_dir=directory, port=port)
    server.start()
    vault.ensure_key_file(directory)  # the key stored tokens are encrypted with, when KOPPEL_SECRET_KEY is not set
    logging.getLogger("koppel").info("started %s", RedisChoice(server.url, server).describe())
    return RedisChoice(url=server.url, embedded=server)
