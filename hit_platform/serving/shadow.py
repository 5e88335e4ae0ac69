"""The replica's shadow scorer: the challenger scores what the champion answered, off the response path.

A request is answered and journaled by the champion as always; then, if a
challenger is loaded, its feature rows are queued here (an append, no copy).
A niced thread takes what has queued every few milliseconds, scores it with
one model call per challenger, and journals each request's scores as its own
record (`Served.shadow_of` = the champion version that answered) in the same
journal as the answers: sealed, recovered after a kill and committed exactly
like them, into `ops.shadow_log`. So the client's latency and bytes do not
change, and what was scored is as durable as what was answered. What is
still queued when a replica dies was never scored: those songs simply go
unshadowed. A full queue (`HIT_SHADOW_QUEUE_ROWS`) skips songs, counted,
rather than ever slow the champion.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from hit_platform.domain.probabilities import answered
from hit_platform.serving.inference_log import InferenceLogger, Served
from hit_platform.serving.inference_log.logger import lower_this_threads_priority
from hit_platform.serving.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Queued:
    challenger: Predictor
    request_id: str
    received_at: datetime
    endpoint: str
    champion_version: str
    X: np.ndarray
    extras: list[tuple] | None


class ShadowScorer:
    """Scores queued requests with the challenger they were queued with, in batches, off the request path."""

    def __init__(self, logger: InferenceLogger, *, queue_rows: int = 20_000, gather_seconds: float = 0.02):
        self.logger = logger
        self.queue_rows = queue_rows
        self.gather_seconds = gather_seconds  # let a few requests gather: one model call scores them all
        self._queue: deque[_Queued] = deque()
        self._queued_rows = 0
        self._count = threading.Lock()  # submit runs on the event loop and in worker threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scored_rows = 0
        self.skipped_rows = 0
        self.last_error: str | None = None

    def submit(self, challenger: Predictor, request_id: str, received_at: datetime, endpoint: str,
               champion_version: str, X: np.ndarray, extras: list[tuple] | None) -> None:
        """Queue an answered request for the challenger (a few hundred nanoseconds; never blocks)."""
        with self._count:
            if self._queued_rows + len(X) > self.queue_rows:
                self.skipped_rows += len(X)
                return
            self._queued_rows += len(X)
            self._queue.append(_Queued(challenger, request_id, received_at, endpoint, champion_version, X, extras))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        lower_this_threads_priority()
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.gather_seconds)
            self.score_queued()

    def score_queued(self) -> int:
        """Score everything queued now: one model call per challenger. Returns the songs scored."""
        taken: list[_Queued] = []
        while self._queue:
            taken.append(self._queue.popleft())
        if not taken:
            return 0
        with self._count:
            self._queued_rows -= sum(len(q.X) for q in taken)
        done = 0
        groups: dict[int, list[_Queued]] = {}
        for q in taken:  # requests queued across a challenger swap keep the challenger they were queued with
            groups.setdefault(id(q.challenger), []).append(q)
        for group in groups.values():
            challenger = group[0].challenger
            try:
                P = answered(challenger.predict(np.concatenate([q.X for q in group])))
            except Exception as exc:  # a broken challenger never touches the champion's answers
                self.last_error = f"version {challenger.version}: {type(exc).__name__}: {exc}"
                log.error("shadow scoring with version %s failed: %s", challenger.version, exc)
                continue
            now = datetime.now(timezone.utc)
            at = 0
            for q in group:
                n = len(q.X)
                self.logger.log(Served(q.request_id, q.received_at, q.endpoint, 200,
                                       (now - q.received_at).total_seconds() * 1e3, challenger.version, None,
                                       q.X, P[at:at + n], q.extras, shadow_of=q.champion_version))
                at += n
            done += at
        self.scored_rows += done
        return done

    def close(self) -> None:
        """Score what is queued, then stop (graceful shutdown: before the logger seals its last segment)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.score_queued()

    def stats(self) -> dict:
        return {"queued_rows": self._queued_rows, "scored_rows": self.scored_rows, "skipped_rows": self.skipped_rows,
                "last_error": self.last_error}
