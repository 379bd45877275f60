"""The four flows — orders, customers, products, stock — each written once over `Source` and `Target`.

A flow takes one event for one integration (`Work`), reads and normalises the record through the
source, applies the SPEC's rules and the integration's mapping, and writes through the target. It
names no system: what differs between systems is the connectors' business (connectors/contract.py).
It returns a `FlowResult` (its activity log entry, no payload data), or raises `TransientError` to be
retried or `PermanentError` to fail.

A flow whose target batches it (`Target.batches`) also takes many events at once (`batch_function`):
events for different records of one integration, processed with the same rules and as few target
calls as the target allows (WooCommerce: a hundred stock levels in two calls).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import redis
from pydantic import BaseModel
from redis.client import Pipeline

from connectors import registry
from connectors.contract import Canonical, FlowResult, Source, Target
from gateway import keys, snapshots
from gateway.config import Integration
from gateway.envelope import Envelope
from gateway.errors import KoppelError
from transforms import CompiledMapping, build_mapping
from transforms.inputs import mapping_input
from transforms.integration import tables_of
from transforms.tables import MappingTable
from workers.runtime import Runtime

__all__ = [
    "FLOWS",
    "BatchFunction",
    "FlowResult",
    "Outcomes",
    "Work",
    "batch_function",
    "fail",
    "finished",
    "flow_function",
    "note_seen",
    "prepared",
    "run_unseen",
    "seen_before",
    "seen_many",
    "seen_read_key",
    "spread",
]

SEEN_TTL = 7 * 24 * 3600
log = logging.getLogger("koppel.worker")
T = TypeVar("T")


@dataclass
class Work:
    """One event for one integration: what a flow works with."""

    integration: Integration
    envelope: Envelope
    source: Source
    target: Target
    runtime: Runtime
    finish: Pipeline | None = field(default=None, repr=False)
    """A pipeline sent with the resource lock's release (`workers.policy.resource_lock`), when the work runs under
    one: writes that may wait for the end of the work go there (the ledger entry, the seen version), no round
    trip of their own. None: each is written at once."""
    _record: Any = field(default=None, repr=False)
    _expanded: Any = field(default=None, repr=False)
    _normalised: dict[tuple[str, int], Canonical] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> dict[str, Any]:
        return self.integration.settings

    @property
    def connection(self) -> redis.Redis:
        return self.runtime.connection

    @property
    def label(self) -> str:
        return f"{self.envelope.source} {self.envelope.resource} {self.envelope.resource_id or ''}".strip()

    def raw(self, flow: str) -> Any:
        """The full record behind the event (read through the source once)."""
        if self._record is None:
            self._record = self.source.read(self.envelope, flow)
            snapshots.note_record(self._record)
        return self._record

    def record(self, flow: str, *, expanded: bool = False) -> Canonical:
        """The event's record in the canonical model; `expanded`: with what booking it needs besides
        (`Source.expand`: e.g. order lines the notification lacks), read once."""
        raw = self.raw(flow)
        if expanded:
            if self._expanded is None:
                self._expanded = self.source.expand(flow, raw)
            raw = self._expanded
        # Normalised once per raw record: canonical records are frozen, and a source whose `expand` returns
        # the record as read (WooCommerce) gives the same record twice (the order flow reads both).
        key = (flow, id(raw))
        if key not in self._normalised:
            self._normalised[key] = self.source.normalise(flow, raw, self.integration.settings)
        return self._normalised[key]

    def mapping(self, flow: str) -> CompiledMapping:
        """The integration's compiled mapping for flow → the target's kind (compiled once per process)."""
        integration, kind = self.integration, self.target.kind
        return self.runtime.cached(
            f"mapping:{integration.id}:{flow}:{kind}", lambda: build_mapping(integration, flow, kind)
        )

    def mapped(self, flow: str, record: Any, context: dict[str, Any] | None = None, *, label: str) -> dict[str, Any]:
        """The integration's mapping for `flow` applied to `record` (noted in the job's payload snapshot)."""
        if snapshots.current() is None:
            return self.mapping(flow).apply(record, context, label=label)
        # the input, whole (a later mapping may read other fields), built once: the mapping reads it too (what
        # it reads of it is what the input it would build for its own names holds)
        given = mapping_input(record, self.settings) if isinstance(record, BaseModel) else record
        payload = self.mapping(flow).apply(given, context, label=label)
        snapshots.note_mapped(flow, payload, context, given)
        return payload

    def tables(self) -> dict[str, MappingTable]:
        """The integration's mapping tables (`[integrations.tables.*]`), parsed once per process."""
        return self.runtime.cached(f"tables:{self.integration.id}", lambda: tables_of(self.integration))


