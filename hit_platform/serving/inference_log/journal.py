"""The journal: each replica's answered requests on local disk, written before the answer is sent.

A replica appends one record per request to its open segment
(`<journal>/<time_ns>-<pid>-<id>.open`) with a plain `write`: once the call
returns, the record is in the kernel's page cache and outlives the process,
whatever kills it. Every roll (`HIT_SERVE_LOG_FLUSH_SECONDS`, or sooner once
a segment is large) the replica fsyncs the segment and renames it to `.seg`:
sealed, and safe from a power cut too.

A record is framed so a reader can tell a whole record from a torn one:

    b"HITJ" | payload length (u32) | crc32 of payload (u32) | payload
    payload = meta length (u32) | meta (JSON) | X (n x 14 float64) | P (n x 72 float64)

The writer holds an exclusive `flock` on its open segment for as long as it
lives; the kernel drops that lock when the process dies, even by `kill -9`.
So a committer that can lock an `.open` segment knows its writer is gone and
recovers it: every whole record is committed, an unfinished last record
(a request killed mid-write, never answered) is dropped.

Only there, at the end of an open segment, can a record be unfinished. Anything
else that does not read (a sealed segment that stops short, a bad checksum, a
broken length or magic) is damage: the reader skips to the next whole record
and says which bytes it could not read, and the committer keeps the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving.inference_log.schema import Served

MAGIC = b"HITJ"
_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32
_META_LEN = struct.Struct("<I")
NEW, OPEN, SEALED = ".new", ".open", ".seg"  # being created (a hidden name), written to, sealed
_OPEN_ATTEMPTS = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_NX, _NP = len(FEATURE_COLUMNS), len(COUNTRIES)


# -- records ---------------------------------------------------------------------------------------------

def encode(e: Served) -> bytes:
    """One served request as one framed record (a few microseconds for /predict)."""
    received = (e.received_at - _EPOCH) // _MICRO
    meta = {"id": e.request_id, "at": received, "ep": e.endpoint, "st": e.status, "ms": e.latency_ms,
            "mv": e.model_version, "k": e.top_k, "n": 0 if e.X is None else len(e.X)}
    if e.extras is not None:
        meta["ex"] = e.extras
    if e.request_body is not None:
        meta["rq"] = e.request_body
    if e.response_body is not None:
        meta["rs"] = e.response_body
    if e.shadow_of is not None:
        meta["sh"] = e.shadow_of
    head = json.dumps(meta, separators=(",", ":"), default=str).encode()
    parts = [_META_LEN.pack(len(head)), head]
    if e.X is not None:
        parts += [np.ascontiguousarray(e.X, dtype=np.float64).tobytes(),
                  np.ascontiguousarray(e.P, dtype=np.float64).tobytes()]
    payload = b"".join(parts)
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: memoryview) -> Served:
    (m,) = _META_LEN.unpack_from(payload)
    meta = json.loads(bytes(payload[4:4 + m]))
    n, at = meta["n"], 4 + m
    X = P = None
    if n:
        X = np.frombuffer(payload, np.float64, n * _NX, at).reshape(n, _NX)
        P = np.frombuffer(payload, np.float64, n * _NP, at + n * _NX * 8).reshape(n, _NP)
    extras = [tuple(x) for x in meta["ex"]] if "ex" in meta else None
    return Served(meta["id"], _EPOCH + meta["at"] * _MICRO, meta["ep"], meta["st"], meta["ms"], meta["mv"],
                  meta["k"], X, P, extras, meta.get("rq"), meta.get("rs"), shadow_of=meta.get("sh"))


@dataclass
class Segment:
    """What a segment file holds: its whole records, and what could not be read."""

    path: Path
    entries: list[Served] = field(default_factory=list)
    size: int = 0
    good_bytes: int = 0  # bytes of whole records from the start
    torn_tail: bool = False  # an open segment's unfinished last record (its writer killed mid-append)
    tail_bytes: int = 0  # the bytes of that unfinished record
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # damaged byte ranges [start, end)

    @property
    def corrupt_at(self) -> int | None:
        """Where the first damage starts (None: the file reads to its end, or only its tail is torn)."""
        return self.unreadable[0][0] if self.unreadable else None

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entries)


def _record_at(data: memoryview, at: int) -> tuple[Served, int] | None:
    """The whole record starting at `at` and where it ends, or None if none does."""
    if len(data) - at < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack_from(data, at)
    end = at + _HEADER.size + length
    if magic != MAGIC or end > len(data):
        return None
    payload = data[at + _HEADER.size:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        return _decode(payload), end
    except (ValueError, KeyError, TypeError, struct.error):  # crc passed but not a record of ours
        return None


def _next_record(data: memoryview, start: int) -> tuple[int, Served, int] | None:
    """The first whole record after `start` (its offset, the record, its end): where reading resumes."""
    raw = data.obj if isinstance(data.obj, bytes) else bytes(data)
    at = raw.find(MAGIC, start + 1)
    while at != -1:
        if (found := _record_at(data, at)) is not None:
            return at, *found
        at = raw.find(MAGIC, at + 1)
    return None


def _unfinished(data: memoryview, at: int) -> bool:
    """Whether the bytes from `at` to the end can be one record cut short by its writer's death: its
    header (or the part written) is sound and it reaches past the end of the file."""
    rest = bytes(data[at:at + _HEADER.size])
    if len(rest) < _HEADER.size:
        return MAGIC.startswith(rest[:len(MAGIC)])
    magic, length, _ = _HEADER.unpack_from(rest)
    return magic == MAGIC and at + _HEADER.size + length > len(data)


def read_segment(path: Path) -> Segment:
    """Every whole record of a segment, in order, and the byte ranges that are not one. FileNotFoundError
    if gone. Only an open segment (`.open`) may end in a torn record (`torn_tail`); any other record
    that does not read is damage (`unreadable`), and reading resumes at the next whole record."""
    data = memoryview(path.read_bytes())
    seg, at = Segment(path, size=len(data)), 0
    open_segment = path.suffix == OPEN
    while at < len(data):
        found = _record_at(data, at)
        if found is not None:
            entry, at = found
            seg.entries.append(entry)
            if not seg.unreadable:
                seg.good_bytes = at
            continue
        resume = _next_record(data, at)
        if resume is None:
            if open_segment and _unfinished(data, at):
                seg.torn_tail, seg.tail_bytes = True, len(data) - at  # the last append, half on disk: never answered
            else:
                seg.unreadable.append((at, len(data)))
            break
        seg.unreadable.append((at, resume[0]))
        seg.entries.append(resume[1])
        at = resume[2]
    return seg


# -- the writer -------------------------------------------------------------------------------------------

class SegmentWriter:
    """One process's open segment: append records, seal it, start the next one when needed.

    Not thread-safe: the caller (InferenceLogger) serializes appends and seals.
    """

    def __init__(self, journal_dir: Path, *, fsync: bool = True):
        self.journal_dir = Path(journal_dir)
        self.fsync = fsync
        self.fd: int | None = None
        self.path: Path | None = None
        self.offset = 0

    def _open(self) -> None:
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_OPEN_ATTEMPTS):
            name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            # Locked under a name no committer looks at, then renamed: a committer never sees an
            # unlocked `.open` segment whose writer is alive.
            tmp = self.journal_dir / f".{name}{NEW}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path = self.journal_dir / (name + OPEN)
                os.rename(tmp, path)
            except (BlockingIOError, FileNotFoundError):
                # A committer's sweep of dead writers' leftovers took the file between its creation and
                # its lock (it holds it, or has removed it): nothing was written to it, so take a new one.
                os.close(fd)
                if attempt == _OPEN_ATTEMPTS - 1:
                    raise
                continue
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            self.fd, self.path, self.offset = fd, path, 0
            return

    def append(self, record: bytes) -> None:
        """Write one record; on return it survives this process. OSError if the disk refuses (nothing half-kept)."""
        if self.fd is None:
            self._open()
        view, written = memoryview(record), 0
        try:
            while written < len(record):
                written += os.write(self.fd, view[written:])
        except OSError:
            self._abandon_partial()
            raise
        self.offset += len(record)

    def _abandon_partial(self) -> None:
        """After a failed write: cut the file back to its whole records, or seal what it has and move on."""
        try:
            os.ftruncate(self.fd, self.offset)
        except OSError:
            self.seal()  # the committer keeps a sealed segment that does not read whole, with an alert

    def rotate(self) -> tuple[int, Path] | None:
        """Hand over the open segment for sealing (`seal_segment`, outside the caller's lock); the next
        append starts a new one. None if it holds nothing."""
        if self.fd is None or self.offset == 0:
            return None
        handed = (self.fd, self.path)
        self.fd, self.path, self.offset = None, None, 0
        return handed

    def seal(self) -> Path | None:
        """fsync and rename the open segment to `.seg` (a power cut now spares it); None if it holds nothing."""
        handed = self.rotate()
        return seal_segment(*handed, fsync=self.fsync) if handed else None

    def close(self) -> None:
        """Seal what was written; an empty open segment is removed."""
        if self.fd is not None and self.offset == 0:
            fd, path = self.fd, self.path
            self.fd, self.path = None, None
            path.unlink(missing_ok=True)
            os.close(fd)
            return
        self.seal()


def seal_segment(fd: int, path: Path, *, fsync: bool = True) -> Path:
    """fsync a segment, rename it `.seg` while still holding its lock (no committer takes it for a dead
    writer's), then close it. If the rename fails it stays `.open`, unlocked: the committer recovers it."""
    sealed = path.with_suffix(SEALED)
    try:
        if fsync:
            os.fsync(fd)
        os.rename(path, sealed)
    finally:
        os.close(fd)  # releases the lock
    return sealed


# -- the folder ---------------------------------------------------------------------------------------------

def journal_files(journal_dir: Path, suffixes: tuple[str, ...] = (SEALED,)) -> list[Path]:
    """Journal files with these suffixes, oldest first (names start with a nanosecond timestamp)."""
    try:
        return sorted(p for p in journal_dir.iterdir() if p.suffix in suffixes and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):  # no journal yet, or something else in its place
        return []
