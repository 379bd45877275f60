"""What a client may make the receiver hold before it is authenticated: the HTTP server `koppel serve` runs.

Webhook signatures are checked on the whole body, so everything before that check is open to anyone who
can reach the port. uvicorn (kept, design card) bounds none of it with its httptools protocol: a header
block may grow without end (a 64 MB header cost the gateway 131 MB of memory), and a client that dribbles
its headers (slowloris) or its body holds a connection for ever. `LimitedHttpToolsProtocol` is uvicorn's
httptools protocol with these limits added (settings in `[gateway]`, docs/deployment.md):

* The request line and headers together over `max_header_bytes` → 431, the bytes beyond it never parsed.
* Headers not complete `header_timeout_seconds` after the connection opened (or, on a kept-alive
  connection, after the next request's first byte) → 408. uvicorn's keep-alive timeout covers the idle
  time between requests.
* A body not complete `body_timeout_seconds` after its headers → 408 (the app's `receive` then reports a
  disconnect). Time the server itself stopped reading because the app had not read yet does not count.
* More than `max_connections` open connections → 503 with Retry-After for the requests over the limit
  (after their headers, under the limits above), so a flood is answered, not queued without end.

The answers are written by the protocol itself; the connection is then half-closed and what the client still
sends is read and dropped for `LINGER_SECONDS` (so it can read the answer rather than meet a reset), then
closed. A body over an endpoint's cap is the app's to refuse (413, gateway/app.py `read_body`). The deadlines
are checked by one sweep per server each second (`SWEEP_SECONDS`), not by timers per request.

The protocol is chosen explicitly (`http=`), so the limits do not depend on which HTTP parser happens to be
installed; httptools is a declared dependency.
"""

from __future__ import annotations

import asyncio
import http
import logging
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.config import GatewaySettings

log = logging.getLogger("koppel.gateway")

