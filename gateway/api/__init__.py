"""The admin API under /api/v1/ (docs/api.md): endpoints, systems and integrations read and changed in the
config file, a change validated without applying it, an integration's health and activity, replays of failed
work, `endpoints sync`.

* who: `Authorization: Bearer <gateway.admin_token>` (constant-time compare), on every route; 401 with
  `WWW-Authenticate` otherwise; 403 while no admin token is configured.
* the file is the source of truth: reads come from it (secrets as their `env:NAME` references only), changes
  go into it through tomlkit with its comments and layout kept (api/document.py), checked whole as
  `koppel config check` checks it before it is replaced (atomically). Every answer about the file carries its
  ETag; a change must send it back in If-Match (428 without, 409 when the file changed since). After a change
  the gateway's `app.state.reload_config`, when it has one, applies it at once; otherwise a watcher of the
  file does.
* health, activity, replay and sync act on the config the gateway runs (`app.state.config`).

Every route is one `Operation` in `OPERATIONS`: the router and the OpenAPI document (`openapi()`) are both
made from that table, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import httpx
import redis
import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send
from tomlkit.toml_document import TOMLDocument

from connectors.contract import Context
from gateway import snapshots
from gateway.activity import OUTCOMES, ActivityLog
from gateway.api import document
from gateway.api.document import SECTIONS, DocumentError, Section
from gateway.config import Config, Endpoint, Integration, System
from gateway.replay import failed_job_ids, locate_job, replay

log = logging.getLogger("koppel.api")

PREFIX = "/api/v1"
BODY_LIMIT = 1024 * 1024
"""The largest request body the API reads."""
ACTIVITY_LIMIT = 1000

_SINGULAR: dict[Section, str] = {"endpoints": "endpoint", "systems": "system", "integrations": "integration"}
_MODELS: dict[Section, type[BaseModel]] = {"endpoints": Endpoint, "systems": System, "integrations": Integration}


# -- request and response bodies (the OpenAPI document's schemas) ----------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Body):
    """Every error answer: what went wrong, in a sentence; `problems` lists key paths with what is wrong there."""

    error: str
    message: str
    problems: list[str] = []


class Reload(_Body):
    """Whether the running gateway took the change: `applied`, `refused` (its problems; the file is written and
    the running config stays), or `pending` (no reload hook here: the gateway's file watcher takes it)."""

    status: Literal["applied", "refused", "pending"]
    problems: list[str] = []


class ItemList(_Body):
    items: list[dict[str, Any]]


class Change(_Body):
    """A change written to the config file: the item as it now is (None once deleted) and the file's new ETag."""

    section: Section
    id: str
    item: dict[str, Any] | None
    etag: str
    reload: Reload


class ProposedChange(_Body):
    op: Literal["create", "replace", "patch", "delete"]
    section: Section
    id: str | None = Field(default=None, description="the item's id (replace, patch, delete)")
    item: dict[str, Any] | None = Field(default=None, description="the item (create, replace) or a merge patch")


class ValidateRequest(_Body):
    """Exactly one of: a whole config (`document`, as JSON; or `toml`, as TOML text), or a `change` to the file."""

    document: dict[str, Any] | None = None
    toml: str | None = None
    change: ProposedChange | None = None

    @model_validator(mode="after")
    def _one(self) -> ValidateRequest:
        given = [name for name in ("document", "toml", "change") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of document, toml or change")
        return self


class ValidateResult(_Body):
    valid: bool
    problems: list[str]


class ReplayRequest(_Body):
    """Exactly one of: job ids, an integration (its failed jobs), or all failed jobs."""

    jobs: list[str] | None = Field(default=None, min_length=1)
    integration: str | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> ReplayRequest:
        if (self.jobs is not None) + (self.integration is not None) + self.all != 1:
            raise ValueError("give exactly one of jobs, integration or all = true")
        return self


class ReplayResult(_Body):
    requeued: list[str]
    missing: list[str] = Field(description="ids not in the failed registry (replayed already, expired, unknown)")
    where: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per missing id, where it is instead (as `koppel replay --json`): `state` (`inbox`, an RQ "
        "job's status, `finished`, `unknown`), `direct` (run by a worker straight from the inbox, no RQ job), "
        "`runs_as` (the job it was merged into, or itself), `description`, `ended_at`, `worker`, `result`",
    )


class SyncRequest(_Body):
    dry_run: bool = False
    endpoint: str | None = Field(default=None, description="only this endpoint")


class SyncResult(_Body):
    """What `koppel endpoints sync --json` prints."""

    dry_run: bool
    endpoints: list[dict[str, Any]]
    failures: list[str]


class Inbox(_Body):
    queue: str
    depth: int
    oldest_age_seconds: float
    workers: int


class Health(_Body):
    """What the web console shows of an integration."""

    integration: str
    source: str
    target: str
    flows: list[str]
    enabled: bool
    switched_off: str | None = Field(description="why a system or an operator switched it off; None when on")
    last_event: dict[str, Any] | None
    failed_jobs: int
    budgets: list[dict[str, Any]]
    polls: list[dict[str, Any]]
    connections: list[dict[str, Any]]
    inbox: Inbox


class ActivityList(_Body):
    integration: str
    entries: list[dict[str, Any]] = Field(description="newest first; never payload data or secrets")


# -- plumbing -------------------------------------------------------------------------------------------------


def _error(status: int, reason: str, message: str, problems: list[str] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    body: dict[str, Any] = {"error": reason, "message": message}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, headers=headers)


def _problems(error: ValidationError) -> list[str]:
    out = []
    for err in error.errors(include_input=False, include_url=False):
        path = ".".join(str(part) for part in err["loc"]) or "(body)"
        out.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
    return out


async def _json(request: Request, *, empty: Any = None) -> Any:
    """The request's JSON body: 415 unless it says JSON, 413 over `BODY_LIMIT`, 400 when it does not parse.
    An empty body is `empty` when given (400 otherwise)."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > BODY_LIMIT:
            raise DocumentError(413, "too_large", f"the body is over the API's limit of {BODY_LIMIT} bytes")
    if not body and empty is not None:
        return empty
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise DocumentError(415, "unsupported_media_type", "the API takes JSON: send Content-Type: application/json")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise DocumentError(400, "malformed_json", "the body is not valid JSON (UTF-8)") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; JSON has neither


async def _object(request: Request, *, empty: Any = None) -> dict[str, Any]:
    data = await _json(request, empty=empty)
    if not isinstance(data, dict):
        raise DocumentError(422, "invalid_body", "the body must be a JSON object")
    return data


M = TypeVar("M", bound=BaseModel)


def _model(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DocumentError(422, "invalid_body", "the body is not what this call takes", _problems(exc)) from None


def _config_path(request: Request) -> Path:
    path: Path | None = getattr(request.app.state, "config_path", None)
    if path is None:
        raise DocumentError(503, "no_config_file", "this gateway was started without a config file path (koppel "
                            "serve --config PATH): the admin API has no file to read or change")  # fmt: skip
    return Path(path).resolve()  # a symlinked file is changed where it lives; the link stays


def _running(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def _check(file: Path, shown: str) -> list[str]:
    """`koppel config check`'s problems of a file, its (temporary) path shown as `shown`."""
    from gateway.checks import check_file

    _, problems = check_file(file)
    return [problem.replace(str(file), shown) for problem in problems]


def _check_text(text: str) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="koppel-api-") as directory:
        file = Path(directory) / "config.toml"
        file.write_text(text, encoding="utf-8")
        return _check(file, "(document)")


@dataclass
class _Loaded:
    path: Path
    doc: TOMLDocument
    etag: str


def _load_file(path: Path) -> _Loaded:
    try:
        data, etag = document.read(path)
    except FileNotFoundError:
        raise DocumentError(503, "no_config_file", f"the config file {path} does not exist") from None
    except OSError as exc:
        raise DocumentError(
            503, "config_unreadable", f"the config file cannot be read ({type(exc).__name__})"
        ) from None
    try:
        return _Loaded(path, document.parse(data.decode("utf-8")), etag)
    except (UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise DocumentError(409, "config_unreadable", f"the config file is not valid TOML ({exc}): fix it by hand, "
                            "then retry") from None  # fmt: skip


async def _load(request: Request) -> _Loaded:
    return await asyncio.to_thread(_load_file, _config_path(request))


def _item_id(request: Request) -> str:
    return str(request.path_params["id"])


def _find(loaded: _Loaded, section: Section, item_id: str) -> int:
    index = document.index_of(loaded.doc, section, item_id)
    if index is None:
        raise DocumentError(404, "not_found", f"there is no {_SINGULAR[section]} {item_id!r} in the config file")
    return index


def _referrers(doc: TOMLDocument, section: Section, item_id: str) -> list[str]:
    """What in the file names the item: integrations by source or target, endpoints by their system."""
    out: list[str] = []
    for integration in document.items(doc, "integrations"):
        for role in ("source", "target"):
            if section != "integrations" and integration.get(role) == item_id:
                out.append(f"integration {integration.get('id')!r} ({role})")
    if section == "systems":
        endpoints = document.items(doc, "endpoints")
        out += [f"endpoint {e.get('id')!r} (system)" for e in endpoints if e.get("system") == item_id]
    return out


def _checked_item(section: Section, data: dict[str, Any], *, patch: bool = False) -> None:
    """422 for a literal secret (named by its key, never echoed) or a null (not in a patch)."""
    secrets = document.literal_secrets(section, data if not patch else _without_nulls(data))
    if secrets:
        raise DocumentError(422, "literal_secret", "secrets are given as env:NAME references only: "
                            + "; ".join(p.split(":")[0] for p in secrets), secrets)  # fmt: skip
    nulls = [] if patch else document.nulls(data)
    if nulls:
        raise DocumentError(422, "invalid_body", "the item holds null values", nulls)


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _without_nulls(value) for key, value in data.items() if value is not None}
    if isinstance(data, list):
        return [_without_nulls(value) for value in data]
    return data


async def _reload(request: Request) -> Reload:
    hook = getattr(request.app.state, "reload_config", None)
    if not callable(hook):
        return Reload(status="pending")
    try:
        problems = await asyncio.to_thread(hook)
    except Exception as exc:  # the running config stays; the file is written: said, not a 500
        log.warning("the config file was changed by the admin API, but reloading it failed (%s); the file watcher "
                    "or a restart applies it", type(exc).__name__)  # fmt: skip
        return Reload(status="refused", problems=[f"reloading failed ({type(exc).__name__})"])
    problems = [str(p) for p in problems or []]
    return Reload(status="refused" if problems else "applied", problems=problems)


def _apply(loaded: _Loaded, change: ProposedChange) -> dict[str, Any] | None:
    """Apply a change to the loaded document (raising the API's refusals); the item as it now is."""
    section, doc = change.section, loaded.doc
    if change.op == "create":
        item = change.item
        if item is None:
            raise DocumentError(422, "invalid_body", "item: required to create")
        _checked_item(section, item)
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise DocumentError(422, "invalid_body", "id: required (a string)", ["id: required (a string)"])
        if document.index_of(doc, section, item_id) is not None:
            raise DocumentError(409, "exists", f"there is a {_SINGULAR[section]} {item_id!r} already; change it with "
                                "PUT or PATCH")  # fmt: skip
        document.create(doc, section, item)
        return item
    if change.id is None:
        raise DocumentError(422, "invalid_body", f"id: required to {change.op}")
    index = _find(loaded, section, change.id)
    if change.op == "delete":
        referrers = _referrers(doc, section, change.id)
        if referrers:
            raise DocumentError(409, "referenced", f"{_SINGULAR[section]} {change.id!r} is still named by "
                                f"{', '.join(referrers)}: change or delete those first", referrers)  # fmt: skip
        document.delete(doc, section, index)
        return None
    if change.item is None:
        raise DocumentError(422, "invalid_body", f"item: required to {change.op}")
    _checked_item(section, change.item, patch=change.op == "patch")
    current = document.plain(document.items(doc, section)[index])
    new = document.merge_patch(current, change.item) if change.op == "patch" else dict(change.item)
    if not isinstance(new, dict):
        raise DocumentError(422, "invalid_body", "the item must be a JSON object")
    nulls = document.nulls(new)  # a merge patch's null removes a key; inside a list it is a value
    if nulls:
        raise DocumentError(422, "invalid_body", "the item would hold null values", nulls)
    new.setdefault("id", change.id)
    if new["id"] != change.id:
        raise DocumentError(422, "invalid_body", "id: an item's id cannot be changed (create the new one, then "
                            "delete the old one)", ["id: cannot be changed"])  # fmt: skip
    document.replace(doc, section, index, new)
    return new


def _edit(loaded: _Loaded, change: ProposedChange) -> dict[str, Any] | None:
    """`_apply`, a value TOML cannot hold refused (422)."""
    try:
        return _apply(loaded, change)
    except (tomlkit.exceptions.TOMLKitError, ValueError, TypeError) as exc:
        raise DocumentError(422, "invalid_body", f"the item cannot be written as TOML ({type(exc).__name__})") from None


async def _write(request: Request, change: ProposedChange, *, status: int = 200) -> Response:
    if_match = request.headers.get("if-match")
    if if_match is None:
        raise DocumentError(428, "precondition_required", "send If-Match with the ETag of your last read of the "
                            "config (GET answers carry it): changes are never made blind")  # fmt: skip
    loaded = await _load(request)
    if not document.matches(if_match, loaded.etag):
        raise DocumentError(
            409,
            "changed",
            "the config file changed since your read (its ETag is not the one in If-Match); read it again and retry",
        )
    item = _edit(loaded, change)
    text = tomlkit.dumps(loaded.doc)
    path = loaded.path
    etag = await asyncio.to_thread(document.write_checked, path, text, loaded.etag, lambda f: _check(f, str(path)))
    log.info("admin API: %s %s %r in %s", change.op, change.section, change.id or (item or {}).get("id"), path)
    result = Change(section=change.section, id=str(change.id or (item or {}).get("id")),
                    item=document.redacted(change.section, item) if item is not None else None,
                    etag=etag, reload=await _reload(request))  # fmt: skip
    headers = {"ETag": etag}
    if status == 201:
        headers["Location"] = f"{PREFIX}/{change.section}/{result.id}"
    return JSONResponse(result.model_dump(), status_code=status, headers=headers)


# -- the handlers ---------------------------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


def _list(section: Section) -> Handler:
    async def handler(request: Request) -> Response:
        loaded = await _load(request)
        found = [document.redacted(section, item) for item in document.items(loaded.doc, section)]
        return JSONResponse(ItemList(items=found).model_dump(), headers={"ETag": loaded.etag})

    return handler


def _read(section: Section) -> Handler:
    async def handler(request: Request) -> Response:
        loaded = await _load(request)
        index = _find(loaded, section, _item_id(request))
        item = document.items(loaded.doc, section)[index]
        return JSONResponse(document.redacted(section, item), headers={"ETag": loaded.etag})

    return handler


def _create(section: Section) -> Handler:
    async def handler(request: Request) -> Response:
        item = await _object(request)
        return await _write(request, ProposedChange(op="create", section=section, item=item), status=201)

    return handler


def _update(section: Section, op: Literal["replace", "patch"]) -> Handler:
    async def handler(request: Request) -> Response:
        item = await _object(request)
        change = ProposedChange(op=op, section=section, id=_item_id(request), item=item)
        return await _write(request, change)

    return handler


def _delete(section: Section) -> Handler:
    async def handler(request: Request) -> Response:
        return await _write(request, ProposedChange(op="delete", section=section, id=_item_id(request)))

    return handler


async def validate(request: Request) -> Response:
    body = _model(ValidateRequest, await _object(request))
    headers: dict[str, str] = {}
    if body.change is not None:
        loaded = await _load(request)
        headers["ETag"] = loaded.etag
        try:
            _edit(loaded, body.change)
        except DocumentError as exc:
            if exc.status not in (409, 422):  # exists already, still referenced, invalid: the change's problems
                raise
            return JSONResponse(ValidateResult(valid=False, problems=exc.problems or [exc.message]).model_dump(),
                                headers=headers)  # fmt: skip
        text = tomlkit.dumps(loaded.doc)
    elif body.document is not None:
        secrets = document.document_literal_secrets(body.document)
        if secrets:
            raise DocumentError(422, "literal_secret", "secrets are given as env:NAME references only", secrets)
        nulls = document.nulls(body.document)
        if nulls:
            return JSONResponse(ValidateResult(valid=False, problems=nulls).model_dump())
        try:
            text = tomlkit.dumps(body.document)
        except (tomlkit.exceptions.TOMLKitError, ValueError, TypeError) as exc:
            problem = f"(document): cannot be written as TOML ({type(exc).__name__})"
            return JSONResponse(ValidateResult(valid=False, problems=[problem]).model_dump())
    else:
        text = cast(str, body.toml)
        try:
            parsed = tomlkit.parse(text)
        except tomlkit.exceptions.TOMLKitError:
            parsed = None  # the check names the parse error
        secrets = document.document_literal_secrets(document.plain(parsed)) if parsed is not None else []
        if secrets:
            raise DocumentError(422, "literal_secret", "secrets are given as env:NAME references only", secrets)
    problems = await asyncio.to_thread(_check_text, text)
    return JSONResponse(ValidateResult(valid=not problems, problems=problems).model_dump(), headers=headers)


def _integration(request: Request) -> tuple[Config, Integration]:
    config = _running(request)
    integration_id = str(request.path_params["id"])
    found = next((i for i in config.integrations if i.id == integration_id), None)
    if found is None:
        raise DocumentError(404, "not_found", f"there is no integration {integration_id!r} in the running config")
    return config, found


def _connection(request: Request) -> redis.Redis:
    connection: redis.Redis = request.app.state.ingestor.connection
    return connection


async def health(request: Request) -> Response:
    from gateway.console.health import backlog
    from gateway.console.health import health as health_of

    config, integration = _integration(request)
    connection = _connection(request)

    def read() -> Health:
        found = next(h for h in health_of(connection, config) if h.integration.id == integration.id)
        waiting = backlog(connection, config)
        last = found.last
        return Health(
            integration=integration.id, source=integration.source, target=integration.target,
            flows=list(integration.flows), enabled=integration.enabled, switched_off=found.off,
            last_event=_activity(last) if last is not None else None, failed_jobs=found.failed,
            budgets=[asdict(b) for b in found.budgets], polls=[asdict(p) for p in found.polls],
            connections=[{"system": c.system.id, "state": c.state, "since": c.since, "reason": c.reason}
                         for c in found.connections],
            inbox=Inbox(queue=waiting.queue, depth=waiting.view.depth, oldest_age_seconds=waiting.view.oldest_age,
                        workers=waiting.workers),
        )  # fmt: skip

    return JSONResponse((await asyncio.to_thread(read)).model_dump())


def _activity(entry: Any) -> dict[str, Any]:
    out: dict[str, Any] = asdict(entry)
    out["latency"] = round(entry.latency, 3)
    out["reason"] = snapshots.mask(entry.reason)  # a system's error text may quote an e-mail address
    return out


async def activity(request: Request) -> Response:
    _, integration = _integration(request)
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= ACTIVITY_LIMIT:
        raise DocumentError(422, "invalid_query", f"limit: a number from 1 to {ACTIVITY_LIMIT}")
    outcome = request.query_params.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise DocumentError(422, "invalid_query", f"outcome: one of {', '.join(sorted(OUTCOMES))}")
    since = request.query_params.get("since_minutes")
    try:
        cutoff = time.time() - float(since) * 60 if since is not None else None
    except ValueError:
        raise DocumentError(422, "invalid_query", "since_minutes: a number of minutes") from None
    connection = _connection(request)

    def read() -> list[dict[str, Any]]:
        entries = ActivityLog(connection).recent(integration.id, ACTIVITY_LIMIT if outcome or cutoff else limit)
        kept = [e for e in entries if (outcome is None or e.outcome == outcome)
                and (cutoff is None or e.received_at >= cutoff)]  # fmt: skip
        return [_activity(e) for e in kept[:limit]]

    entries = await asyncio.to_thread(read)
    return JSONResponse(ActivityList(integration=integration.id, entries=entries).model_dump())


async def replay_failed(request: Request) -> Response:
    body = _model(ReplayRequest, await _object(request))
    config = _running(request)
    if body.integration is not None and body.integration not in {i.id for i in config.integrations}:
        raise DocumentError(404, "not_found", f"there is no integration {body.integration!r} in the running config")
    connection = _connection(request)

    def run() -> ReplayResult:
        ids = body.jobs or failed_job_ids(connection, config, body.integration)
        result = replay(connection, config, ids)
        where = {job_id: locate_job(connection, config.gateway.queue, job_id).as_dict() for job_id in result.missing}
        return ReplayResult(requeued=result.requeued, missing=result.missing, where=where)

    result = await asyncio.to_thread(run)
    log.info("admin API: replayed %d failed job(s)", len(result.requeued))
    return JSONResponse(result.model_dump())


async def sync(request: Request) -> Response:
    from workers.subscriptions import HTTP_TIMEOUT, PUBLIC_URL_MISSING, managed_endpoints, sync_all

    body = _model(SyncRequest, await _object(request, empty={}))
    config = _running(request)
    if config.gateway.public_url is None:
        raise DocumentError(409, "public_url_missing", PUBLIC_URL_MISSING)
    managed = managed_endpoints(config)
    if body.endpoint is not None:
        managed = [m for m in managed if m.endpoint.id == body.endpoint]
        if not managed:
            raise DocumentError(404, "not_found", f"endpoint {body.endpoint!r} has no webhooks Koppel manages (it "
                                "must name its system, of a kind with managed webhooks, and feed an enabled "
                                "integration)")  # fmt: skip
    connection = _connection(request)

    def run() -> SyncResult:
        with httpx.Client(timeout=HTTP_TIMEOUT) as http:  # a dry run records nothing: no activity, no polls
            report = sync_all(config, managed, Context(http=http, redis=connection),
                              connection=None if body.dry_run else connection, dry_run=body.dry_run)  # fmt: skip
        return SyncResult(dry_run=body.dry_run, endpoints=[p.as_dict() for p in report.plans],
                          failures=report.failures)  # fmt: skip

    return JSONResponse((await asyncio.to_thread(run)).model_dump())


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi())


