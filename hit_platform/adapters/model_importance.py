"""The global importance per country of every candidate, logged with its MLflow run (issue 31).

`train_and_register` calls `log_importances` once the candidates' runs and backgrounds are logged: each
candidate (every family, blend and calibration included) is explained exactly (`domain.explain`) on a
bounded deterministic sample of the validation songs (HIT_TRAIN_IMPORTANCE_SONGS, drawn by the training
seed) against its declared background, and its run gets
  - the artifact `explain/importance.json`: countries, features, `mean_abs_attribution` (72 x 14, each
    row on its country's scale), `scales`, the sampled `song_ids`, seed, background seed and sizes;
  - the figure `plots/importance_by_country.png` (each country's shares, countries grouped by region);
  - what compares across runs in the MLflow UI without 1,008 metrics: the metrics
    `importance_share_<feature>` (14: the feature's share of a country's total |attribution|, averaged
    over countries) and `importance_seconds`, the tags `explain_importance_top_feature` and
    `explain_importance_songs`.

    imp = load_importance(Tracker(settings), "7")      # a registered version of hit_model
    imp.matrix, imp.scales, imp.shares(), imp.top_feature()

Cost: linear in the songs, on one BLAS thread (a second only spins on these small products: it took 10-20x
the CPU). Per candidate, CPU seconds for 32 demo-world validation songs (bench/bench_importance.py,
2026-12-07, load ~30 so wall times meant nothing): prior and linear 0.01, trees 0.17, mlp 0.21, blend 0.30,
blend+platt 0.31, blend+isotonic 3.2 (every country enumerated). The default, 64 songs, costs twice that.

A version registered before importances were logged has none: `load_importance` raises `NoImportance`
saying so and how to get one.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from threadpoolctl import threadpool_limits

from hit_platform.adapters.model_explanations import HOW_TO_GET_ONE, version_run
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import Background, Explainer, Importance, global_importance
from hit_platform.domain.features import FEATURE_COLUMNS

IMPORTANCE_ARTIFACT = "explain/importance.json"
IMPORTANCE_FIGURE = "importance_by_country"  # plots/<name>.png
TOP_TAG, SONGS_TAG = "explain_importance_top_feature", "explain_importance_songs"
SHARE_METRIC = "importance_share_"
MEANING = ("mean over the sampled validation songs of |exact interventional Shapley value| per country and "
           "feature, against the run's declared background (explain/background.json), on each country's scale")


class NoImportance(LookupError):
    """A registered model version has no logged global importance (see the message for how to get one)."""


def log_importance(tracker: Tracker, run_id: str, imp: Importance, seconds: float) -> None:
    """`imp` as the artifact IMPORTANCE_ARTIFACT of run `run_id`, with its figure, share metrics and tags.
    JSON floats are written as Python's repr, so the matrix reads back bit for bit."""
    from hit_platform.adapters.reports import plots

    tracker.client.log_dict(run_id, {
        "meaning": MEANING, "family": imp.family, "countries": list(imp.countries), "features": list(imp.features),
        "mean_abs_attribution": imp.matrix.tolist(), "scales": list(imp.scales), "songs": imp.songs,
        "song_ids": list(imp.song_ids), "sample": "validation", "seed": imp.seed,
        "background_seed": imp.background_seed, "background_size": list(imp.background_size),
        "seconds": seconds, "computed_at": imp.computed_at.isoformat() if imp.computed_at else None},
        IMPORTANCE_ARTIFACT)
    fig = plots.importance_heatmap(imp, f"{imp.family}: global importance per country ({imp.songs} validation songs)")
    try:
        tracker.log_to_run(run_id, {**{f"{SHARE_METRIC}{f}": s for f, s in imp.feature_shares().items()},
                                    "importance_seconds": seconds}, {IMPORTANCE_FIGURE: fig})
    finally:
        plots.close(fig)
    tracker.client.set_tag(run_id, TOP_TAG, imp.top_feature() or "none (the model uses no feature)")
    tracker.client.set_tag(run_id, SONGS_TAG, str(imp.songs))