FlowFunction = Callable[[Work], FlowResult]
Outcomes = list[FlowResult | Exception]
BatchFunction = Callable[[list[Work]], Outcomes]


def _flows() -> dict[str, FlowFunction]:
    from workers.flows import customers, orders, products, stock

    return {"orders": orders.run, "customers": customers.run, "products": products.run, "stock": stock.run}


def _batched() -> dict[str, BatchFunction]:
    from workers.flows import products, stock

    return {"products": products.run_many, "stock": stock.run_many}


FLOWS: dict[str, FlowFunction] = {}


def flow_function(flow: str) -> FlowFunction:
    if not FLOWS:
        FLOWS.update(_flows())
    return FLOWS[flow]


def batch_function(flow: str, target_kind: str, *, seen: bool = True) -> BatchFunction | None:
    """What processes many events of `flow` into a target of `target_kind` at once, or None when that
    target does not batch the flow (each event is then processed on its own, by `flow_function`).

    The function takes Works of one integration, each an event for a different record, and returns one
    outcome per Work in their order: its `FlowResult`, or the error that record alone met (a
    `PermanentError`, a `TransientError`, or `Gone` for a record deleted from the source), the others'
    outcomes unaffected. A version of a record processed already is skipped (`seen_before`), as one event
    alone would be — unless `seen` is False: the caller answered seen versions already and notes them
    (`workers.jobs.process_batch`, with the locks' release). A record's `calls` are its share of the calls
    made for all (`spread`)."""
    try:
        target = registry.get(target_kind).target
    except KeyError:
        return None
    if target is None or flow not in target.batches:
        return None
    many = _batched().get(flow)
    if many is None:
        return None
    return (lambda works: _unseen(flow, works, many)) if seen else many


def _unseen(flow: str, works: list[Work], many: BatchFunction) -> Outcomes:
    """`many` on the works whose record's version was not processed yet; each version noted once done."""
    if len({(work.integration.id, id(work.target)) for work in works}) > 1:
        raise ValueError("a batch takes the works of one integration (one target) only")
    ran = run_unseen(flow, works, many)
    for work, (seen, outcome) in zip(works, ran, strict=True):
        if isinstance(outcome, FlowResult):
            note_seen(work, seen, outcome)
    return [outcome for _, outcome in ran]


def run_unseen(
    flow: str, works: list[Work], many: BatchFunction | None
) -> list[tuple[tuple[str, str] | None, FlowResult | Exception]]:
    """Per work, in order: where its record's seen version goes (None: the source does not version it) and its
    outcome — the skip when that version was processed already (all read in one round trip, `seen_many`), else
    `many`'s result for it (one call for all the others; without `many`, each flow run alone), or the error
    its record alone met (reading it, or the write). A write that fails as a whole gives each its error. The
    caller notes the seen versions of what was written (`note_seen`): at once, or in the pipeline that
    releases the records' locks (`workers.jobs.process_batch`)."""
    seens: list[tuple[str, str] | None] = [None] * len(works)
    outcomes: list[FlowResult | Exception | None] = [None] * len(works)
    for position, found in enumerate(seen_many(works, flow)):
        if isinstance(found, Exception):  # the record could not be read (Gone included)
            outcomes[position] = found
        else:
            seens[position], outcomes[position] = found
    pending = [position for position, outcome in enumerate(outcomes) if outcome is None]
    batch = [works[position] for position in pending]
    if many is None:
        written: Outcomes = [_alone(flow, work) for work in batch]
    elif batch:
        written = _written(flow, batch, many)
    else:
        written = []
    for position, result in zip(pending, written, strict=True):
        outcomes[position] = result
    return list(zip(seens, finished(outcomes), strict=True))


def _written(flow: str, batch: list[Work], many: BatchFunction) -> Outcomes:
    try:
        written = many(batch)
        if len(written) != len(batch):
            raise RuntimeError(f"the batch write answered {len(written)} results for {len(batch)} records")
    except (KoppelError, RuntimeError) as error:  # what all of them needed failed (a lookup): each fails with it
        log.warning("batch of %d %s records: %s; each meets it", len(batch), flow, error)
        return [error] * len(batch)
    return written


def _alone(flow: str, work: Work) -> FlowResult | Exception:
    try:
        return flow_function(flow)(work)
    except Exception as error:
        return error


def prepared(works: list[Work], prepare: Callable[[Work], T | FlowResult],
             outcomes: list[FlowResult | Exception | None]) -> dict[int, T]:  # fmt: skip
    """Each work's `prepare`d part, by position; a result it gives at once (a skip) or an error it meets goes
    into `outcomes` instead."""
    found: dict[int, T] = {}
    for position, work in enumerate(works):
        try:
            part = prepare(work)
        except KoppelError as exc:
            outcomes[position] = exc
            continue
        if isinstance(part, FlowResult):
            outcomes[position] = part
        else:
            found[position] = part
    return found


