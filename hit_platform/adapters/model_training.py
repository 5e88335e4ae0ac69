"""Candidate models trained from one lake snapshot, one MLflow run each, the best registered.

`ml/candidate_models` (`defs/ml/training.py`) reads the training data (`training_data`: the newest
snapshot, or a pinned past one) and hands it to `train_and_register`; `hit-platform rebuild` asks
`readable_snapshot` whether a snapshot can still be trained from, and `trainable_snapshot` whether every
blocking gate passed the data the training would read there (`adapters/lake/verdicts.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.early_rebuild import EarlyRebuilds
from hit_platform.adapters.lake.verdicts import refuse_unjudged
from hit_platform.adapters.model_explanations import background_tags, log_backgrounds
from hit_platform.adapters.model_importance import log_importances
from hit_platform.adapters.tracking import ModelVersionInfo, Tracker, code_version
from hit_platform.settings import TrainingSettings
from hit_platform.domain.models import CandidateResult, select_best, train_candidates
from hit_platform.domain.models.candidates import SearchProgress
from hit_platform.steps.datasets import SPLIT_TABLES, Dataset, at_version, load_split
from hit_platform.steps.transforms import table_fingerprint

PROBE_ROWS = 256


def prediction_hash(pipeline, X: pd.DataFrame) -> str:
    """sha256 of the prediction bytes on a fixed probe set: same model, same hash."""
    return hashlib.sha256(np.ascontiguousarray(pipeline.predict_proba(X), dtype=np.float64).tobytes()).hexdigest()


class SnapshotUnavailable(ValueError):
    """A lake snapshot a model cannot be (re)built from: never taken, expired, or from before the splits."""


def readable_snapshot(lake: Lake, con: duckdb.DuckDBPyConnection, snapshot: int) -> int:
    """`snapshot`, once it is sure the lake still holds it with splits to train from; otherwise
    `SnapshotUnavailable` saying why and which snapshots there are."""
    kept = [r[0] for r in con.execute(f"SELECT snapshot_id FROM {lake.alias}.snapshots() ORDER BY 1").fetchall()]
    if snapshot not in kept:
        # DuckLake numbers snapshots 0, 1, 2, ...: a missing id below the newest was expired
        if 0 <= snapshot < kept[-1]:
            raise SnapshotUnavailable(
                f"lake snapshot {snapshot} has been expired from the lake (ducklake_expire_snapshots): its data "
                f"can no longer be read by time travel; the lake keeps {len(kept)} snapshots, "
                f"{kept[0]} .. {kept[-1]}")
        raise SnapshotUnavailable(f"lake snapshot {snapshot} does not exist: the lake's snapshots run "
                                  f"{kept[0]} .. {kept[-1]}")
    try:
        con.execute(f"SELECT count(*) FROM {at_version('ml.splits', snapshot)}").fetchall()
    except duckdb.CatalogException:
        raise SnapshotUnavailable(
            f"lake snapshot {snapshot} has no ml.splits: it was taken before the splits were first built; "
            f"pick a later one (`hit-platform sql \"SELECT * FROM lake.snapshots()\"` lists them)") from None
    return snapshot


def trainable_snapshot(lake: Lake, con: duckdb.DuckDBPyConnection, snapshot: int,
                       gates: Mapping[str, Iterable[str]]) -> int:
    """`readable_snapshot`, and every blocking gate of `gates` ({table: check names}, the tables a split
    is read from, SPLIT_TABLES) passed the version of its table the lake holds at `snapshot`; otherwise
    `SnapshotUnavailable` or `verdicts.UnjudgedData`, which names each check that refused or never judged."""
    readable_snapshot(lake, con, snapshot)
    _judged(con, snapshot, gates)
    return snapshot


def _judged(con: duckdb.DuckDBPyConnection, snapshot: int, gates: Mapping[str, Iterable[str]]) -> None:
    refuse_unjudged(con, snapshot, {t: gates.get(t, ()) for t in SPLIT_TABLES}, "trained from")


@dataclass
class TrainingData:
    """The train and validation splits at the snapshot candidates train from."""

    snapshot: int
    newest: int  # the lake's newest snapshot when they were read
    train: Dataset
    validation: Dataset
    splits_fingerprint: str
    pinned: bool  # a past snapshot the settings chose, not the newest


def training_data(lake: Lake, con: duckdb.DuckDBPyConnection, pinned: int | None = None,
                  gates: Mapping[str, Iterable[str]] | None = None) -> TrainingData:
    """The splits at the newest snapshot, or at `pinned` once `readable_snapshot` is sure of it; with
    `gates`, only once `trainable_snapshot` is (the blocking gates passed what is read there)."""
    newest = lake.snapshot_id(con)
    snapshot = newest if pinned is None else readable_snapshot(lake, con, pinned)
    if gates is not None:
        _judged(con, snapshot, gates)
    train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
    return TrainingData(snapshot, newest, train, val, table_fingerprint(con, at_version("ml.splits", snapshot)),
                        pinned is not None)


@dataclass
class Trained:
    """Every family's candidate, their MLflow runs, and the best one's registered version."""

    results: list[CandidateResult]
    best: CandidateResult
    runs: dict[str, tuple[str, str]]  # family -> (MLflow run id, model URI)
    version: ModelVersionInfo
    probe_prediction_sha256: str
    code: dict[str, str]  # git commit and dirty flag of the code that trained them
    importance_seconds: dict[str, float] = field(default_factory=dict)  # family -> its global importance's cost

    @property
    def best_run(self) -> tuple[str, str]:
        return self.runs[self.best.family]


def train_and_register(tracker: Tracker, data: TrainingData, *, seed: int, families: list[str] | None,
                       workers: int, splits_data_version: str, dagster_run_id: str,
                       on_progress: Callable[[SearchProgress], None] | None = None,
                       early: EarlyRebuilds | None = None, pool: Callable[[int], Executor] | None = None,
                       importance_songs: int = TrainingSettings.model_fields["importance_songs"].default,
                       budget_s: float | None = None) -> Trained:
    """Every family trained on `data`, tuned on its validation split, each logged as an MLflow run with
    the lineage a rebuild needs; the best registered as a new version of the model, tagged with that
    lineage and its prediction hash on PROBE_ROWS validation rows, and the background its attributions are
    taken against (`model_explanations`: a seeded sample of the training songs); each candidate's run gets its
    global importance per country over `importance_songs` validation songs (`model_importance`). `early`: where
    each heavy family's chosen point starts being refitted for the reproducibility check the moment it is chosen.
    `pool`: what fits the grid points instead of local processes (a Ray cluster's tasks:
    `hit_platform.cluster.training`)."""
    code = code_version()
    lineage = {"lake_snapshot_id": str(data.snapshot), "splits_data_version": splits_data_version,
               "splits_fingerprint": data.splits_fingerprint, "dagster_run_id": dagster_run_id, **code,
               "train_rows": str(len(data.train)), "validation_rows": str(len(data.validation)), "seed": str(seed)}
    if data.pinned:
        lineage["snapshot_pinned"] = "true"
    results = train_candidates(data.train.X, data.train.Y, data.validation.X, data.validation.Y, seed=seed,
                               families=families, workers=workers, on_progress=on_progress,
                               pool=pool, budget_s=budget_s,
                               on_point_known=None if early is None else lambda family, point: early.start(
                                   data.snapshot, data.splits_fingerprint, family, point, seed, code))
    best = select_best(results)
    runs = tracker.log_candidates(results, data.validation.X, data.validation.Y, lineage)
    backgrounds = log_backgrounds(tracker, runs, data.train.X, seed)  # what each one's attributions are against
    _, importance_seconds = log_importances(tracker, runs, {r.family: r.pipeline for r in results}, backgrounds,
                                            data.validation, seed, importance_songs)
    run_id, uri = runs[best.family]
    probe_sha = prediction_hash(best.pipeline, data.validation.X.head(PROBE_ROWS))
    version = tracker.register(uri, run_id, tags={**lineage, "family": best.family, "mlflow_run_id": run_id,
                                                  "probe_prediction_sha256": probe_sha,
                                                  **background_tags(backgrounds[best.family])})
    return Trained(results, best, runs, version, probe_sha, code, importance_seconds)
