"""Dynamic batching of /predict inside a replica: concurrent one-song requests share one model call.

    batcher = MicroBatcher(max_size=64, wait_ms=0, finish=song_answers)
    batcher.admit(model)                            # where the model is loaded (off the event loop)
    P, tail = await batcher.predict(model, X[0], k) # X = features_of([song]); finish(rows, [k, ...])[i]

Without `finish` a request gets its (72,) row of probabilities. With it, `finish(P, keys)` turns a
group's probabilities into each request's result at once (the app answers and encodes the
whole batch in one pass, see encoding.song_answers); each request passes its own key (its top_k).

A model call costs about 0.2 ms whatever the rows (a one-row DataFrame through the sklearn
pipeline; see predictor.py), so under load most of it is overhead that a batch pays once.
At low load nothing waits: the first request into an idle batcher schedules the flush with
`loop.call_soon`, so it runs on the next turn of the event loop, joined only by requests that
were ready in the same turn. `wait_ms` > 0 holds a batch open that long for more company
(a latency cost at low load, so 0 by default); a batch reaching `max_size` goes at once;
`max_size=1` calls the model directly, as without a batcher.

Each request passes the model it read (`model = self.model` at its start), and rows are
grouped by model object: a swap mid-batch never answers a request with the other version.
An exception of a model call reaches every request of its group.

Batched answers must be the bytes a song gets alone, and float sums need not be: a one-row
matrix product goes through BLAS gemv, a batch through gemm, so the last bit of a probability
can differ (the linear, mlp and blend families do on every row, by <= 4.4e-16). `answered`'s
rounding to 1e-9 hides that except near a rounding midpoint: measured, 1 song in 60,000 got
another 9th decimal in one country. So each model object is admitted once (`admit`, at load
time, off the event loop) and batched only if its batches give bit-identical probabilities to
single rows on probe rows (prior and trees do; a batch-size-independent product, e.g. np.einsum
in the estimators' decision_function, makes the other families pass too).
"""

from __future__ import annotations

import asyncio
import weakref

import numpy as np

from hit_platform.serving.predictor import probe_rows

# Batch sizes tried by `answers_batch_invariant`: small ones (BLAS edge kernels) up to a full probe set.
_PROBE_SIZES = (2, 3, 4, 5, 7, 8, 16, 31, 64)


def answers_batch_invariant(model, X: np.ndarray | None = None, sizes=_PROBE_SIZES) -> bool:
    """Whether model.predict(X[:n]) row i has the very bits of model.predict(X[i:i+1]), for each n
    (then the answered bytes are equal too: `answered` is elementwise)."""
    X = probe_rows(max(sizes), seed=1) if X is None else X
    alone = np.vstack([model.predict(X[i:i + 1]) for i in range(len(X))])
    return all(np.array_equal(model.predict(X[:n]), alone[:n]) for n in sizes if n <= len(X))


class MicroBatcher:
    """Collects concurrent `predict(model, row)` calls of one event loop into one model call per model."""

    def __init__(self, max_size: int = 64, wait_ms: float = 0.0, finish=None):
        if max_size < 1 or wait_ms < 0:
            raise ValueError(f"max_size must be >= 1 and wait_ms >= 0, got {max_size}, {wait_ms}")
        self.max_size, self.wait_ms = max_size, wait_ms
        self.finish = finish if finish is not None else (lambda P, keys: P)
        self._pending: list[tuple[object, np.ndarray, asyncio.Future, object]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._verdicts: dict[int, tuple[weakref.ref, bool]] = {}  # id(model) -> (model, may batch)
        self.calls = 0  # model calls made by flushes (a caller can divide rows by it: mean batch size)
        self.rows = 0
        self.largest = 0

    def admit(self, model) -> bool:
        """Decide once per model object whether it may be batched (see the module doc). It costs ~70 model
        calls (15-40 ms): call it where the model is loaded, in a worker thread; else the first
        `predict` with that model pays it on the event loop."""
        known = self._verdicts.get(id(model))
        if known is not None and known[0]() is model:
            return known[1]
        sizes = _PROBE_SIZES if self.max_size <= _PROBE_SIZES[-1] else (*_PROBE_SIZES, self.max_size)
        ok = self.max_size > 1 and answers_batch_invariant(model, sizes=sizes)
        key = id(model)
        try:  # weak: a swapped-out version is not kept alive by its verdict (nor its id mistaken for a new one's)
            ref = weakref.ref(model, lambda _, k=key: self._verdicts.pop(k, None))
        except TypeError:  # not weak-referenceable: kept alive (a replica loads a few versions in its life)
            ref = lambda: model  # noqa: E731
        self._verdicts[key] = (ref, ok)
        return ok

    def stats(self, model) -> dict:
        """For /healthz: whether `model` is batched, and the batches so far (mean size = rows / calls)."""
        return {"batched": self.max_size > 1 and self.admit(model), "max_size": self.max_size,
                "wait_ms": self.wait_ms, "calls": self.calls, "rows": self.rows, "largest": self.largest}

    async def predict(self, model, x_row: np.ndarray, key=None):
        """`finish`'s result for one (14,) feature row by `model` (by default its (72,) probabilities),
        batched with concurrent calls."""
        if self.max_size == 1 or not self.admit(model):
            return self.finish(model.predict(x_row.reshape(1, -1)), [key])[0]
        loop = asyncio.get_running_loop()
        if self._pending and loop is not self._loop:
            raise RuntimeError("a MicroBatcher serves one event loop")
        self._loop = loop
        future = loop.create_future()
        self._pending.append((model, x_row.reshape(-1), future, key))
        if len(self._pending) >= self.max_size:
            self._flush()  # full: this request's coroutine pays for the batch, nobody waits longer
        elif self._flush_handle is None:
            self._flush_handle = (loop.call_later(self.wait_ms / 1000, self._flush) if self.wait_ms
                                  else loop.call_soon(self._flush))
        return await future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[object, np.ndarray, asyncio.Future, object]]] = {}
        for item in pending:
            if not item[2].done():  # a cancelled request (client gone) needs no answer
                groups.setdefault(id(item[0]), []).append(item)
        for group in groups.values():
            futures = [f for _, _, f, _ in group]
            try:
                results = self.finish(group[0][0].predict(np.stack([x for _, x, _, _ in group])),
                                      [key for *_, key in group])
            except Exception as exc:
                for f in futures:
                    f.set_exception(exc)
                continue
            finally:
                self.calls += 1
                self.rows += len(group)
                self.largest = max(self.largest, len(group))
            for f, result in zip(futures, results):
                f.set_result(result)