LINGER_SECONDS = 2.0
"""After a refusal, how long what the client still sends is read and dropped before the connection closes."""


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16_384
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    retry_after: int = 5
    """Seconds a client refused for too many connections is asked to wait (Retry-After)."""

    @classmethod
    def of(cls, settings: GatewaySettings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


class _Throttle:
    """Lets a log line through at most once per `seconds`; counts the ones held back meanwhile."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = float("-inf")
        self.held = 0

    def due(self, now: float) -> int | None:
        """None: hold this one back; else log it, with the number held back since the last."""
        if now - self.last < self.seconds:
            self.held += 1
            return None
        held, self.held, self.last = self.held, 0, now
        return held


_LOGS = {status: _Throttle(10.0) for status in (408, 431, 503)}
"""One line per 10 s at most for each kind of refusal: a flood must not flood the log too."""


def _log_refusal(status: int, now: float, level: int, message: str, *args: object) -> None:
    held = _LOGS[status].due(now)
    if held is not None:
        log.log(level, message + "; answering %d (%d more not logged in the last 10 s)", *args, status, held)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing once the protocol has answered and is closing."""


def _answer(status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = message.encode()
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "content-type: text/plain; charset=utf-8",
            f"content-length: {len(body)}", "connection: close", *(f"{k}: {v}" for k, v in extra)]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


SWEEP_SECONDS = 1.0
"""How often the deadlines of a server's connections are checked: the timeouts are this precise."""
_SWEPT: weakref.WeakSet[ServerState] = weakref.WeakSet()
"""The servers whose connections a sweep is checking (one sweep per server, while it has connections)."""


def _sweep(loop: asyncio.AbstractEventLoop, server_state: ServerState) -> None:
    """Check every connection's deadlines, then again in `SWEEP_SECONDS` while any connection is open.

    One timer per server instead of timers armed and cancelled per request: the limits cost a request two
    `loop.time()` reads and a few attribute writes."""
    now = loop.time()
    for connection in list(server_state.connections):
        if isinstance(connection, LimitedHttpToolsProtocol):
            connection.check_deadlines(now)
    if server_state.connections:
        loop.call_later(SWEEP_SECONDS, _sweep, loop, server_state)
    else:
        _SWEPT.discard(server_state)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring (`limits`: set by `protocol_for`)."""

    limits: ClassVar[Limits] = Limits()

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading_head = True
        """The current request's headers are not complete yet (or the next request has not begun)."""
        self._head_bytes = 0
        self._heads_done = 0
        self._head_deadline: float | None = None
        self._body_deadline: float | None = None
        self._refused = False

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline = self.loop.time() + self.limits.header_timeout
        if self.server_state not in _SWEPT:
            _SWEPT.add(self.server_state)
            self.loop.call_later(SWEEP_SECONDS, _sweep, self.loop, self.server_state)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped until the linger ends
        self._unset_keepalive_if_required()
        if not self._reading_head:
            self._feed(data)
            return
        if self._head_deadline is None:
            self._head_deadline = self.loop.time() + self.limits.header_timeout
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            heads = self._heads_done
            if self._feed(data) and self._heads_done == heads:
                self._head_bytes += len(data)
            return
        heads = self._heads_done
        if not self._feed(data[:room]):
            return
        if self._heads_done == heads:
            limit = self.limits.max_header_bytes
            _log_refusal(431, self.loop.time(), logging.INFO, "request line and headers over %d bytes", limit)
            self._refuse(431, f"the request line and headers are over the server's limit of {limit} bytes")
            return
        self._feed(data[room:])

    def _feed(self, data: bytes) -> bool:
        """Parse `data`; False when the connection is being closed (a refusal, a malformed request)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            if not self._refused:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return False
        return not self._refused

    # Parser callbacks

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads_done += 1
        self._head_deadline = None
        if len(self.connections) > self.limits.max_connections:
            _log_refusal(503, self.loop.time(), logging.WARNING, "more than %d connections open ([gateway] "
                         "max_connections)", self.limits.max_connections)  # fmt: skip
            self._refuse(503, "the server is handling too many connections; retry later",
                         (("retry-after", str(self.limits.retry_after)),))  # fmt: skip
            raise _Refused
        super().on_headers_complete()
        self._body_deadline = self.loop.time() + self.limits.body_timeout

    def on_message_complete(self) -> None:
        self._body_deadline = None
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # Deadlines

    def check_deadlines(self, now: float) -> None:
        """Answer 408 for headers or a body past its deadline (called by the server's sweep)."""
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        if self._head_deadline is not None and now >= self._head_deadline:
            self._head_timed_out(now)
        if self._body_deadline is not None and now >= self._body_deadline:
            self._body_timed_out(now)

    def _head_timed_out(self, now: float) -> None:
        self._head_deadline = None
        if not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind one still being answered: the answer comes first, then the check.
            self._head_deadline = now + self.limits.header_timeout
            return
        _log_refusal(408, now, logging.INFO, "request headers not complete after %gs", self.limits.header_timeout)
        self._refuse(408, f"the request headers did not arrive within {self.limits.header_timeout:g} seconds")

    def _body_timed_out(self, now: float) -> None:
        self._body_deadline = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body:
            return
        if self.flow.read_paused and not cycle.response_started:
            # The server stopped reading because the app has not read what came yet: not the client's delay.
            self._body_deadline = now + self.limits.body_timeout
            return
        if cycle.response_complete:
            self.transport.close()  # answered already (a 413, say); the rest of the body is not waited for
        elif cycle.response_started:
            cycle.keep_alive = False  # closed once the answer under way is complete
        else:
            _log_refusal(408, now, logging.INFO, "request body not complete after %gs", self.limits.body_timeout)
            cycle.disconnected = True  # the app's receive() reports a disconnect; its answer is not sent
            cycle.message_event.set()
            self._refuse(408, f"the request body did not arrive within {self.limits.body_timeout:g} seconds")

    def _refuse(self, status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer `status` and close: half-close now, read and drop for `LINGER_SECONDS`, then close."""
        self._refused = True
        self._head_deadline = self._body_deadline = None
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        self.transport.write(_answer(status, message, extra))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


HEADROOM_FILES = 64
"""Open files the process needs besides the receiver's connections (Redis, logs, the journal)."""


def open_files_plan(max_connections: int, soft: int, hard: int) -> tuple[int | None, str | None]:
    """For the open-file limits `soft`/`hard` (-1: unlimited): the soft limit to raise to (None: leave it), and a
    sentence when even that is below `max_connections` plus `HEADROOM_FILES` (connections past it would fail
    to be accepted instead of being answered 503)."""
    wanted = max_connections + HEADROOM_FILES
    if soft == -1 or soft >= wanted:
        return None, None
    raised = wanted if hard == -1 else min(hard, wanted)
    if raised >= wanted:
        return raised, None
    return (raised if raised > soft else None), (
        f"the open-file limit ({hard}) is below [gateway] max_connections ({max_connections}) plus "
        f"{HEADROOM_FILES}: connections beyond it fail to be accepted instead of being answered 503; raise it "
        "(ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or lower max_connections"
    )


def ensure_open_files(max_connections: int) -> str | None:
    """Raise this process's soft open-file limit as far as `max_connections` needs (up to the hard limit);
    the sentence of `open_files_plan` when that is not enough, None otherwise or where there are no such limits."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_to, problem = open_files_plan(max_connections, soft, hard)
    if raise_to is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raise_to, hard))
        except (OSError, ValueError):
            return open_files_plan(max_connections, soft, soft)[1]
    return problem


def protocol_for(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn is given (`http=`), with these limits."""
    return type("KoppelHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def server_config(
    app: Any, settings: GatewaySettings, *, host: str, port: int, log_level: str = "info"
) -> uvicorn.Config:
    """The uvicorn configuration of the receiver: `koppel serve`, the demo stack and the tests all serve so."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol_for(Limits.of(settings)),
        ws="none",  # the receiver has no WebSocket routes: an upgrade request is answered as plain HTTP
        lifespan="on",
        access_log=False,
        # None: uvicorn's own lines (start-up, errors) go where Koppel's go, in Koppel's format.
        log_config=None,
    )
