"""A served request as rows of ops.inference_log: one per song answered, one per refused request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from hit_platform.adapters.lake.tables import ARROW_SCHEMA, PROBABILITIES_TYPE, SHADOW_ARROW_SCHEMA
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.schema import SONG_EXTRAS

_BODY_LIMIT = 65_536  # characters of a refused request's body kept for the audit


@dataclass(slots=True)
class Served:
    """One request as answered: what the request path hands to the logger (no copies, no I/O)."""

    request_id: str
    received_at: datetime
    endpoint: str
    status: int
    latency_ms: float
    model_version: str | None
    top_k: int | None = None
    X: np.ndarray | None = None  # (n, 14) features as fed to the model
    P: np.ndarray | None = None  # (n, 72) probabilities answered
    extras: list[tuple] | None = None  # per song: SONG_EXTRAS values
    request_body: str | None = None  # refused requests only
    response_body: str | None = None
    recovered_from: str | None = None  # set by the committer: the segment of a writer that died
    shadow_of: str | None = None  # a challenger's shadow score: the champion version that answered (ops.shadow_log)

    @property
    def rows(self) -> int:
        return len(self.X) if self.X is not None else 1


def to_arrow(entries: list[Served]) -> pa.Table:
    """The log rows of some served requests, as one Arrow table in ARROW_SCHEMA.

    Runs in the flusher thread of a busy replica, so it does one pass per column over the requests
    (not per row) and lets Arrow repeat request-level values onto their songs.
    """
    counts = np.array([e.rows for e in entries], dtype=np.int64)
    owner = pa.array(np.repeat(np.arange(len(entries)), counts))  # row -> index of its request
    served = np.array([e.X is not None for e in entries], dtype=bool)
    missing = np.repeat(~served, counts)
    nan_x, nan_p = np.full((1, len(FEATURE_COLUMNS)), np.nan), np.full((1, len(COUNTRIES)), np.nan)
    X = np.concatenate([e.X if e.X is not None else nan_x for e in entries]) if entries else nan_x[:0]
    P = np.concatenate([e.P if e.X is not None else nan_p for e in entries]) if entries else nan_p[:0]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    items = pa.array(np.arange(len(owner)) - starts, pa.int32(), mask=missing)
    blank = (None,) * len(SONG_EXTRAS)
    extras = [x for e in entries for x in (e.extras or [blank] * e.rows)] if entries else []

    def per_request(get, type_) -> pa.Array:
        return pa.array([get(e) for e in entries], type_).take(owner)

    cols = {
        "request_id": per_request(lambda e: e.request_id, pa.string()),
        "item": items,
        "received_at": per_request(lambda e: e.received_at, pa.timestamp("us", tz="UTC")),
        "endpoint": per_request(lambda e: e.endpoint, pa.string()),
        "status": per_request(lambda e: e.status, pa.int32()),
        "latency_ms": per_request(lambda e: float(e.latency_ms), pa.float64()),
        "n_songs": per_request(lambda e: len(e.X) if e.X is not None else 0, pa.int32()),
        "model_version": per_request(lambda e: e.model_version, pa.string()),
        "top_k": per_request(lambda e: e.top_k, pa.int32()),
    }
    for j, c in enumerate(SONG_EXTRAS):
        cols[c] = pa.array([x[j] for x in extras], pa.string())
    for j, c in enumerate(FEATURE_COLUMNS):
        cols[c] = pa.array(X[:, j], pa.float64(), mask=missing)
    cols["probabilities"] = pa.StructArray.from_arrays(
        [pa.array(P[:, j], pa.float64()) for j in range(len(COUNTRIES))], fields=list(PROBABILITIES_TYPE),
        mask=pa.array(missing))
    cols["request_body"] = per_request(lambda e: e.request_body, pa.string())
    cols["response_body"] = per_request(lambda e: e.response_body, pa.string())
    cols["recovered_from"] = per_request(lambda e: e.recovered_from, pa.string())
    return pa.table([cols[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def to_shadow_arrow(entries: list[Served]) -> pa.Table:
    """The rows of ops.shadow_log of some challenger scores (entries with `shadow_of`): one per song."""
    counts = np.array([e.rows for e in entries], dtype=np.int64)
    owner = pa.array(np.repeat(np.arange(len(entries)), counts))
    P = np.concatenate([e.P for e in entries]) if entries else np.empty((0, len(COUNTRIES)))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    spotify = SONG_EXTRAS.index("spotify_id")

    def per_request(get, type_) -> pa.Array:
        return pa.array([get(e) for e in entries], type_).take(owner)

    cols = {
        "request_id": per_request(lambda e: e.request_id, pa.string()),
        "item": pa.array(np.arange(len(owner)) - starts, pa.int32()),
        "received_at": per_request(lambda e: e.received_at, pa.timestamp("us", tz="UTC")),
        "endpoint": per_request(lambda e: e.endpoint, pa.string()),
        "champion_model_version": per_request(lambda e: e.shadow_of, pa.string()),
        "shadow_model_version": per_request(lambda e: e.model_version, pa.string()),
        "latency_ms": per_request(lambda e: float(e.latency_ms), pa.float64()),
        "spotify_id": pa.array([x[spotify] for e in entries for x in (e.extras or [(None,) * len(SONG_EXTRAS)]
                                                                      * e.rows)], pa.string()),
        "probabilities": pa.StructArray.from_arrays([pa.array(P[:, j], pa.float64()) for j in range(len(COUNTRIES))],
                                                    fields=list(PROBABILITIES_TYPE)),
        "recovered_from": per_request(lambda e: e.recovered_from, pa.string()),
    }
    return pa.table([cols[f.name] for f in SHADOW_ARROW_SCHEMA], schema=SHADOW_ARROW_SCHEMA)


def truncate_body(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text if len(text) <= _BODY_LIMIT else text[:_BODY_LIMIT] + f"...[{len(text) - _BODY_LIMIT} more chars]"
