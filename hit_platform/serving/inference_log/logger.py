"""The replica's side: each answered request written to its journal segment before the answer leaves;
a bounded memory buffer only while the disk refuses; a roller thread that seals segments."""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Callable

from hit_platform.serving.background import lower_this_threads_priority
from hit_platform.serving.inference_log.journal import SegmentWriter, encode, journal_files, seal_segment
from hit_platform.serving.inference_log.schema import Served

log = logging.getLogger(__name__)


class InferenceLogger:
    """A replica's side of the log.

    `log(entry)` encodes the request and `write`s it to the open segment: about ten microseconds,
    and once it returns the record outlives this process. If the write fails (disk full, read-only,
    gone), the record waits in memory, in order, and the roller retries every round. That buffer
    holds at most `buffer_rows` rows: past it `accepting` turns False and the replica answers 503
    rather than answer what it cannot log. `on_trouble(state, reason)` is told when the log starts
    buffering ("buffering"), refusing ("refusing") or is whole again ("ok").

    Every `flush_seconds` (or once a segment holds `batch_rows` rows) the roller seals the segment
    (fsync + rename), then calls `on_roll()` if given: a replica on a cluster commits its own journal
    there (`JournalCommitter.commit`), right after each seal.
    """

    def __init__(self, journal_dir: Path, *, flush_seconds: float = 1.0, batch_rows: int = 5_000,
                 buffer_rows: int = 50_000, on_roll: Callable[[], object] | None = None,
                 on_trouble: Callable[[str, str], None] | None = None, fsync: bool = True):
        self.journal_dir = Path(journal_dir)
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.buffer_rows = buffer_rows
        self.on_roll = on_roll
        self.on_trouble = on_trouble
        self._writer = SegmentWriter(self.journal_dir, fsync=fsync)
        self._backlog: deque[tuple[int, bytes]] = deque()  # (rows, record) the disk refused, oldest first
        self._backlog_rows = 0
        self._segment_rows = 0
        self._lock = threading.Lock()  # one writer of the segment: requests, the roller, close
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "ok"
        self.journaled_rows = 0
        self.refused_requests = 0  # answered 503 because the log could not take them
        self.last_error: str | None = None

    # -- request path --------------------------------------------------------------------------
    def log(self, entry: Served) -> None:
        """Journal one answered request before its answer is sent. Never raises: the disk refusing
        puts the record in the bounded buffer instead."""
        record = encode(entry)
        with self._lock:
            if self._backlog:  # keep the order: older refused records go first
                self._buffer(entry.rows, record)
                return
            try:
                self._writer.append(record)
            except OSError as exc:
                self._failed(exc)
                self._buffer(entry.rows, record)
                return
            self._segment_rows += entry.rows
            self.journaled_rows += entry.rows
            full = self._segment_rows >= self.batch_rows
        if full:
            self._wake.set()

    @property
    def accepting(self) -> bool:
        """False once the memory buffer is full: answer 503 instead of answering unlogged."""
        return self._backlog_rows < self.buffer_rows

    def refuse(self) -> str:
        """Count a request turned away because the log cannot take it; the reason to give the client."""
        self.refused_requests += 1
        return (f"the inference log cannot be written ({self.last_error}) and {self._backlog_rows} rows already wait "
                f"in memory (HIT_SERVE_LOG_BUFFER_ROWS={self.buffer_rows}); no answer is given that cannot be logged")

    def _buffer(self, rows: int, record: bytes) -> None:
        self._backlog.append((rows, record))
        self._backlog_rows += rows
        if not self.accepting:
            self._set_state("refusing")

    def _failed(self, exc: OSError) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.state == "ok":
            log.error("inference log: cannot write the journal in %s (%s); keeping up to %d rows in memory",
                      self.journal_dir, self.last_error, self.buffer_rows)
            self._set_state("buffering")

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self.on_trouble is not None:
            reason = self.last_error or ""
            threading.Thread(target=self.on_trouble, args=(state, reason), daemon=True).start()

    # -- the roller ------------------------------------------------------------------------------
    def start(self) -> InferenceLogger:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-log-roller", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        lower_this_threads_priority()
        while not self._stop.is_set():
            try:
                self.flush()
                if self.on_roll is not None:
                    self.on_roll()
            except Exception:  # never let the roller die: the next round retries
                log.exception("inference log roll failed")
            self._wake.wait(self.flush_seconds)
            self._wake.clear()

    def flush(self) -> dict:
        """Write what waits in memory, then seal the open segment (fsync + rename: outside the lock,
        so requests keep writing to the next segment meanwhile)."""
        with self._lock:
            try:
                while self._backlog:
                    rows, record = self._backlog[0]
                    self._writer.append(record)
                    self._backlog.popleft()
                    self._backlog_rows -= rows
                    self.journaled_rows += rows
            except OSError as exc:
                self._failed(exc)
                return self.stats()
            handed = self._writer.rotate()
            self._segment_rows = 0
        if handed is not None:
            try:
                seal_segment(*handed, fsync=self._writer.fsync)
            except OSError as exc:
                self._failed(exc)
                return self.stats()
        if self.state != "ok":
            with self._lock:
                if not self._backlog:
                    log.warning("inference log: the journal is writable again; the memory buffer is written")
                    self.last_error = None
                    self._set_state("ok")
        return self.stats()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the roller and seal what is written."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        with self._lock:
            self._writer.close()

    @property
    def pending_rows(self) -> int:
        return self._backlog_rows

    def stats(self) -> dict:
        return {"state": self.state, "pending_rows": self._backlog_rows, "journaled_rows": self.journaled_rows,
                "buffer_rows": self.buffer_rows, "refused_requests": self.refused_requests,
                "journal_files": len(journal_files(self.journal_dir)), "last_error": self.last_error}