def fail(outcomes: list[FlowResult | Exception | None], positions: Iterable[int],
         error: Exception) -> list[FlowResult | Exception | None]:  # fmt: skip
    """`outcomes` with `error` for each record at `positions` (what they all needed failed)."""
    for position in positions:
        outcomes[position] = error
    return outcomes


def finished(outcomes: list[FlowResult | Exception | None]) -> Outcomes:
    """The outcomes, each given (a record left without one is a bug)."""
    missing = [position for position, outcome in enumerate(outcomes) if outcome is None]
    if missing:
        raise AssertionError(f"no outcome for the works at {missing}")
    return [outcome for outcome in outcomes if outcome is not None]


def seen_before(
    work: Work, flow: str, read: tuple[str, Any] | None = None
) -> tuple[tuple[str, str] | None, FlowResult | None]:
    """(where the record's last processed version is remembered and its version now — None when the source
    does not version its records —, the skip when this version was processed already): the same change seen
    by a webhook and by a poll (two deliveries) is processed once. Only the *last* version counts: a record
    changed and changed back within the same second (A, B, A again) has A's version twice, and the second A
    must still be written.

    `read`: (key, reply) of a read made ahead under the resource lock (`seen_read_key`, sent with the lock's
    first try): used when its key is the record's, else the key is read now."""
    seen = _seen_key(work, flow)
    if seen is None:
        return None, None
    done = read[1] if read is not None and read[0] == seen[0] else work.connection.get(seen[0])
    return seen, _answer(seen, done)


def seen_read_key(integration_id: str, flow: str, resource_id: str | None) -> str | None:
    """The key `seen_before` most likely reads for an event of record `resource_id`, known before the record is
    read (the version's id is the record's id for the sources that version theirs): read with the resource lock's
    first try, it spares `seen_before` a round trip; a guess that misses costs only the read it would have made."""
    return keys.cache(integration_id, f"seen:{flow}", resource_id) if resource_id else None


Seen = tuple[tuple[str, str] | None, FlowResult | None]


def seen_many(works: Sequence[Work], flow: str) -> list[Seen | Exception]:
    """`seen_before` for many works of one Redis, the remembered versions read in one round trip; in a work's
    place the exception reading its record raised (the others unaffected)."""
    found: list[Seen | Exception] = []
    keyed: list[tuple[int, tuple[str, str]]] = []
    for position, work in enumerate(works):
        try:
            seen = _seen_key(work, flow)
        except Exception as exc:  # the caller says which ones a record may meet alone
            found.append(exc)
            continue
        found.append((seen, None))
        if seen is not None:
            keyed.append((position, seen))
    if keyed:
        with works[0].connection.pipeline(transaction=False) as pipe:
            for _, seen in keyed:
                pipe.get(seen[0])
            done = pipe.execute()
        for (position, seen), last in zip(keyed, done, strict=True):
            found[position] = seen, _answer(seen, last)
    return found


def _seen_key(work: Work, flow: str) -> tuple[str, str] | None:
    version = work.source.version(flow, work.raw(flow))
    if not version:
        return None
    return keys.cache(work.integration.id, f"seen:{flow}", version.partition(":")[0]), version


def _answer(seen: tuple[str, str], done: Any) -> FlowResult | None:
    last, _, written = keys.text(done).partition("\n") if done is not None else ("", "", "")
    if last != seen[1]:  # "<version>\n<target id>\n<number>" of its first run
        return None
    target_id, _, number = written.partition("\n")
    return FlowResult("skipped", number=number, target_id=target_id, calls=0,
                      reason="this version of the record was processed already")  # fmt: skip


def note_seen(work: Work, seen: tuple[str, str] | None, result: FlowResult, finish: Pipeline | None = None) -> None:
    """Remember that this version of the record was processed (`seen_before` answers it from now on); with
    `finish`, in that pipeline (sent with the resource lock's release), else at once."""
    if seen is not None:
        (finish or work.connection).set(seen[0], f"{seen[1]}\n{result.target_id}\n{result.number}", ex=SEEN_TTL)


def spread(outcomes: list[FlowResult | Exception | None], members: Sequence[int], calls: int) -> None:
    """The `calls` made for the records at `members` together, shared out over those that have a result
    (in place): whole numbers adding up to `calls`, and each result marked `batched` with how many shared."""
    shared = [p for p in members if isinstance(outcomes[p], FlowResult)]
    if not shared:
        return
    each, extra = divmod(calls, len(shared))
    for n, position in enumerate(shared):
        result = outcomes[position]
        assert isinstance(result, FlowResult)
        share = each + (1 if n < extra else 0)
        outcomes[position] = replace(result, calls=(result.calls or 0) + share, batched=len(shared))
