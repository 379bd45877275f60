"""The `koppel` command line.

    koppel serve          the webhook receiver (uvicorn)
    koppel worker         an RQ worker on Koppel's queue (non-forking, scheduler on)
    koppel init [PATH]    write a config file step by step (the pair, its flows, settings; --yes for scripts)
    koppel config check   validate the config file (PATH or --config); every problem with its key path
    koppel connect        start OAuth consent for a system (Exact Online, Asperion; prints a one-use start URL)
    koppel replay         requeue failed jobs: --job ID, --integration ID or --all (--dry-run: list them)
    koppel activity       what an integration did with each event, with its job id (the activity log)
    koppel purge          remove now what `[retention]` no longer allows (the workers also do, on a schedule)
    koppel forget         remove what Koppel holds about a person: --email ADDRESS (--dry-run: show)
    koppel inbox          accepted events no worker has made jobs yet, with the job ids the gateway answered
    koppel endpoints sync create and repair the systems' webhooks for the endpoints (--dry-run: show)
    koppel endpoints rotate-secret ENDPOINT / test ENDPOINT   new webhook secrets / a test notification
    koppel integrations   the integrations, and which a system switched off (`on ID` switches one on again)
    koppel map ...        preview, diff and reset datamapper mappings
    koppel demo           the main job on the embedded default: everything started, fed, reported (--pair)

Exit codes: 0 ok, 1 the work failed, 2 bad usage or configuration. The commands that print tables or lists
take `--json`: one JSON document on stdout (gateway/jsonout.py, docs/cli-json.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import redis

from connectors import registry
from gateway import jsonout, redisclient, snapshots, vault
from gateway.activity import OUTCOMES, Activity
from gateway.config import Config, config_path
from gateway.errors import ConfigError, EmbeddedRedisError
from gateway.redisserver import RedisChoice, redact_urls, resolve_redis

SECTIONS = ("endpoints", "systems", "integrations")
"""The config's lists of objects with ids."""

DEMO_DATA_DIR = ".koppel/demo"  # relative to the working directory: the repository under run.sh


def _fail(message: str, code: int = 2, **extra: object) -> int:
    """The sentence on stderr (and, under `--json`, as the document's `error`); the exit code."""
    print(f"koppel: {redact_urls(message)}", file=sys.stderr)
    jsonout.error(message, **extra)
    return code


def _load(args: argparse.Namespace) -> Config:
    path = config_path(getattr(args, "config", None))
    if path is None:
        raise ConfigError(["no config file: pass --config PATH or set KOPPEL_CONFIG"], source="koppel")
    return registry.load(path)


def _config_file(args: argparse.Namespace) -> Path | None:
    """The config file `_load` read, as an absolute path: the one a live reload reads again (gateway/live.py)."""
    path = config_path(getattr(args, "config", None))
    return path.resolve() if path is not None else None


def _redis(args: argparse.Namespace) -> RedisChoice:
    choice = resolve_redis(embedded=True if getattr(args, "embedded_redis", False) else None)
    problem = redisclient.url_problem(choice.url) if choice.embedded is None else None
    if problem is not None:
        raise ConfigError([problem], source="REDIS_URL")
    logging.getLogger("koppel").info("using %s", choice.describe())
    return choice


def _check_key() -> None:
    """At the start of `serve` and `worker`: a malformed key stops them (SecretUnreadable); no key is one
    warning (OAuth tokens are then refused, gateway/vault.py)."""
    if not vault.vault().can_seal:
        logging.getLogger("koppel").warning(
            "no %s set (and no %s in the data directory): OAuth tokens cannot be stored; set it for the gateway "
            "and every worker (`koppel secret-key` prints a new one)", vault.KEY_VAR, vault.KEY_FILE)


