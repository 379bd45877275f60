"""A Redis primary, its replicas and Redis Sentinels as real processes on free loopback ports, for the tests
of Koppel under Sentinel (tests/test_sentinel.py). Each process dies with the test process (PDEATHSIG)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from gateway.redisserver import answers, die_with_parent, free_port

MASTER = "koppel-test"
DOWN_AFTER_MS = 400
"""How long a silent primary takes to count as down: short, so a failover takes ~1-2 s."""


def _quiet(*args: object) -> None:
    """preexec_fn: die with the test process."""
    die_with_parent()


def _answers(port: int) -> bool:
    return answers(f"redis://127.0.0.1:{port}/0", timeout=0.3)


def sentinel_command() -> list[str]:
    """Debian's redis-sentinel (./run.sh test installs it), or the same program as `redis-server --sentinel`."""
    binary = shutil.which("redis-sentinel")
    if binary is not None:
        return [binary]
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed (./run.sh installs it)"
    return [server, "--sentinel"]


@dataclass
class RedisGroup:
    """A primary with `replicas` replicas under `sentinels` sentinels (quorum: a majority)."""

    directory: Path
    replicas: int = 2
    sentinels: int = 3
    ports: list[int] = field(default_factory=list)
    """The servers' ports; [0] is the first primary."""
    sentinel_ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Koppel's REDIS_URL for the group."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{MASTER}/0"

    def start(self, timeout: float = 15.0) -> RedisGroup:
        redis_server = shutil.which("redis-server")
        assert redis_server is not None, "redis-server is not installed (./run.sh installs it)"
        self.ports = [free_port() for _ in range(1 + self.replicas)]
        for index, port in enumerate(self.ports):
            data = self.directory / f"redis-{port}"
            data.mkdir(parents=True)
            args = [
                redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--repl-diskless-sync-delay", "0",
                "--logfile", str(data / "redis.log"),
            ]  # fmt: skip
            if index:
                args += ["--replicaof", "127.0.0.1", str(self.ports[0])]
            self._spawn(port, args)
        self._until(lambda: self._replicas_of(self.ports[0]) == self.replicas, timeout, "the replicas did not sync")
        self.sentinel_ports = [free_port() for _ in range(self.sentinels)]
        quorum = self.sentinels // 2 + 1
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"  # a sentinel rewrites its config: one file each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\nlogfile {self.directory}/sentinel-{port}.log\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.ports[0]} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 2\n"
            )
            self._spawn(port, [*sentinel_command(), str(conf)])
        self._until(self._sentinels_ready, timeout, "the sentinels did not see the replicas and one another")
        return self

    def _spawn(self, port: int, args: list[str]) -> None:
        self.processes[port] = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_quiet, close_fds=True,
        )  # fmt: skip
        self._until(lambda: _answers(port), 10, f"the server on port {port} did not start")

    @staticmethod
    def _until(ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(what)
            time.sleep(0.05)

    @staticmethod
    def _replicas_of(port: int) -> int:
        client = redis.Redis(port=port, socket_timeout=1)
        try:
            info = client.info("replication")
            return sum(1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online")
        except (redis.RedisError, OSError):
            return -1
        finally:
            client.close()

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
            try:
                state = client.sentinel_master(MASTER)
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()
            if int(state["num-slaves"]) < self.replicas or int(state["num-other-sentinels"]) < self.sentinels - 1:
                return False
        return True

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                address = client.sentinel_get_master_addr_by_name(MASTER)
            except (redis.RedisError, OSError):
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        raise RuntimeError("no sentinel names a primary")

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def wait_for_failover(self, old: int, timeout: float = 20.0) -> int:
        """The new primary's port, once the sentinels have promoted a replica and it takes writes."""
        deadline = time.monotonic() + timeout
        while True:
            port = self.primary_port()
            if port != old and self._replicas_of(port) >= 0:
                client = redis.Redis(port=port, socket_timeout=1)
                try:
                    if client.info("replication").get("role") == "master":
                        return port
                except (redis.RedisError, OSError):
                    pass
                finally:
                    client.close()
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not fail over")
            time.sleep(0.05)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5)

    def stop(self) -> None:
        for port, process in list(self.processes.items()):
            process.send_signal(signal.SIGKILL)
            process.wait()
            del self.processes[port]


def environ_without_redis() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
