"""The receiver's local journal: accepted events kept on the gateway's disk while Redis cannot take them.

When the ingestor's Redis step fails, the batch's events go here instead, as Redis would have stored
them (inbox stream, job id, dedupe key, envelope JSON), and the sender still gets its 2xx: a shop that
does not resend failed deliveries (WooCommerce, Business Central) loses nothing in a Redis outage. A
background task of the ingestor drains the journal into Redis, in order, through the same Lua script:
the same dedupe keys and job ids, so an event stored before a crash is recognised (SET NX) and never
stored twice. Only when neither Redis nor this disk can take an event does the receiver answer 503.

On disk, `<journal_dir>/`:

    <ns>-<pid>-<hex>.journal     one writer's records, appended and fsync'd before the 2xx answer
    <ns>-<pid>-<hex>.journal.done   how far the journal has been drained into Redis (offset + CRC), fsync'd

Each process writes its own file, holding an exclusive `flock` on it for as long as it lives; a file
nobody holds (its process died) is an orphan, drained by whichever process takes its lock first. A
file drained to its end is deleted. Records (big-endian):

    "KJ" | length u32 | CRC-32 u32 | body        body: 4 u16 lengths, then stream, job id, endpoint,
                                                 dedupe key, and the envelope JSON (the rest)

A record cut short by a crash (a torn write: never acknowledged, the fsync did not return) or damaged
on disk fails its CRC and is skipped with one log line; decoding resumes at the next record whose
magic and CRC check out.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("koppel.journal")

MAGIC = b"KJ"
_HEADER = struct.Struct(">2sII")
_LENGTHS = struct.Struct(">HHHH")
_DONE = struct.Struct(">QI")
MAX_RECORD = 256 * 1024 * 1024
"""Longer than any envelope (bodies are capped at 64 MiB): a header claiming more is damage."""
READ_WINDOW = 1024 * 1024
MIN_FREE_BYTES = 1024 * 1024
"""`usable` reports a disk with less free space than this as full."""
FAILURE_SHOWN_SECONDS = 10.0
"""`usable` reports a failed append this long, then looks at the directory again (a disk freed up)."""
SUFFIX = ".journal"
DONE_SUFFIX = ".journal.done"


class JournalUnavailable(OSError):
    """The journal's disk did not take the events (not writable, full, I/O error): nothing was journaled."""


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted event as the ingestor's Lua script stores it."""

    stream: str
    job_id: str
    endpoint: str
    dedupe_key: str
    json: bytes


def encode(record: Record) -> bytes:
    parts = [record.stream.encode(), record.job_id.encode(), record.endpoint.encode(), record.dedupe_key.encode()]
    body = b"".join((_LENGTHS.pack(*(len(p) for p in parts)), *parts, record.json))
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _record_at(data: bytes, pos: int) -> Record | int | None:
    """The record at `pos`; or the byte count a complete record there would need (it is cut short by the
    buffer's end); or None when the bytes there are not a record."""
    if len(data) - pos < _HEADER.size:
        return _HEADER.size if data[pos : pos + len(MAGIC)] == MAGIC[: len(data) - pos] else None
    magic: bytes
    length: int
    crc: int
    magic, length, crc = _HEADER.unpack_from(data, pos)
    if magic != MAGIC or length < _LENGTHS.size or length > MAX_RECORD:
        return None
    start = pos + _HEADER.size
    if start + length > len(data):
        return _HEADER.size + length
    body = data[start : start + length]
    if zlib.crc32(body) != crc:
        return None
    sizes = _LENGTHS.unpack_from(body)
    fields: list[str] = []
    at = _LENGTHS.size
    try:
        for size in sizes:
            fields.append(body[at : at + size].decode())
            at += size
    except UnicodeDecodeError:
        return None
    if at > length:
        return None
    return Record(fields[0], fields[1], fields[2], fields[3], body[at:])