# -- the route table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One route: how it is served and how the OpenAPI document describes it."""

    method: str
    path: str
    """Below `PREFIX`; `{id}` is the item's id."""
    handler: Handler
    summary: str
    tag: str
    body: str | None = None
    """The request body's schema: a name in the document's components."""
    response: str | None = None
    status: int = 200
    query: tuple[Param, ...] = ()
    changes: bool = False
    """Needs If-Match (a change of the config file)."""
    errors: tuple[int, ...] = ()
    etag: bool = False
    """Its answer carries the file's ETag."""
    notes: str = ""


def _operations() -> list[Operation]:
    ops: list[Operation] = []
    for section in SECTIONS:
        one, model = _SINGULAR[section], _MODELS[section].__name__
        a_one = f"an {one}" if one[0] in "aeiou" else f"a {one}"
        file_errors = (503,)
        ops += [
            Operation("GET", f"/{section}", _list(section), f"List the {section}", section, response="ItemList",
                      etag=True, errors=file_errors),
            Operation("POST", f"/{section}", _create(section), f"Create {a_one}", section, body=model,
                      response="Change", status=201, changes=True, errors=(400, 409, 415, 422, 428, 503), etag=True),
            Operation("GET", f"/{section}/{{id}}", _read(section), f"Read {a_one}", section, response=model,
                      etag=True, errors=(404, 503)),
            Operation("PUT", f"/{section}/{{id}}", _update(section, "replace"), f"Replace {a_one}", section,
                      body=model, response="Change", changes=True, errors=(400, 404, 409, 415, 422, 428, 503),
                      etag=True),
            Operation("PATCH", f"/{section}/{{id}}", _update(section, "patch"), f"Change part of {a_one} "
                      "(JSON Merge Patch, RFC 7396: null removes a key)", section, body="MergePatch",
                      response="Change", changes=True, errors=(400, 404, 409, 415, 422, 428, 503), etag=True),
            Operation("DELETE", f"/{section}/{{id}}", _delete(section), f"Delete {a_one}", section, response="Change",
                      changes=True, errors=(404, 409, 422, 428, 503), etag=True,
                      notes="409 `referenced` while an integration or endpoint still names it."),
        ]  # fmt: skip
    ops += [
        Operation("POST", "/config/validate", validate, "Check a whole config, or a change to the file, without "
                  "applying it: the problems `koppel config check` reports", "config", body="ValidateRequest",
                  response="ValidateResult", errors=(400, 404, 415, 422, 503), etag=True),
        Operation("GET", "/integrations/{id}/health", health, "An integration's health, as the console shows it",
                  "operations", response="Health", errors=(404, 503)),
        Operation("GET", "/integrations/{id}/activity", activity, "An integration's recent activity, newest first",
                  "operations", response="ActivityList", errors=(404, 422, 503), query=(
                      Param("limit", "at most this many entries (1-1000, default 100)",
                            {"type": "integer", "minimum": 1, "maximum": ACTIVITY_LIMIT, "default": 100}),
                      Param("outcome", "only entries with this outcome",
                            {"type": "string", "enum": sorted(OUTCOMES)}),
                      Param("since_minutes", "only entries received this many minutes ago or later",
                            {"type": "number", "exclusiveMinimum": 0}))),
        Operation("POST", "/replay", replay_failed, "Requeue failed jobs: by id, an integration's, or all",
                  "operations", body="ReplayRequest", response="ReplayResult", errors=(400, 404, 415, 422, 503)),
        Operation("POST", "/endpoints/sync", sync, "Create and repair the systems' webhooks for the endpoints "
                  "(`koppel endpoints sync`; dry_run: only say what would be done)", "operations",
                  body="SyncRequest", response="SyncResult", errors=(400, 404, 409, 415, 422, 503)),
        Operation("GET", "/openapi.json", openapi_json, "This document", "meta"),
    ]  # fmt: skip
    return ops


