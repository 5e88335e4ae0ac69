"""The replica's side: an in-memory buffer the request path appends to, and a flusher thread that
writes it to the journal. Nothing here touches the lake."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from hit_platform.serving.inference_log.journal import journal_files, write_journal
from hit_platform.serving.inference_log.schema import Served, to_arrow

if TYPE_CHECKING:
    from hit_platform.serving.inference_log.committer import JournalCommitter

log = logging.getLogger(__name__)


class InferenceLogger:
    """A replica's side of the log: buffers served requests, a background thread writes them to the journal.

    The request path only appends to a deque. Every `flush_seconds` (or once `batch_rows` wait) the
    flusher turns the buffer into one Arrow table and one journal file: a few milliseconds, no
    lake, no locks shared with other replicas. With `committer` set (replicas on a cluster, where
    the serving process cannot see their disk), the flusher also commits the journal itself.
    """

    def __init__(self, journal_dir: Path, *, flush_seconds: float = 1.0, batch_rows: int = 5_000,
                 committer: JournalCommitter | None = None):
        self.journal_dir = Path(journal_dir)
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.committer = committer
        self._buffer: deque[Served] = deque()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time (thread, close, tests)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.journaled_rows = 0
        self.last_error: str | None = None

    # -- request path --------------------------------------------------------------------------
    def log(self, entry: Served) -> None:
        """Queue one served request: O(1), no I/O, never raises."""
        self._buffer.append(entry)
        with self._count_lock:
            self._pending += entry.rows
            full = self._pending >= self.batch_rows
        if full:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._pending

    # -- background thread ---------------------------------------------------------------------
    def start(self) -> InferenceLogger:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-log-flusher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        lower_this_threads_priority()
        while not self._stop.is_set():
            try:
                self.flush()
                if self.committer is not None:
                    self.committer.commit()
            except Exception:  # never let the flusher die: the next round retries
                log.exception("inference log flush failed")
            self._wake.wait(self.flush_seconds)
            self._wake.clear()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the flusher and write what is left to the journal (and the lake, with a committer)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        if self.committer is not None:
            self.committer.close()

    def flush(self) -> dict:
        """Write the buffer to one journal file. If the disk refuses, the rows stay buffered for the next round."""
        with self._flush_lock:
            entries = []
            while True:
                try:
                    entries.append(self._buffer.popleft())
                except IndexError:
                    break
            if entries:
                rows = sum(e.rows for e in entries)
                try:
                    write_journal(self.journal_dir, to_arrow(entries))
                except Exception as exc:
                    self._buffer.extendleft(reversed(entries))  # keep them, in order, for the next round
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("inference log: cannot write the journal in %s (%s); %d rows kept in memory",
                              self.journal_dir, self.last_error, rows)
                    return self.stats()
                with self._count_lock:
                    self._pending -= rows
                self.journaled_rows += rows
                self.last_error = None
            return self.stats()

    def stats(self) -> dict:
        out = {"pending_rows": self._pending, "journaled_rows": self.journaled_rows,
               "journal_files": len(journal_files(self.journal_dir)), "last_error": self.last_error}
        if self.committer is not None:
            out["committed_rows"] = self.committer.committed_rows
            out["commit_error"] = self.committer.last_error
        return out


def lower_this_threads_priority(niceness: int = 10) -> None:
    """Background work yields the CPU to request handling (Linux: per-thread niceness)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError, PermissionError):
        pass  # not Linux, or not allowed: only the priority is lost