@dataclass(frozen=True, slots=True)
class Decoded:
    """What `decode` found in a buffer: records with their spans, damaged spans, and where it stopped."""

    records: list[tuple[int, int, Record]]
    damaged: list[tuple[int, int]]
    end: int
    """Decoded up to here; the rest is the start of a record cut short by the buffer (only when not `final`)."""
    wanted: int = 0
    """Bytes from `end` a complete record there would need (0: none is cut short)."""


def decode(data: bytes, *, final: bool = True) -> Decoded:
    """The records in `data`. `final`: the buffer is all there is (a file's end), so a record cut short
    there is damage (a torn write), not a record still to be read."""
    records: list[tuple[int, int, Record]] = []
    damaged: list[tuple[int, int]] = []
    pos, bad = 0, -1
    while pos < len(data):
        found = _record_at(data, pos)
        if isinstance(found, Record):
            if bad >= 0:
                damaged.append((bad, pos))
                bad = -1
            end = pos + _HEADER.size + _HEADER.unpack_from(data, pos)[1]
            records.append((pos, end, found))
            pos = end
            continue
        if isinstance(found, int) and not final:
            if bad >= 0:
                damaged.append((bad, pos))
            return Decoded(records, damaged, pos, found)
        if bad < 0:
            bad = pos
        following = data.find(MAGIC, pos + 1)
        pos = following if following >= 0 else len(data)
    if bad >= 0:
        damaged.append((bad, len(data)))
    return Decoded(records, damaged, len(data))