OPERATIONS = _operations()

_ERRORS = {
    400: "the body is not valid JSON", 401: "no or a wrong admin token", 403: "no admin token is configured",
    404: "no such item", 409: "the file changed since the ETag sent (or: exists already, still referenced)",
    413: "the body is too large", 415: "the body is not JSON", 422: "the request or the resulting config is invalid "
    "(`problems` lists key paths)", 428: "If-Match is missing", 503: "no config file, or Redis unreachable",
}  # fmt: skip


def _schemas() -> dict[str, Any]:
    """The components' schemas: the bodies above and the config's own item models, secrets as references."""
    models: list[type[BaseModel]] = [
        Problem, Reload, ItemList, Change, ProposedChange, ValidateRequest, ValidateResult, ReplayRequest,
        ReplayResult, SyncRequest, SyncResult, Inbox, Health, ActivityList, Endpoint, System, Integration,
    ]  # fmt: skip
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top.get("$defs", {})
    reference = {"type": "string", "pattern": document.ENV_REF.pattern, "description": "env:NAME"}

    def secrets_as_references(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("format") == "password":
                return dict(reference)
            return {key: secrets_as_references(value) for key, value in node.items()}
        if isinstance(node, list):
            return [secrets_as_references(value) for value in node]
        return node

    schemas = secrets_as_references(schemas)
    schemas["MergePatch"] = {"type": "object", "description": "RFC 7396: the keys to change; null removes a key"}
    return schemas


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of `OPERATIONS`."""
    paths: dict[str, Any] = {}
    json_of = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": "OK" if op.status == 200 else "Created"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.response}"}}}
        if op.etag:
            ok["headers"] = {"ETag": {"description": "the config file's ETag", "schema": {"type": "string"}}}
        responses[str(op.status)] = ok
        body_errors = (400, 413, 415, 422) if op.body is not None else ()
        for status in sorted({401, 403, *op.errors, *body_errors}):
            responses[str(status)] = {"description": _ERRORS[status], "content": json_of}
        spec: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": _operation_id(op),
                                "responses": responses}  # fmt: skip
        if op.notes:
            spec["description"] = op.notes
        parameters: list[dict[str, Any]] = []
        if "{id}" in op.path:
            parameters.append({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}})
        parameters += [{"name": p.name, "in": "query", "description": p.description, "schema": p.schema}
                       for p in op.query]  # fmt: skip
        if op.changes:
            parameters.append({"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
                               "description": "the ETag of the config file as last read"})  # fmt: skip
        if parameters:
            spec["parameters"] = parameters
        if op.body is not None:
            media = "application/merge-patch+json" if op.body == "MergePatch" else "application/json"
            spec["requestBody"] = {"required": True, "content": {
                media: {"schema": {"$ref": f"#/components/schemas/{op.body}"}}}}  # fmt: skip
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "Koppel admin API", "version": "1", "description": "docs/api.md"},
        "paths": paths,
        "components": {"schemas": _schemas(), "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}},
        "security": [{"admin": []}],
    }


def _operation_id(op: Operation) -> str:
    words = [part.strip("{}") for part in op.path.strip("/").replace(".", "_").split("/")]
    return "_".join([op.method.lower(), *words])


# -- the app --------------------------------------------------------------------------------------------------


def _guarded(handler: Handler) -> Handler:
    """The handler behind the admin token, its refusals answered as the API's errors."""

    async def endpoint(request: Request) -> Response:
        token = _running(request).gateway.admin_token
        if token is None:
            return _error(403, "forbidden", "the admin API is off: set gateway.admin_token in the config")
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="koppel"'}
        if scheme.lower() != "bearer" or not presented.strip():
            return _error(401, "unauthorized", "the admin API takes Authorization: Bearer <gateway.admin_token>",
                          headers=challenge)  # fmt: skip
        if not hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode()):
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
            return _error(401, "unauthorized", "the Bearer token is not the gateway's admin token", headers=challenge)
        try:
            return await handler(request)
        except DocumentError as exc:
            return _error(exc.status, exc.reason, exc.message, exc.problems)
        except (redis.RedisError, OSError) as exc:
            log.warning("admin API: %s %s: Redis or the file system failed (%s)", request.method, request.url.path,
                        type(exc).__name__)  # fmt: skip
            return _error(503, "unavailable", f"Redis or the config file could not be reached ({type(exc).__name__})"
                          "; retry later", headers={"Retry-After": "5"})  # fmt: skip

    return endpoint


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope.get("path", "")
    response = _error(404, "not_found", f"no admin API route {path}; {PREFIX}/openapi.json lists them")
    await response(scope, receive, send)


def routes() -> list[BaseRoute]:
    return [Route(op.path, _guarded(op.handler), methods=[op.method]) for op in OPERATIONS]


def admin_api() -> ASGIApp:
    """The API's router, mounted at `PREFIX` in the gateway's app (gateway/app.py): its handlers read the
    gateway's state (`config`, `config_path`, `ingestor`, `reload_config`) from `request.app.state`."""
    return Router(routes=routes(), default=_not_found)


__all__ = ["OPERATIONS", "PREFIX", "Operation", "admin_api", "openapi"]