def log_importances(tracker: Tracker, runs: dict[str, tuple[str, str]], pipelines: dict[str, object],
                    backgrounds: dict[str, Background], validation, seed: int, songs: int
                    ) -> tuple[dict[str, Importance], dict[str, float]]:
    """Each candidate run's global importance ({family: (run id, model uri)}, {family: fitted pipeline},
    {family: declared background}, the validation Dataset): ({family: Importance}, {family: seconds})."""
    out, seconds = {}, {}
    for family, (run_id, _) in runs.items():
        t0 = time.perf_counter()
        # the enumerations' products are small: a second BLAS thread only spins (3x the CPU, and far worse
        # beside the training's other processes); the values are the same up to the sums' rounding
        with threadpool_limits(limits=1, user_api="blas"):
            out[family] = global_importance(Explainer(pipelines[family], backgrounds[family]),
                                            validation.spotify_ids, validation.X, songs, seed)
        seconds[family] = time.perf_counter() - t0
        log_importance(tracker, run_id, out[family], seconds[family])
    return out, seconds


def load_importance(tracker: Tracker, version: str | int) -> Importance:
    """The global importance logged with registered version `version` of the tracker's model.

    NoImportance when its run has none (registered before importances were logged) or cannot be read;
    ModelUnavailable (tracking) when no such version is registered; ValueError when the artifact is
    malformed (named, with what is wrong)."""
    run_id, where = version_run(tracker, version)
    return load_run_importance(tracker, run_id, where)


def load_run_importance(tracker: Tracker, run_id: str, where: str | None = None) -> Importance:
    """The global importance logged with MLflow run `run_id` (any candidate's); errors as `load_importance`'s."""
    where = where or f"MLflow run {run_id} in {tracker.uri}"
    try:
        listed = {a.path for a in tracker.client.list_artifacts(run_id, Path(IMPORTANCE_ARTIFACT).parent.as_posix())}
    except MlflowException as exc:
        raise NoImportance(f"{where}: its run cannot be read ({exc}), so it has no global importance") from exc
    if IMPORTANCE_ARTIFACT not in listed:
        raise NoImportance(f"{where} has no global importance (no {IMPORTANCE_ARTIFACT}: it was registered before "
                           f"importances were logged with every candidate); {HOW_TO_GET_ONE}")
    with tempfile.TemporaryDirectory() as tmp:
        logged = json.loads(Path(tracker.client.download_artifacts(run_id, IMPORTANCE_ARTIFACT, tmp)).read_text())
    return _parsed(logged, f"{where}, artifact {IMPORTANCE_ARTIFACT}")


def _parsed(logged: dict, where: str) -> Importance:
    if not isinstance(logged, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(logged).__name__}")
    for key, expected in (("countries", list(COUNTRIES)), ("features", list(FEATURE_COLUMNS))):
        if logged.get(key) != expected:
            raise ValueError(f"{where}: expected the {key} {expected}, got {logged.get(key)}")
    matrix = np.asarray(logged.get("mean_abs_attribution"), dtype=np.float64)
    shape = (len(COUNTRIES), len(FEATURE_COLUMNS))
    if matrix.shape != shape or not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError(f"{where}: expected mean_abs_attribution a {shape} matrix of finite values >= 0, got "
                         f"shape {matrix.shape}")
    scales = logged.get("scales")
    if not isinstance(scales, list) or len(scales) != len(COUNTRIES):
        raise ValueError(f"{where}: expected one scale per country ({len(COUNTRIES)}), got {scales!r}")
    return Importance(matrix=matrix, scales=tuple(scales), song_ids=tuple(map(str, logged["song_ids"])),
                      seed=int(logged["seed"]), family=str(logged["family"]),
                      background_seed=int(logged["background_seed"]),
                      background_size=tuple(int(s) for s in logged["background_size"]),
                      computed_at=datetime.fromisoformat(logged["computed_at"]) if logged.get("computed_at") else None)