@dataclass(eq=False)
class _Segment:
    """One journal file this process holds (its own, or an orphan it took the lock of)."""

    path: Path
    fd: int
    own: bool
    size: int
    """Bytes on disk that are durable (own: fsync'd by `append`; orphan: the file's size)."""
    done: int
    """Bytes drained into Redis and committed to the `.done` file."""
    pending: int
    """Records from `done` to `size` not yet drained (an estimate for an orphan until read)."""
    done_fd: int = -1
    unsaved: bool = False
    """A commit could not be saved (said once in the log)."""

    @property
    def done_path(self) -> Path:
        return self.path.with_name(self.path.name + ".done")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records read from one segment, from its committed offset to `end`."""

    segment: _Segment
    records: list[Record]
    end: int


class Journal:
    """The journal in `directory` (created on first use, owner-only). Thread-safe: `append` runs on the
    ingestor's writer thread, `read`/`commit`/`adopt_orphans` on others."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock = threading.RLock()  # file I/O too: `close` waits for a read or commit under way
        self._own: _Segment | None = None
        self._orphans: list[_Segment] = []
        self._failing: str | None = None
        self._failed_at = 0.0
        self.written_total = 0
        self.drained_total = 0
        self.damaged_total = 0

    # -- state ----------------------------------------------------------------------------------

    @property
    def in_use(self) -> bool:
        """Events wait in the journal (this process's own, or orphans it took): new ones must follow them."""
        return self._own is not None or bool(self._orphans)

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self._segments())

    def _segments(self) -> list[_Segment]:
        own = self._own
        return [*self._orphans, *([own] if own is not None else [])]

    def usable(self) -> str | None:
        """None when the journal can take events; else why not (for /readyz). Reads no file."""
        if self._failing is not None and time.monotonic() - self._failed_at < FAILURE_SHOWN_SECONDS:
            return self._failing
        probe = self.directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            return f"{self.directory} is not writable"
        try:
            free = shutil.disk_usage(probe).free
        except OSError as exc:
            return f"{self.directory} cannot be checked ({exc.__class__.__name__})"
        if free < MIN_FREE_BYTES:
            return f"the disk of {self.directory} is full"
        return None

    # -- writing ----------------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> None:
        """Append the records to this process's journal file and fsync it; JournalUnavailable when the
        disk did not take them (then none of them counts as journaled)."""
        data = b"".join(encode(r) for r in records)
        with self._lock:
            segment = self._own
            try:
                if segment is None:
                    segment = self._create()
                _write_all(segment.fd, data)
                os.fsync(segment.fd)
            except OSError as exc:
                if segment is not None:
                    with contextlib.suppress(OSError):  # undo a partial write; else decoding skips it
                        os.ftruncate(segment.fd, segment.size)
                    self._own = segment  # a new file stays ours (the drain removes it once drained)
                self._failing = f"{self.directory} did not take events ({exc.strerror or exc.__class__.__name__})"
                self._failed_at = time.monotonic()
                raise JournalUnavailable(exc.errno, self._failing) from exc
            self._own = segment
            segment.size += len(data)
            segment.pending += len(records)
            self.written_total += len(records)
            self._failing = None

    def _create(self) -> _Segment:
        """A new own file: made under a temporary name, locked, then renamed, so no other process's
        orphan scan can take it; the directory fsync'd so the file survives a crash."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        temporary = self.directory / (name + ".new")
        path = self.directory / (name + SUFFIX)
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, path)
            _fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        log.warning("journaling accepted events in %s until Redis takes them again", path)
        return _Segment(path, fd, own=True, size=0, done=0, pending=0)

    # -- draining ---------------------------------------------------------------------------------

    def adopt_orphans(self) -> int:
        """Take the lock of every journal file no live process holds; returns how many were taken."""
        try:
            entries = sorted(self.directory.glob("*" + SUFFIX))
            for stale in self.directory.glob("*.new"):  # a process died between creating and naming its file
                _remove_unheld(stale)
        except OSError:
            return 0
        held = {s.path for s in self._segments()}
        taken = 0
        for path in entries:
            if path in held:
                continue
            segment = _take(path)
            if segment is None:
                continue
            log.info("draining %s, left by a gateway that stopped (%d bytes not yet in Redis)",
                     path, segment.size - segment.done)  # fmt: skip
            with self._lock:
                self._orphans.append(segment)
                self._orphans.sort(key=lambda s: s.path.name)
            taken += 1
        return taken

    def read(self, limit: int) -> Chunk | None:
        """Up to `limit` records of the oldest segment from its committed offset; None when nothing is
        left to read (fully drained segments are closed and deleted on the way)."""
        while True:
            with self._lock:
                segments = self._segments()
            if not segments:
                return None
            segment = segments[0]
            with self._lock:
                if segment.fd < 0:
                    return None  # closed meanwhile (the gateway stops)
                chunk = self._read(segment, limit)
            if chunk is not None:
                return chunk
            if not self._finish(segment):
                return None  # our own file, drained up to what has been appended: more may come

    def _read(self, segment: _Segment, limit: int) -> Chunk | None:
        pos = segment.done
        records: list[Record] = []
        want = READ_WINDOW
        while pos < segment.size and len(records) < limit:
            data = os.pread(segment.fd, min(want, segment.size - pos), pos)
            found = decode(data, final=pos + len(data) >= segment.size)
            taken = found.records[: limit - len(records)]
            consumed = taken[-1][1] if len(taken) < len(found.records) else found.end
            for start, end in found.damaged:
                if start < consumed:
                    self.damaged_total += 1
                    log.warning("%s: skipped %d damaged bytes at offset %d (a write cut short by a crash, never "
                                "acknowledged, or a damaged disk)", segment.path, end - start, pos + start)  # fmt: skip
            records.extend(r for _, _, r in taken)
            if consumed == 0:
                want = max(want, found.wanted)  # one record longer than the window
                continue
            pos += consumed
        if pos == segment.done:
            return None
        return Chunk(segment, records, pos)

    def commit(self, chunk: Chunk) -> None:
        """Record durably that the chunk is in Redis; a segment drained to its end is deleted."""
        segment = chunk.segment
        with self._lock:
            if segment.fd < 0:
                return  # closed meanwhile (the gateway stops): the next gateway replays the chunk, recognised
            try:
                if segment.done_fd < 0:
                    segment.done_fd = os.open(segment.done_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.pwrite(segment.done_fd, _DONE.pack(chunk.end, zlib.crc32(_DONE.pack(chunk.end, 0))), 0)
                os.fsync(segment.done_fd)
            except OSError as exc:  # a full disk must not stop the drain that frees it: after a crash the
                # chunk is replayed, and the Lua script recognises what it stored (same keys, same job ids)
                if not segment.unsaved:
                    log.warning("%s: progress not saved (%s); draining on", segment.done_path, exc.strerror)
                segment.unsaved = True
            segment.done = chunk.end
            segment.pending = max(0, segment.pending - len(chunk.records))
            self.drained_total += len(chunk.records)
        self._finish(segment)

    def _finish(self, segment: _Segment) -> bool:
        """Delete the segment if it is drained to its end: for our own file, `append` (under the same
        lock) has not added anything since, so new events go to Redis again only after all of these."""
        with self._lock:
            if segment.fd < 0 or segment.done < segment.size:
                return False
            for path in (segment.path, segment.done_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            with contextlib.suppress(OSError):
                _fsync_dir(self.directory)
            _close(segment)
            if segment is self._own:
                self._own = None
            else:
                self._orphans.remove(segment)
        log.info("%s drained into Redis and removed", segment.path.name)
        return True

    def close(self) -> None:
        """Let go of every file (their locks too): what is left is drained by the next gateway."""
        with self._lock:
            for segment in self._segments():
                _close(segment)
            self._own = None
            self._orphans = []

    def files(self) -> Iterator[Path]:
        """The journal files in the directory (any process's)."""
        with contextlib.suppress(OSError):
            yield from sorted(self.directory.glob("*" + SUFFIX))


def _take(path: Path) -> _Segment | None:
    """The orphan at `path` with its lock taken, or None (a live process holds it, or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:  # deleted (and perhaps made anew) meanwhile
            raise FileNotFoundError(path)
        size = os.fstat(fd).st_size
    except OSError:
        os.close(fd)
        return None
    segment = _Segment(path, fd, own=False, size=size, done=0, pending=0)
    segment.done = min(_read_done(segment.done_path), size)
    try:
        data = os.pread(fd, size - segment.done, segment.done) if size > segment.done else b""
    except OSError:
        os.close(fd)
        return None
    segment.pending = len(decode(data).records)
    return segment


def _remove_unheld(path: Path) -> None:
    """Delete a file no process holds the lock of (an empty journal file that never got its name)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_done(path: Path) -> int:
    """The committed offset in a `.done` file; 0 when there is none or it is damaged (replaying from the
    start is safe: the Lua script recognises what is stored)."""
    try:
        raw = path.read_bytes()[: _DONE.size]
    except OSError:
        return 0
    if len(raw) < _DONE.size:
        return 0
    offset, crc = _DONE.unpack(raw)
    return offset if crc == zlib.crc32(_DONE.pack(offset, 0)) else 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close(segment: _Segment) -> None:
    for fd in (segment.done_fd, segment.fd):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    segment.fd = segment.done_fd = -1


class JournalCollector(Collector):
    """The journal's gauges and counters for /metrics, read from memory (no file is touched)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        journal = self._journal
        yield GaugeMetricFamily(
            "koppel_journal_in_use",
            "1 while accepted events wait in the gateway's journal for Redis (new events then follow them there)",
            value=1 if journal.in_use else 0,
        )
        yield GaugeMetricFamily(
            "koppel_journal_pending_events", "Accepted events in the journal not yet in Redis", value=journal.pending
        )
        yield CounterMetricFamily(
            "koppel_journal_written", "Events journaled (Redis could not take them)", value=journal.written_total
        )
        yield CounterMetricFamily(
            "koppel_journal_drained", "Journaled events stored in Redis by the drain", value=journal.drained_total
        )
        yield CounterMetricFamily(
            "koppel_journal_damaged", "Damaged or torn journal records skipped", value=journal.damaged_total
        )
