"""The web console at /console/: integrations with their health, activity with payloads, failed work
with replay, mappings with previews, OAuth consent buttons, the systems' webhooks synced. Server-rendered
(Jinja2), plain forms.

Security: the operator logs in with the gateway's admin token (`gateway.admin_token`) and gets a
signed, expiring session cookie (HttpOnly, SameSite=Strict, Secure over https; console/session.py).
Every state-changing request is a POST carrying the session's CSRF token (403 otherwise); GET never
changes state. Every answer carries CSP `default-src 'self'`, X-Frame-Options DENY, nosniff and a
Referrer-Policy. Personal data in payloads is masked unless the operator asks to see it (?pii=show).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.contract import Context
from gateway import keys, mapview, snapshots
from gateway.activity import ActivityLog
from gateway.config import FLOWS, Config, Integration
from gateway.console.health import backlog, failed_job, failed_page, health, not_failed, oauth_systems
from gateway.console.session import COOKIE, Sessions
from gateway.console.setup import setup
from gateway.envelope import Envelope
from gateway.errors import KoppelError
from gateway.live import ConfigSource, current
from gateway.model import NormaliseError
from gateway.oauth import start_url
from gateway.ops import security_headers, sending_with
from gateway.replay import replay
from transforms.errors import MappingError, MappingSpecError
from transforms.integration import build_mapping, effective_mapping
from transforms.spec import render_toml
from workers.jobs import flow_of
from workers.subscriptions import HTTP_TIMEOUT, PUBLIC_URL_MISSING, managed_endpoints, plan_lines, sync_all
from workers.switches import switch_off, switch_on

__all__ = ["Console", "console_app"]

HERE = Path(__file__).parent
FORM_LIMIT = 1024 * 1024
"""The largest form body the console reads (a record pasted for a preview)."""
SECURITY_HEADERS = security_headers(b"default-src 'self'; frame-ancestors 'none'; base-uri 'self'")
SWITCH_REASON = "switched off by an operator in the web console"

templates = Jinja2Templates(directory=str(HERE / "templates"))


def _when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    """A duration as an operator reads it: "3 min", "2 h"."""
    whole = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def _ago(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return f"{_span(time.time() - epoch)} ago"


def _json(value: Any) -> str:
    return snapshots.to_json(value, indent=2)


templates.env.filters["when"] = _when
templates.env.filters["ago"] = _ago
templates.env.filters["span"] = _span
templates.env.filters["json"] = _json
templates.env.filters["scrub"] = lambda text, show=False: text if show else snapshots.mask(text)
"""Free text (a failure's reason) with e-mail addresses masked, unless `show`."""


class SecurityHeaders:
    """ASGI middleware: the console's security headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        await self.app(scope, receive, sending_with(send, SECURITY_HEADERS))


class Form(dict[str, str]):
    """A urlencoded form body; the first value of a repeated name wins."""


async def read_form(request: Request) -> Form:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > FORM_LIMIT:
            raise HTTPException(413, f"the form is over the console's limit of {FORM_LIMIT} bytes")
    if not body:
        return Form()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "the console takes forms as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form body is not valid urlencoded UTF-8") from None
    return Form(reversed(pairs))


Handler = Callable[[Request, "Console", Form, str], Awaitable[Response]]


class Console:
    """The console's state: config, Redis connection, sessions, payload snapshots."""

    def __init__(
        self, config: ConfigSource, connection: redis.Redis, *, snapshot_ttl: int = snapshots.DEFAULT_TTL
    ) -> None:
        self._config = config  # or the gateway's LiveConfig: read per request (gateway/live.py)
        self.connection = connection
        token = current(config).gateway.admin_token  # restart-only: the sessions are signed with it
        self.sessions = Sessions(token) if token is not None else None
        self.snapshots = snapshots.SnapshotStore(connection, snapshot_ttl)
        self.activity = ActivityLog(connection)

    @property
    def config(self) -> Config:
        return current(self._config)

    # -- rendering ---------------------------------------------------------------------------------

    def page(self, request: Request, name: str, status: int = 200, *, session: str = "", **context: Any) -> Response:
        base = request.scope.get("root_path", "").rstrip("/")
        csrf = self.sessions.csrf_token(session) if self.sessions is not None and session else ""
        ops = _site_root(request) + "/ops"
        values = {"base": base, "ops": ops, "csrf": csrf, "logged_in": bool(session), **context}
        return templates.TemplateResponse(request, name, values, status_code=status)

    def message(self, request: Request, status: int, title: str, text: str, *, session: str = "") -> Response:
        return self.page(request, "message.html", status, session=session, title=title, text=text)

    def integration(self, integration_id: str) -> Integration:
        found = next((i for i in self.config.integrations if i.id == integration_id), None)
        if found is None:
            raise HTTPException(404, f"there is no integration {integration_id!r} in the config")
        return found

    # -- access ---------------------------------------------------------------------------------------

    async def session_of(self, request: Request) -> str | None:
        """The request's session id: its cookie genuine, not expired, and not logged out."""
        if self.sessions is None:
            return None
        session = self.sessions.session_id(request.cookies.get(COOKIE))
        if session is None:
            return None
        ended = await asyncio.to_thread(self.connection.exists, keys.console_ended(session))
        return None if ended else session

    def guard(self, handler: Handler, *, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint: no admin token → how to set one; no session → the login page (GET) or 401
        (POST); a POST without its session's CSRF token → 403."""

        async def endpoint(request: Request) -> Response:
            if self.sessions is None:
                return _no_token(self, request)
            session = await self.session_of(request)
            if session is None:
                if not post:
                    return RedirectResponse(f"{request.scope.get('root_path', '')}/login", 303)
                return self.message(request, 401, "Log in first",
                                    "Your console session is missing or expired. Log in again and retry.")  # fmt: skip
            form = await read_form(request) if post else Form()
            if post and not self.sessions.csrf_ok(session, form.get("csrf")):
                return self.message(
                    request, 403, "Refused: the form's CSRF token is missing or wrong",
                    "Nothing was changed. Reload the page (it carries a fresh token) and submit the form again.",
                    session=session,
                )  # fmt: skip
            return await handler(request, self, form, session)

        return endpoint


def _no_token(console: Console, request: Request) -> Response:
    return console.page(request, "no_token.html", 403, title="The console needs an admin token")


# -- login ----------------------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.sessions is None:
        return _no_token(console, request)
    return console.page(request, "login.html", title="Log in", next_path=_next_path(request.query_params.get("next")))


def _site_root(request: Request) -> str:
    """The gateway's root path as the browser sees it (the console is mounted at /console)."""
    return str(request.scope.get("root_path", "")).rstrip("/").removesuffix("/console")


def _next_path(asked: str | None) -> str:
    """Where to go after logging in: a path on this gateway (the operator pages send the browser here
    with ?next=/ops/rq/), never another site; "" for the console's home."""
    if not asked or not asked.startswith("/") or asked.startswith("//") or "\\" in asked:
        return ""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in asked):
        return ""
    return asked


def cookie_path(request: Request) -> str:
    """The session cookie's path: the whole gateway, so that the operator pages (/ops) see the session too."""
    return _site_root(request) or "/"


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.sessions is None:
        return _no_token(console, request)
    form = await read_form(request)
    after = _next_path(form.get("next"))
    if not console.sessions.token_matches(form.get("token", "")):
        wrong = "That is not the gateway's admin token (gateway.admin_token). Try again."
        return console.page(request, "login.html", 401, title="Log in", error=wrong, next_path=after)
    base = request.scope.get("root_path", "")
    response = RedirectResponse(after or f"{base}/", 303)
    response.set_cookie(
        COOKIE, console.sessions.issue(), max_age=console.sessions.max_age, path=cookie_path(request),
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


async def logout(request: Request, console: Console, form: Form, session: str) -> Response:
    """End the session: the cookie is deleted, and the session refused from now on (a copy of the cookie too)."""
    assert console.sessions is not None
    await asyncio.to_thread(console.connection.set, keys.console_ended(session), "1", ex=console.sessions.max_age)
    base = request.scope.get("root_path", "")
    response = RedirectResponse(f"{base}/login", 303)
    response.delete_cookie(COOKIE, path=cookie_path(request), httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")  # fmt: skip
    return response


# -- integrations ----------------------------------------------------------------------------------------


async def integrations(request: Request, console: Console, form: Form, session: str) -> Response:
    rows = await asyncio.to_thread(health, console.connection, console.config)
    inbox = await asyncio.to_thread(backlog, console.connection, console.config)
    return console.page(request, "integrations.html", session=session, title="Integrations", rows=rows,
                        inbox=inbox)  # fmt: skip


async def switch(request: Request, console: Console, form: Form, session: str) -> Response:
    integration = console.integration(request.path_params["integration"])
    wanted = form.get("switch", "")
    if wanted == "off":
        await asyncio.to_thread(switch_off, console.connection, integration.id, SWITCH_REASON)
    elif wanted == "on":
        await asyncio.to_thread(switch_on, console.connection, integration.id)
    else:
        return console.message(request, 400, "Unknown switch",
                               f"switch must be 'on' or 'off', not {wanted!r}.", session=session)  # fmt: skip
    return RedirectResponse(f"{request.scope.get('root_path', '')}/", 303)


def _show_pii(request: Request) -> bool:
    return request.query_params.get("pii") == "show"


def _masked(data: Any, show: bool) -> Any:
    return data if show else snapshots.mask(data)


async def activity(request: Request, console: Console, form: Form, session: str) -> Response:
    integration = console.integration(request.path_params["integration"])
    show = _show_pii(request)

    def read() -> list[tuple[Any, dict[str, Any] | None]]:
        entries = console.activity.recent(integration.id, 100)
        found = console.snapshots.load_many(integration.id, [e.job_id for e in entries])
        return [(e, _masked(found[e.job_id], show) if e.job_id in found else None) for e in entries]

    rows = await asyncio.to_thread(read)
    return console.page(request, "activity.html", session=session, title=f"Activity of {integration.id}",
                        integration=integration, rows=rows, show_pii=show)  # fmt: skip


# -- failed work and replays ---------------------------------------------------------------------------------


async def failed(request: Request, console: Console, form: Form, session: str) -> Response:
    integration = console.integration(request.path_params["integration"])
    asked = request.query_params.get("page", "1")
    if not (asked.isascii() and asked.isdigit() and len(asked) < 10) or int(asked) < 1:
        raise HTTPException(400, f"page must be a page number (1, 2, …), not {asked!r}")
    found = await asyncio.to_thread(failed_page, console.connection, console.config, integration, int(asked))
    return console.page(request, "failed.html", session=session, title=f"Failed work of {integration.id}",
                        integration=integration, found=found, jobs=found.jobs)  # fmt: skip


async def replay_job(request: Request, console: Console, form: Form, session: str) -> Response:
    integration = console.integration(request.path_params["integration"])
    job_id = request.path_params["job"]
    job = await asyncio.to_thread(failed_job, console.connection, console.config, integration.id, job_id)
    if job is None:
        where = await asyncio.to_thread(not_failed, console.connection, console.config, job_id)
        return console.message(request, 404, "No such failed job", f"{integration.id} has no failed job {job_id!r}: "
                               f"{where}.", session=session)  # fmt: skip
    result = await asyncio.to_thread(replay, console.connection, console.config, [job_id])
    title = "Replayed" if result.requeued else "Not replayed"
    how = " with the current mapping" if form.get("mapping") == "current" else ""
    text = (f"Job {job_id} is queued again{how}; its outcome will show in the activity."
            if result.requeued else f"Job {job_id} could not be queued again (it is no longer failed).")  # fmt: skip
    return console.page(request, "message.html", session=session, title=title, text=text, integration=integration)


def _diff(before: Any, after: Any, before_name: str, after_name: str) -> list[str]:
    old = _json(before).splitlines(keepends=True)
    new = _json(after).splitlines(keepends=True)
    return [line if line.endswith("\n") else line + "\n"
            for line in difflib.unified_diff(old, new, fromfile=before_name, tofile=after_name)]  # fmt: skip


def _preview_error(exc: Exception) -> str:
    if isinstance(exc, MappingError):
        return f"{exc.record} cannot be mapped: " + "; ".join(exc.lines())
    if isinstance(exc, MappingSpecError):
        return "the mapping does not compile: " + "; ".join(f"{p or '(mapping)'}: {r}" for p, r in exc.problems)
    if isinstance(exc, NormaliseError):
        return f"the record is not one Koppel can read: {exc}"
    return str(exc)


PREVIEW_ERRORS = (mapview.Unpreviewable, MappingSpecError, MappingError, NormaliseError, KoppelError)


def _flow_of(envelope: dict[str, Any]) -> str:
    """The flow a queued event feeds ("" when the job's argument is no envelope)."""
    try:
        return flow_of(Envelope.model_validate(envelope)) or ""
    except ValueError:
        return ""


def remap(console: Console, integration: Integration, job_id: str, show: bool) -> dict[str, Any]:
    """What replaying a failed job with the current mapping would change: the original attempt's mapped
    payload against what the current mapping makes of the same input (the mapping input the snapshot kept;
    else the record read, else the event's payload, through the normaliser)."""
    job = failed_job(console.connection, console.config, integration.id, job_id)
    if job is None:
        where = not_failed(console.connection, console.config, job_id)
        raise HTTPException(404, f"{integration.id} has no failed job {job_id!r}: {where}")
    snap = console.snapshots.load(integration.id, job_id) or {}
    envelope = job.envelope or {}
    flow = snap.get("flow") or _flow_of(envelope)
    notes: list[str] = []
    mapped = [m for m in snap.get("mapped", []) if isinstance(m, dict) and m.get("flow") == flow]
    original = mapped[-1] if mapped else None
    context = snapshots.floats(original.get("context")) if original else None
    context = context if isinstance(context, dict) else None
    given = snapshots.floats(original.get("input")) if original else None
    record = snapshots.floats(snap.get("record"))
    current: Any = None
    error = ""
    if original is None:
        notes.append("The original attempt did not get as far as the mapping: nothing to compare with.")
    if not flow:
        error = "this job's event feeds no flow Koppel knows"
    elif isinstance(given, dict):  # the very input the original mapping had
        try:
            _, target_kind = mapview.kinds(console.config, integration)
            current = mapview.remap(integration, flow, target_kind, given, context)
        except PREVIEW_ERRORS as exc:
            error = _preview_error(exc)
    else:
        if record is None:
            record = envelope.get("payload")
            notes.append("The original attempt did not read the record (or its snapshot expired): "
                         "the event's payload is the input.")  # fmt: skip
        else:
            notes.append("The record as read is the input: steps the flow takes before mapping are not in it.")
        try:
            current = mapview.preview(console.config, integration, flow, record, context)
        except PREVIEW_ERRORS as exc:
            error = _preview_error(exc)
    before = _masked(original["payload"], show) if original else None
    after = _masked(current, show) if current is not None else None
    lines = _diff(before, after, "original attempt", "current mapping") if original and current is not None else []
    return {"job": job, "flow": flow, "notes": notes, "error": error, "before": before, "after": after,
            "diff": lines, "sent": _masked(snap.get("requests", []), show)}  # fmt: skip


async def remap_page(request: Request, console: Console, form: Form, session: str) -> Response:
    integration = console.integration(request.path_params["integration"])
    show = _show_pii(request)
    found = await asyncio.to_thread(remap, console, integration, request.path_params["job"], show)
    return console.page(request, "remap.html", session=session, title="Replay with the current mapping",
                        integration=integration, show_pii=show, **found)  # fmt: skip


# -- mappings -----------------------------------------------------------------------------------------------


def _sample(console: Console, integration: Integration, flow: str) -> Any:
    """The latest record this integration's flow read (from the payload snapshots), or None."""
    for entry in console.activity.recent(integration.id, 200):
        if entry.flow != flow or not entry.job_id:
            continue
        snap = console.snapshots.load(integration.id, entry.job_id)
        if snap and snap.get("record") is not None:
            return snap["record"]
    return None


def mapping_view(console: Console, integration: Integration, flow: str, raw_input: str | None) -> dict[str, Any]:
    _, target_kind = mapview.kinds(console.config, integration)
    out: dict[str, Any] = {"flow": flow, "target_kind": target_kind, "toml": "", "diff": None, "error": "",
                           "input": raw_input or "", "output": None, "preview_error": ""}  # fmt: skip
    try:
        effective = effective_mapping(integration, flow, target_kind)
        out["toml"] = render_toml(effective.spec, f"integrations.mappings.{flow}.{target_kind}")
        out["description"] = effective.default.description
        out["diff"] = mapview.diff_lines(integration, flow, target_kind, tofile=f"{integration.id} mappings.{flow}")
    except MappingSpecError as exc:
        out["error"] = _preview_error(exc)
        return out
    try:
        build_mapping(integration, flow, target_kind)  # compiles every expression: names what does not
    except MappingSpecError as exc:
        out["error"] = _preview_error(exc)
        return out
    if raw_input is None:
        sample = _sample(console, integration, flow)
        if sample is None:
            return out
        out["input"] = _json(sample)
        out["sampled"] = True
    try:
        record = json.loads(out["input"])
    except ValueError as exc:
        out["preview_error"] = f"the input is not JSON: {exc}"
        return out
    try:
        out["output"] = mapview.preview(console.config, integration, flow, record)
    except PREVIEW_ERRORS as exc:
        out["preview_error"] = _preview_error(exc)
    return out


async def mapping(request: Request, console: Console, form: Form, session: str) -> Response:
    integration = console.integration(request.path_params["integration"])
    flow = request.path_params["flow"]
    if flow not in FLOWS or flow not in integration.flows:
        raise HTTPException(404, f"integration {integration.id!r} does not run a {flow!r} flow "
                                 f"(flows: {', '.join(integration.flows)})")  # fmt: skip
    raw = form.get("input") if request.method == "POST" else None
    found = await asyncio.to_thread(mapping_view, console, integration, flow, raw)
    return console.page(request, "mapping.html", session=session, title=f"Mapping of {integration.id}: {flow}",
                        integration=integration, **found)  # fmt: skip


# -- OAuth consent ---------------------------------------------------------------------------------------------


async def connect(request: Request, console: Console, form: Form, session: str) -> Response:
    system_id = request.path_params["system"]
    if not any(system_id in [s.id for s in oauth_systems(console.config, i)] for i in console.config.integrations):
        return console.message(request, 404, "Nothing to connect",
                               f"{system_id!r} is not a system of an integration that needs consent.",
                               session=session)  # fmt: skip
    try:
        url = start_url(console.config, system_id)  # the gateway's start: binds the consent to this browser
    except KoppelError as exc:
        return console.message(request, 400, "Cannot start the consent", str(exc), session=session)
    return RedirectResponse(url, 303)


# -- webhooks -----------------------------------------------------------------------------------------------------


STATES = {"keep": "in sync", "create": "would create", "enable": "would re-activate", "update": "would repair",
          "renew": "would renew", "delete": "would delete", "paused": "paused: left so"}  # fmt: skip
"""A dry run's step per topic, as the Webhooks page names it."""


def sync_webhooks(config: Config, connection: redis.Redis, *, dry_run: bool) -> dict[str, Any]:
    """What `koppel endpoints sync` (with `dry_run`: `--dry-run`) says, for the Webhooks page: each endpoint's
    plan as the CLI's lines, the failures as its sentences. One HTTP client for the whole operator action."""
    managed = managed_endpoints(config)
    out: dict[str, Any] = {"dry_run": dry_run, "plans": [], "failures": [], "missing": "", "managed": len(managed)}
    if config.gateway.public_url is None:
        out["missing"] = PUBLIC_URL_MISSING
        return out
    if not managed:
        return out
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:  # a dry run records nothing: no activity, no polls
        report = sync_all(config, managed, Context(http=http, redis=connection),
                          connection=None if dry_run else connection, dry_run=dry_run)  # fmt: skip
    out["plans"] = [{"plan": p, "lines": plan_lines(p, dry_run=dry_run),
                     "rows": [(a.topic, a.kind, STATES[a.kind], a.describe()) for a in p.actions]}
                    for p in report.plans]  # fmt: skip
    out["failures"] = report.failures
    return out


async def webhooks(request: Request, console: Console, form: Form, session: str) -> Response:
    """GET: what syncing would do (a dry run); POST: sync, and what was done."""
    dry_run = request.method != "POST"
    found = await asyncio.to_thread(sync_webhooks, console.config, console.connection, dry_run=dry_run)
    return console.page(request, "webhooks.html", session=session, title="Webhooks", **found)


# -- the app ----------------------------------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    console: Console = request.app.state.console
    titles = {404: "Not found", 405: "Method not allowed", 413: "Too large", 415: "Unsupported form", 400: "Bad form"}
    text = str(exc.detail) if exc.status_code != 404 or exc.detail != "Not Found" else f"no page {request.url.path}"
    if exc.status_code == 405:
        text = f"{request.method} is not allowed here (forms that change something are POSTed)"
    session = console.sessions.session_id(request.cookies.get(COOKIE)) if console.sessions else None
    return console.message(request, exc.status_code, titles.get(exc.status_code, "Error"), text,
                           session=session or "")  # fmt: skip


def console_app(console: Console) -> ASGIApp:
    """The console's ASGI app, to be mounted at /console (its `session_of` also guards the operator pages)."""
    g = console.guard
    routes = [
        Route("/", g(integrations), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", g(logout, post=True), methods=["POST"]),
        Route("/integrations/{integration}", g(activity), methods=["GET"]),
        Route("/integrations/{integration}/switch", g(switch, post=True), methods=["POST"]),
        Route("/integrations/{integration}/failed", g(failed), methods=["GET"]),
        Route("/integrations/{integration}/failed/{job}/replay", g(replay_job, post=True), methods=["POST"]),
        Route("/integrations/{integration}/failed/{job}/remap", g(remap_page), methods=["GET"]),
        Route("/integrations/{integration}/mappings/{flow}", g(mapping), methods=["GET"]),
        Route("/integrations/{integration}/mappings/{flow}", g(mapping, post=True), methods=["POST"]),
        Route("/connect/{system}", g(connect, post=True), methods=["POST"]),
        Route("/webhooks", g(webhooks), methods=["GET"]),
        Route("/webhooks", g(webhooks, post=True), methods=["POST"]),
        Route("/setup", g(setup), methods=["GET"]),
        Route("/setup", g(setup, post=True), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.console = console
    return SecurityHeaders(app)