def cmd_config_check(args: argparse.Namespace) -> int:
    from gateway.checks import check_file

    if args.file and args.config:
        return _fail("give the config file once: as PATH or as --config PATH")
    path = config_path(args.file or args.config)
    if path is None:
        raise ConfigError(["no config file: pass --config PATH or set KOPPEL_CONFIG"], source="koppel")
    config, problems = check_file(path)
    redis_url = os.environ.get("REDIS_URL")  # not the file's: what `koppel serve` and `koppel worker` will use
    problem = redisclient.url_problem(redis_url) if redis_url else None
    if problem is not None:
        problems.append(problem)
    if args.json:  # as the admin API's validate answers ({"valid", "problems"}), with the file and its ids
        valid = config is not None and not problems
        shown = [redact_urls(problem) for problem in problems]
        document: dict[str, object] = {"valid": valid, "file": str(path), "problems": shown}
        if config is not None and valid:
            document |= {name: [item.id for item in getattr(config, name)] for name in SECTIONS}
        else:
            document["error"] = f"{path}: {len(problems)} problem(s)"
        jsonout.emit(document)
    if problems or config is None:
        raise ConfigError(problems, source=str(path))
    if args.json:
        return 0
    print(
        f"config ok: {len(config.endpoints)} endpoint(s), {len(config.systems)} system(s), "
        f"{len(config.integrations)} integration(s)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.limits import ensure_open_files, server_config

    config = _load(args)
    problem = ensure_open_files(config.gateway.max_connections)
    if problem:
        logging.getLogger("koppel").warning(problem)
    choice = _redis(args)
    try:
        _check_key()
        app = create_app(config, choice.url, config_path=_config_file(args))
        # The receiver's limits on headers, read times and connections (gateway/limits.py), as the tests serve it.
        server = uvicorn.Server(server_config(app, config.gateway, host=args.host, port=args.port,
                                              log_level=args.log_level))  # fmt: skip
        server.run()
    finally:
        choice.stop()
    return 0 if server.started else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import run_worker

    config = _load(args)
    choice = _redis(args)
    try:
        _check_key()
        from gateway.checks import check_parts

        run_worker(config, choice.url, burst=args.burst, fork=args.fork, config_path=_config_file(args),
                   check=check_parts)  # fmt: skip
    finally:
        choice.stop()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:

    from gateway.replay import failed_job_ids, locate_job, replay

    config = _load(args)
    if args.integration and args.integration not in {i.id for i in config.integrations}:
        return _fail(f"no integration {args.integration!r} in the config")
    choice = _redis(args)
    try:
        connection = redisclient.connect(choice.url)
        ids = args.job or failed_job_ids(connection, config, args.integration)
        result = replay(connection, config, ids, dry_run=args.dry_run)
        where = {job_id: locate_job(connection, config.gateway.queue, job_id) for job_id in result.missing}
        redisclient.close(connection)
    finally:
        choice.stop()
    problem = f"{len(result.missing)} job(s) not in the failed registry" if result.missing else None
    why = {job_id: found.sentence() for job_id, found in where.items()}
    if args.json:  # the admin API's replay answer ({"requeued", "missing"}), and where each missing one is
        jsonout.emit({"dry_run": args.dry_run, "requeued": result.requeued, "missing": result.missing,
                      "reasons": why, "where": {job_id: found.as_dict() for job_id, found in where.items()},
                      "merged": result.merged} | ({"error": problem} if problem else {}))  # fmt: skip
    elif args.dry_run:
        print(f"would requeue {len(result.requeued)} failed job(s) (dry run: nothing requeued)"
              + "".join(f"\n  {job_id}" for job_id in result.requeued))  # fmt: skip
    else:
        print(f"requeued {len(result.requeued)} failed job(s)")
    for job_id, group in result.merged.items():
        print(f"job {job_id} was merged into job {group} (an event for the same record): {group} "
              + ("would be requeued" if args.dry_run else "was requeued"))  # fmt: skip
    for job_id in result.missing:
        print(f"koppel: job {job_id} is not in the failed registry: {why[job_id]}", file=sys.stderr)
    return 1 if result.missing else 0


def cmd_inbox(args: argparse.Namespace) -> int:
    """Accepted events no worker has taken yet (run, or made an RQ job), with the job ids the answers named."""
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table
    from rq import Worker

    from gateway.ingest import find_in_inbox, inbox_view, make_queue
    from gateway.replay import JobWhere, locate_job

    config = _load(args)
    if args.limit <= 0:
        return _fail("--limit must be a positive number")
    queue = config.gateway.queue
    choice = _redis(args)
    try:
        connection = redisclient.connect(choice.url)
        where: JobWhere | None = None
        if args.job:
            found = find_in_inbox(connection, queue, args.job)
            view = inbox_view(connection, queue, limit=1)
            entries = [found] if found else []
            where = locate_job(connection, queue, args.job) if not found else None
        else:
            view = inbox_view(connection, queue, limit=args.limit)
            entries = view.entries
        workers = Worker.count(queue=make_queue(connection, queue))
        redisclient.close(connection)
    finally:
        choice.stop()
    listed = [e.as_dict() | {"stored_at": jsonout.iso(e.stored_at)} for e in entries]
    document = {"queue": queue, "depth": view.depth, "oldest_age_seconds": round(view.oldest_age, 3),
                "workers": workers, "entries": listed,
                **({"merged_into": where.runs_as} if where and where.merged else {}),
                **({"job": where.as_dict()} if where else {})}  # fmt: skip
    if where is not None:
        known = where.state != "unknown" and not where.direct
        where_else = " (`koppel activity`, rq-dashboard)" if known else ""
        if where.merged:
            why = (f"a worker merged it into job {where.runs_as} (an event for the same record waiting beside it), "
                   f"which {where.status()}{where_else}")  # fmt: skip
        elif where.direct:
            why = f"a worker ran it directly, without an RQ job: it {where.status()}"
        elif known:
            why = f"a worker made it an RQ job already, which {where.status()}{where_else}"
        else:
            why = ("a worker made it a job already, which finished and expired (`koppel activity`), or no delivery "
                   "was answered with it")  # fmt: skip
        return _fail(f"job {args.job} is not in the inbox of queue {queue}: {why}", 1, **document)
    if args.json:
        jsonout.emit(document)
        return 0
    print(f"inbox of queue {queue}: {view.depth} accepted event(s) no worker has taken yet"
          + (f", the oldest stored {view.oldest_age:.0f} s ago" if view.depth else ""))  # fmt: skip
    if view.depth and not workers:
        print("no worker runs on this queue: start `koppel worker`; its pump runs each one (or makes it an RQ job) "
              "under the job id listed (the id the gateway's answer named)")  # fmt: skip
    if not entries:
        return 0
    title = None if args.job or len(entries) == view.depth else f"the oldest {len(entries)} of {view.depth}"
    table = Table(title=title, title_justify="left")
    for column in ("received (UTC)", "endpoint", "topic", "resource", "state", "job"):
        table.add_column(column, overflow="fold", min_width=32 if column == "job" else None)
    for e in entries:
        stored = datetime.fromtimestamp(e.stored_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(stored, e.endpoint, e.topic, e.resource_id, "taken by a pump" if e.taken else "waiting", e.job_id)
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)
    return 0


def cmd_activity(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from gateway.activity import ActivityLog

    config = _load(args)
    if args.integration not in {i.id for i in config.integrations}:
        return _fail(f"no integration {args.integration!r} in the config")
    if args.since <= 0 or args.limit <= 0:
        return _fail("--since (minutes) and --limit must be positive numbers")
    choice = _redis(args)
    try:
        connection = redisclient.connect(choice.url)
        entries = ActivityLog(connection).entries(args.integration, since=time.time() - args.since * 60)
        redisclient.close(connection)
    finally:
        choice.stop()
    if args.outcome:
        entries = [e for e in entries if e.outcome == args.outcome]
    entries = entries[-args.limit :]
    if args.json:
        jsonout.emit({"integration": args.integration, "since_minutes": args.since, "outcome": args.outcome,
                      "entries": [_activity_json(e) for e in entries]})  # fmt: skip
        return 0
    table = Table(title=f"{args.integration}: the last {len(entries)} event(s) of {args.since:g} minute(s)")
    columns = ("received (UTC)", "topic", "resource", "number", "outcome", "target id", "calls", "took", "reason")
    for column in (*columns, "job"):  # "job": the RQ job id, the one `koppel replay --job ID` takes for a failed entry
        table.add_column(column, overflow="fold", min_width=32 if column == "job" else None)  # ids stay whole
    for e in entries:
        received = datetime.fromtimestamp(e.received_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        outcome = f"{e.outcome} ({e.level})" if e.level else e.outcome  # "skipped (error)": an error-level skip
        table.add_row(received, e.topic, e.resource_id, e.number, outcome, e.target_id, str(e.calls),
                      f"{e.latency:.2f}s", e.reason, e.job_id)  # fmt: skip
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)  # piped: no folding
    return 0


def _activity_json(entry: Activity) -> dict[str, object]:
    """An activity entry as `koppel activity --json` gives it: its fields (as the admin API: `latency` in
    seconds, e-mail addresses in the reason masked), times in ISO 8601 (UTC)."""
    return asdict(entry) | {"received_at": jsonout.iso(entry.received_at), "done_at": jsonout.iso(entry.done_at),
                            "latency": round(entry.latency, 3), "reason": snapshots.mask(entry.reason)}


def cmd_purge(args: argparse.Namespace) -> int:

    from workers.retention import UNTIMED, purge

    config = _load(args)
    choice = _redis(args)
    try:
        connection = redisclient.connect(choice.url)
        report = purge(connection, config, audit=True)
        redisclient.close(connection)
    finally:
        choice.stop()
    if args.json:
        jsonout.emit({name: asdict(getattr(report, name)) | {"retention_seconds": getattr(config.retention, name)}
                      for name in ("activity", "payloads", "jobs", "failed_jobs", "inbox")}
                     | {"untimed": report.untimed})  # fmt: skip
        return 0
    days = {name: f"{getattr(config.retention, name) / 86400:g}d" for name in ("activity", "payloads", "jobs",
                                                                                 "failed_jobs", "inbox")}  # fmt: skip
    print("purge by [retention]:")
    print(f"  activity entries older than {days['activity']}: {report.activity.removed} removed"
          + "".join(f"\n    {item}" for item in report.activity.items))  # fmt: skip
    payloads = report.payloads.note or "none kept longer than the retention"
    print(f"  payload snapshots older than {days['payloads']}: expire by their TTL; {payloads}")
    print(f"  finished jobs older than {days['jobs']}: {report.jobs.removed} removed")
    print(f"  failed jobs older than {days['failed_jobs']}: {report.failed_jobs.removed} removed")
    inbox = report.inbox.note or f"no event waiting longer than {days['inbox']}"
    print(f"  inbox: {inbox}")
    if report.untimed:
        print("  kept without an expiry (no personal data):")
        for family, count in report.untimed.items():
            print(f"    {family}: {count} key(s): {UNTIMED.get(family, 'not a family Koppel knows; look at it')}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:

    from workers.retention import forget, valid_email

    address = args.email.strip()
    if not valid_email(address):
        return _fail("--email: not an e-mail address (expected name@domain, e.g. jan@example.nl)")
    config = _load(args)
    choice = _redis(args)
    try:
        connection = redisclient.connect(choice.url)
        report = forget(connection, config, address, dry_run=args.dry_run)
        redisclient.close(connection)
    finally:
        choice.stop()
    if args.json:
        jsonout.emit(asdict(report) | {"dry_run": args.dry_run})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"forget {report.email}{' (dry run: nothing removed)' if args.dry_run else ''}:")
    for title, kind in (("cached ids", report.cached), ("payload snapshots", report.payloads),
                        ("failed jobs", report.failed_jobs), ("finished jobs", report.jobs),
                        ("activity entries", report.activity)):  # fmt: skip
        print(f"  {title}: {verb} {kind.removed}" + "".join(f"\n    {item}" for item in kind.items))
    if report.waiting:
        print(f"  not removed: {len(report.waiting)} event(s) not yet processed carry the address; they are kept "
              "so that nothing is lost: run this again once they are processed")
        for item in report.waiting:
            print(f"    {item}")
    print("  kept: the ledgers (record numbers and target ids, no personal data: nothing is written twice); "
          "the person's records in the connected systems are theirs to erase")
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    from connectors.oauth import TICKET_MAX_AGE
    from gateway.errors import PermanentError
    from gateway.oauth import start_url

    config = _load(args)
    try:
        url = start_url(config, args.legacy_system or args.system)
    except PermanentError as exc:
        return _fail(str(exc))
    print(f"Open this URL (it works once, within {TICKET_MAX_AGE // 60} minutes) in the browser you will approve in; "
          "the gateway sends you on to the system, which sends you back; the gateway stores the tokens:")  # fmt: skip
    print(url)
    return 0


def cmd_endpoints_sync(args: argparse.Namespace) -> int:
    import httpx

    from connectors.contract import Context
    from workers.subscriptions import HTTP_TIMEOUT, PUBLIC_URL_MISSING, managed_endpoints, plan_lines, sync_all

    config = _load(args)
    if config.gateway.public_url is None:
        raise ConfigError([PUBLIC_URL_MISSING], source=str(config_path(args.config)))
    managed = managed_endpoints(config)
    if args.endpoint:
        managed = [m for m in managed if m.endpoint.id == args.endpoint]
        if not managed:
            return _fail(f"endpoint {args.endpoint!r} has no webhooks Koppel manages (it must name its system, "
                         "of a kind with managed webhooks, and feed an enabled integration)")  # fmt: skip
    if not managed:
        if args.json:
            jsonout.emit({"dry_run": args.dry_run, "endpoints": [], "failures": []})
        else:
            print('no endpoint has webhooks Koppel manages (an endpoint must name its system: system = "...")')
        return 0
    # A dry run too uses Koppel's Redis: connectors keep their tokens and ids there (Business Central); it
    # records nothing (no activity, no polls).
    choice = _redis(args)
    redis_connection = redisclient.connect(choice.url)
    try:
        with httpx.Client(timeout=HTTP_TIMEOUT) as http:
            context = Context(http=http, redis=redis_connection)
            report = sync_all(config, managed, context, connection=None if args.dry_run else redis_connection,
                              dry_run=args.dry_run)  # fmt: skip
    finally:
        redisclient.close(redis_connection)
        choice.stop()
    if args.json:
        failed = {"error": f"{len(report.failures)} endpoint(s) could not be synced"} if report.failures else {}
        jsonout.emit({"dry_run": args.dry_run, "endpoints": [p.as_dict() for p in report.plans],
                      "failures": report.failures} | failed)  # fmt: skip
    else:
        for done in report.plans:
            print("\n".join(plan_lines(done, dry_run=args.dry_run)))
    for failure in report.failures:
        print(f"koppel: {failure}", file=sys.stderr)
    return 1 if report.failures else 0


def cmd_endpoints_hooks(args: argparse.Namespace) -> int:
    """`koppel endpoints rotate-secret|test ENDPOINT`: every webhook Koppel made for the endpoint gets a new
    secret from its system, or is sent a test notification (systems that support it: Squarespace)."""
    import httpx

    from connectors.contract import Context, Unsupported
    from gateway.errors import KoppelError
    from workers.subscriptions import HTTP_TIMEOUT, managed_endpoints

    config = _load(args)
    managed = next((m for m in managed_endpoints(config) if m.endpoint.id == args.endpoint), None)
    url = config.gateway.webhook_url(args.endpoint)
    if managed is None or url is None:
        return _fail(f"endpoint {args.endpoint!r} has no webhooks Koppel manages (it must name its system, of a kind "
                     "with managed webhooks, and feed an enabled integration; [gateway] public_url must be set)")
    choice = _redis(args)
    connection = redisclient.connect(choice.url)
    results: list[dict[str, object]] = []
    try:
        with httpx.Client(timeout=HTTP_TIMEOUT) as http:
            hooks = managed.webhooks(managed.system, Context(http=http, redis=connection))
            ours = [sub for sub in hooks.current() if sub.url == url]
            if not ours:
                return _fail(f"endpoint {args.endpoint}: no webhook of Koppel's at {url}; run `koppel endpoints sync`",
                             1, endpoint=args.endpoint, url=url, webhooks=[])  # fmt: skip
            for sub in ours:
                result: dict[str, object] = {"id": sub.id, "topic": sub.topic}
                try:
                    if args.endpoints_command == "rotate-secret":
                        hooks.rotate_secret(sub)
                        result |= {"outcome": "rotated", "message": "secret rotated; the old one verifies during its "
                                   "grace"}  # fmt: skip
                    else:
                        status = hooks.send_test(sub)
                        ok = 200 <= status < 300
                        result |= {"outcome": "answered" if ok else "failed", "status": status,
                                   "message": f"test notification answered {status}"}  # fmt: skip
                except Unsupported as exc:  # this one cannot (or must not) be: said, not a failure
                    result |= {"outcome": "unsupported", "message": str(exc)}
                except KoppelError as exc:
                    result |= {"outcome": "failed", "message": str(exc)}
                results.append(result)
                line = f"webhook {sub.id} ({sub.topic}): {result['message']}"
                if result["outcome"] == "failed" and "status" not in result:
                    print(f"koppel: {line}", file=sys.stderr)
                elif not args.json:
                    print(line)
    finally:
        redisclient.close(connection)
        choice.stop()
    failures = sum(r["outcome"] == "failed" for r in results)
    if args.json:
        failed = {"error": f"{failures} webhook(s) failed"} if failures else {}
        jsonout.emit({"endpoint": args.endpoint, "url": url, "webhooks": results} | failed)
    return 1 if failures else 0


def connectors_table() -> list[dict[str, object]]:
    """Every registered connector: what it gives and takes, and how it is reached."""
    rows: list[dict[str, object]] = []
    for kind, found in sorted(registry.connectors().items()):
        rows.append({
            "kind": kind, "title": found.title, "gives": sorted(found.reads), "takes": sorted(found.writes),
            "polled": sorted(found.source.streams) if found.source else [], "webhooks": found.handler is not None,
            "oauth": found.oauth is not None, "sandbox": found.sandbox is not None,
        })  # fmt: skip
    return rows


def cmd_integrations(args: argparse.Namespace) -> int:

    from workers.switches import switch_on, switched_off

    if args.action == "on" and not args.integration:
        return _fail("koppel integrations on: name the integration to switch on")
    args.on = args.integration if args.action == "on" else None
    config = _load(args)
    known = {i.id: i for i in config.integrations}
    if args.on is not None and args.on not in known:
        return _fail(f"no integration {args.on!r} in the config; it has {', '.join(known) or 'none'}")
    choice = _redis(args)
    try:
        connection = redisclient.connect(choice.url)
        if args.on is not None:
            was = switched_off(connection, args.on)
            switch_on(connection, args.on)
            if args.json:
                jsonout.emit({"id": args.on, "state": "on", "was_switched_off": was})
            else:
                print(f"{args.on}: switched on" + (f" (it was off: {was})" if was else " (it was not off)"))
            return 0
        rows = [(integration, switched_off(connection, integration.id)) for integration in config.integrations]
        redisclient.close(connection)
    finally:
        choice.stop()
    if args.json:  # the config's fields; state: "on", "switched_off" (by a system: why) or "disabled" (in the config)
        jsonout.emit({"integrations": [
            {"id": i.id, "source": i.source, "target": i.target, "flows": list(i.flows), "enabled": i.enabled,
             "state": "switched_off" if off else ("on" if i.enabled else "disabled"), "switched_off": off}
            for i, off in rows
        ]})  # fmt: skip
        return 0
    for integration, off in rows:
        state = f"switched off: {off}" if off else ("on" if integration.enabled else "disabled in the config")
        flows = ", ".join(integration.flows)
        print(f"{integration.id}  {integration.source} → {integration.target}  [{flows}]  {state}")
    return 0


def cmd_secret_key(args: argparse.Namespace) -> int:
    """A new random key for KOPPEL_SECRET_KEY (gateway/vault.py)."""
    print(vault.new_key())
    return 0


def cmd_connectors(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    rows = connectors_table()
    if args.json:
        jsonout.emit(rows)
        return 0
    table = Table("kind", "system", "gives", "takes", "polled", "webhooks", "OAuth", "sandbox", box=None)
    for row in rows:
        flags = ["yes" if row[key] else "-" for key in ("webhooks", "oauth", "sandbox")]
        lists = [", ".join(row[key]) or "-" for key in ("gives", "takes", "polled")]  # type: ignore[arg-type]
        table.add_row(str(row["kind"]), str(row["title"]), *lists, *flags)
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo
    from gateway.pairs import PAIRS

    if args.orders is not None and not 1 <= args.orders <= 5000:
        return _fail(f"--orders must be between 1 and 5000, not {args.orders}")
    if args.pair not in PAIRS:
        return _fail(f"--pair {args.pair!r} is not a pair Koppel runs; choose one of {', '.join(PAIRS)}")
    if args.orders is None:  # the main job's batch; another pair's phases each enter fewer (Exact's budget paces them)
        args.orders = 25 if args.pair == "woocommerce-exactonline" else 10
    for name in ("connectors", "gateway", "workers", "httpx"):  # the report speaks; logs go to the log files
        logging.getLogger(name).setLevel(logging.WARNING)
    # SIGTERM (a `timeout`, a service manager) stops the demo in order, like Ctrl-C: workers finish their job.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run_demo(orders=args.orders, data_dir=Path(args.data_dir or DEMO_DATA_DIR), pair=args.pair)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="koppel", description="Koppel integration gateway")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="config TOML file (default: $KOPPEL_CONFIG)")
        return p

    def with_redis(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--embedded-redis",
            action="store_true",
            help="always start Koppel's own Redis (default: $REDIS_URL, else localhost:6379, else embedded)",
        )
        return p

    serve = with_redis(with_config(sub.add_parser("serve", help="run the webhook receiver")))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=cmd_serve)

    worker = with_redis(with_config(sub.add_parser("worker", help="run an RQ worker on Koppel's queue")))
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--fork", action="store_true", help="fork a process per job (slower, isolated)")
    worker.set_defaults(func=cmd_worker)

    config = sub.add_parser("config", help="work with the config file")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = with_config(config_sub.add_parser("check", help="validate the config; list every problem"))
    check.add_argument("file", nargs="?", metavar="PATH", help="the config file (instead of --config)")
    jsonout.add_flag(check).set_defaults(func=cmd_config_check)

    replay = with_redis(with_config(sub.add_parser("replay", help="requeue failed jobs")))
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", action="append", metavar="ID", help="a failed job id (repeatable)")
    which.add_argument("--integration", metavar="ID", help="every failed job of this integration")
    which.add_argument("--all", action="store_true", help="every failed job")
    replay.add_argument("--dry-run", action="store_true", help="show which jobs would be requeued; requeue none")
    jsonout.add_flag(replay).set_defaults(func=cmd_replay)

    inbox = with_redis(with_config(sub.add_parser(
        "inbox", help="accepted events no worker has made jobs yet, with their job ids (the gateway's answers)",
    )))  # fmt: skip
    inbox.add_argument("--job", metavar="ID", help="only this job id (exit 1 when it is not in the inbox)")
    inbox.add_argument("--limit", type=int, default=50, help="at most this many, the oldest (default 50)")
    jsonout.add_flag(inbox).set_defaults(func=cmd_inbox)

    activity = with_redis(with_config(sub.add_parser("activity", help="show an integration's activity log")))
    activity.add_argument("--integration", required=True, metavar="ID", help="the integration id")
    activity.add_argument("--since", type=float, default=60.0, metavar="MINUTES", help="how far back (default 60)")
    activity.add_argument("--outcome", choices=sorted(OUTCOMES), help="only events with this outcome")
    activity.add_argument("--limit", type=int, default=200, help="at most this many, the newest (default 200)")
    jsonout.add_flag(activity).set_defaults(func=cmd_activity)

    purge = with_redis(with_config(sub.add_parser(
        "purge", help="remove now what [retention] no longer allows; report what was removed per kind",
    )))  # fmt: skip
    jsonout.add_flag(purge).set_defaults(func=cmd_purge)

    forget = with_redis(with_config(sub.add_parser(
        "forget", help="remove what Koppel holds about a person (GDPR erasure); report what was removed",
    )))  # fmt: skip
    forget.add_argument("--email", required=True, metavar="ADDRESS", help="the person's e-mail address")
    forget.add_argument("--dry-run", action="store_true", help="show what would be removed; remove nothing")
    jsonout.add_flag(forget).set_defaults(func=cmd_forget)

    connect = with_config(sub.add_parser("connect", help="start OAuth consent for a system (Exact Online, ...)"))
    connect.add_argument("system", help="the system id in the config")
    connect.add_argument("--system", dest="legacy_system", help=argparse.SUPPRESS)  # `connect exactonline --system X`
    connect.set_defaults(func=cmd_connect)

    endpoints = sub.add_parser("endpoints", help="manage the systems' webhooks for the endpoints")
    endpoints_sub = endpoints.add_subparsers(dest="endpoints_command", required=True, metavar="SUBCOMMAND")
    sync = with_redis(with_config(endpoints_sub.add_parser(
        "sync", help="create the webhooks the flows need, repair drift, re-activate disabled ones",
    )))  # fmt: skip
    sync.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")
    sync.add_argument("--endpoint", metavar="ID", help="only this endpoint")
    jsonout.add_flag(sync).set_defaults(func=cmd_endpoints_sync)
    for name, what in (("rotate-secret", "have the system issue new secrets for the endpoint's webhooks"),
                       ("test", "have the system send a test notification to each of the endpoint's webhooks")):
        hooks = with_redis(with_config(endpoints_sub.add_parser(name, help=what)))
        hooks.add_argument("endpoint", help="the endpoint id in the config")
        jsonout.add_flag(hooks).set_defaults(func=cmd_endpoints_hooks)

    integrations = with_redis(with_config(sub.add_parser(
        "integrations", help="list the integrations and which a system switched off; `on ID` switches one on",
    )))  # fmt: skip
    integrations.add_argument("action", nargs="?", choices=["on"], help="on: switch the integration on again")
    integrations.add_argument("integration", nargs="?", help="the integration id (with `on`)")
    jsonout.add_flag(integrations).set_defaults(func=cmd_integrations)

    key = sub.add_parser("secret-key", help=f"print a new key for {vault.KEY_VAR} (encrypts stored tokens)")
    key.set_defaults(func=cmd_secret_key)

    kinds = sub.add_parser("connectors", help="list the system kinds Koppel connects: what each gives and takes")
    jsonout.add_flag(kinds).set_defaults(func=cmd_connectors)

    demo = sub.add_parser("demo", help="run the main job end to end on the embedded default and report")
    demo.add_argument("--orders", type=int, default=None, help="how many orders the shop takes (1-5000, default 25); "
                      "other pairs: the records each phase enters (default 10)")
    demo.add_argument("--pair", default="woocommerce-exactonline",
                      help="the pair to run: woocommerce-exactonline (the main job, default), winstore-exactonline, "
                      "winstore-businesscentral, exactonline-asperion, squarespace-exactonline")  # fmt: skip
    demo.add_argument(
        "--data-dir",
        help="the demo's own Redis data, config and logs: what an earlier demo put there is removed at "
        f"start, anything else stays (default {DEMO_DATA_DIR})",
    )
    demo.set_defaults(func=cmd_demo)

    from gateway import initcli, mapcli

    initcli.register(sub)
    mapcli.register(sub)
    return parser


CALLER_DIR = "KOPPEL_CALLER_DIR"
"""Set by run.sh, which runs Koppel from the repository: the directory the user called it from."""

_PATH_ARGUMENTS = ("config", "file", "input", "context", "data_dir")


def _from_caller(args: argparse.Namespace) -> None:
    """Resolve the relative paths the user gave (options and $KOPPEL_CONFIG) from the caller's directory
    when run.sh says where that is. The variable is consumed: processes Koppel starts get absolute paths."""
    caller = os.environ.pop(CALLER_DIR, None)
    if not caller:
        return
    for name in _PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            setattr(args, name, str(Path(caller) / value))
    configured = os.environ.get("KOPPEL_CONFIG")
    if configured and not Path(configured).is_absolute():
        os.environ["KOPPEL_CONFIG"] = str(Path(caller) / configured)


_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")


class RedactingFormatter(logging.Formatter):
    """Koppel's log lines with every e-mail address and every URL's password (a REDIS_URL's) masked,
    tracebacks included. Log lines name records by ids and numbers; this is the last line of defence for a
    system's error text or an exception that quotes one."""

    def format(self, record: logging.LogRecord) -> str:
        return _EMAIL.sub("<e-mail>", redact_urls(super().format(record)))


def setup_logging() -> None:
    """Koppel's log lines on stderr, at KOPPEL_LOG_LEVEL, through `RedactingFormatter`."""
    level = os.environ.get("KOPPEL_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise, and URLs can carry ids


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    _from_caller(args)
    jsonout.start(args)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"koppel: {exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {redact_urls(problem)}", file=sys.stderr)
        jsonout.error(f"{exc.source}: {len(exc.problems)} problem(s)", source=exc.source,
                      problems=[redact_urls(problem) for problem in exc.problems])  # fmt: skip
        return 2
    except EmbeddedRedisError as exc:
        return _fail(str(exc), 1)
    except vault.SecretUnreadable as exc:  # a malformed KOPPEL_SECRET_KEY
        return _fail(str(exc), 2)
    except (redis.ConnectionError, redis.AuthenticationError) as exc:  # one sentence, not a traceback
        return _fail(f"Redis did not take Koppel's connection ({exc}): check that it runs and REDIS_URL "
                     "(its address and password)", 1)  # fmt: skip
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
