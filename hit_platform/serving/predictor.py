"""The served model: a champion pipeline, its lineage, and the fastest way to call it.

The contract (see `hit_platform.domain.features`): `pipeline.predict_proba(X)` with
the 14 FEATURE_COLUMNS (float64, is_explicit 0/1) returns (n, 72)
probabilities in COUNTRIES order, all countries in one call. Building a pandas
DataFrame per call costs about as much as the model itself; so at load time we
check once whether the pipeline gives the very same answer on the plain float
matrix (our own pipelines: their FeatureFrame step applied to the matrix
directly, 60-85 us less per call), and then feed it matrices.
"""

from __future__ import annotations

import logging
import operator
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS, feature_range
from hit_platform.domain.models.frame import FeatureFrame
from hit_platform.adapters.tracking import ModelUnavailable, ModelVersionInfo, Tracker

log = logging.getLogger(__name__)

N_FEATURES = len(FEATURE_COLUMNS)
N_COUNTRIES = len(COUNTRIES)
_FEATURE_NAMES_WARNING = "X does not have valid feature names"

# Reads the 14 model inputs off a validated song (a dict) in FEATURE_COLUMNS order (bool -> 1.0/0.0).
feature_getter = operator.itemgetter(*FEATURE_COLUMNS)


class ModelContractError(ModelUnavailable):
    """A registered model does not honour the serving contract (shape, range)."""


def features_of(songs: list[dict]) -> np.ndarray:
    """(n, 14) float64 feature matrix of validated songs, in FEATURE_COLUMNS order."""
    return np.array([feature_getter(s) for s in songs], dtype=np.float64).reshape(len(songs), N_FEATURES)


def probe_rows(n: int = 16, seed: int = 0) -> np.ndarray:
    """Valid feature rows spanning every column's range (integers where the dump has integers)."""
    rng = np.random.default_rng(seed)
    cols = []
    for c in FEATURE_COLUMNS:
        lo, hi = feature_range(c)
        lo, hi = (0.0 if lo is None else lo), (1.0 if hi is None else hi)
        v = lo + (hi - lo) * rng.random(n)
        if c in ("key", "mode", "time_signature", "duration_ms", "is_explicit"):
            v = np.round(v)
        cols.append(v)
    return np.column_stack(cols).astype(np.float64)


# What a pipeline that reads columns by name raises when handed a plain array: sklearn's
# ColumnTransformer (ValueError), X["col"] (IndexError), X.loc (AttributeError), or an answer of
# another shape (ModelContractError). Anything else (out of memory, a broken model) is not a
# reason to quietly switch inputs: it raises.
_NEEDS_A_DATAFRAME = (ValueError, TypeError, LookupError, AttributeError, ModelContractError)


@dataclass
class Predictor:
    """One loaded model version, ready to predict (n, 14) -> (n, 72)."""

    pipeline: object
    info: ModelVersionInfo
    lineage: dict
    array_input: bool = False
    loaded_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    _after_frame: object = field(default=None, repr=False)  # the pipeline after its FeatureFrame step

    @property
    def version(self) -> str:
        return str(self.info.version)

    def _call(self, X: np.ndarray, as_array: bool) -> np.ndarray:
        if as_array and self._after_frame is not None:  # the FeatureFrame step on the matrix itself
            P = self._after_frame.predict_proba(self.pipeline.steps[0][1].transform_matrix(X))
        else:
            P = self.pipeline.predict_proba(X if as_array else pd.DataFrame(X, columns=list(FEATURE_COLUMNS)))
        P = np.asarray(P, dtype=np.float64)
        if P.shape != (len(X), N_COUNTRIES):
            raise ModelContractError(
                f"model version {self.version} answered shape {P.shape} for {len(X)} songs; "
                f"the contract is ({len(X)}, {N_COUNTRIES}) in COUNTRIES order")
        if not np.isfinite(P).all():
            raise ModelContractError(f"model version {self.version} answered non-finite probabilities")
        return P

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 72) probabilities of the (n, 14) feature matrix X, in one predict_proba call."""
        return self._call(X, self.array_input)

    def check(self) -> None:
        """Verify the contract on probe rows and choose array input when it gives identical answers."""
        X = probe_rows()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            P = self._call(X, as_array=False)
            if not np.all(np.isfinite(P)) or P.min() < 0 or P.max() > 1:
                raise ModelContractError(f"model version {self.version} returns values outside [0, 1]")
            steps = getattr(self.pipeline, "steps", None)
            if steps and len(steps) > 1 and isinstance(steps[0][1], FeatureFrame):
                self._after_frame = self.pipeline[1:]  # our own pipelines: the frame step takes the matrix
            try:
                same = np.array_equal(self._call(X, as_array=True), P)
            except _NEEDS_A_DATAFRAME as exc:  # a pipeline that selects columns by name needs the DataFrame
                log.info("model version %s takes DataFrames only (on an array: %s: %s)", self.version,
                         type(exc).__name__, exc)
                same = False
        self.array_input = same
        if same:
            # sklearn warns on every array call to a pipeline fitted on a DataFrame; the check above
            # proved the answers identical, so the warning is noise (and costs time per request).
            warnings.filterwarnings("ignore", message=_FEATURE_NAMES_WARNING, category=UserWarning)


def lineage_of(tracker: Tracker, info: ModelVersionInfo) -> dict:
    """Where a model version came from: its tags and its MLflow run."""
    tags = {k: str(v) for k, v in (info.tags or {}).items()}
    trained_at = None  # unknown when the run is gone
    try:
        run = tracker.client.get_run(info.run_id)
    except MlflowException as exc:
        if str(getattr(exc, "error_code", "")) != "RESOURCE_DOES_NOT_EXIST":
            raise
        # the run is gone from a pruned store; the version's own tags remain
        log.warning("model version %s: its MLflow run %s is gone from %s; lineage from the version's tags only",
                    info.version, info.run_id, tracker.uri)
    else:
        trained_at = datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).isoformat()
        tags = {**{k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}, **tags}
    return {
        "name": info.name, "version": str(info.version), "source": info.source,
        "mlflow_run_id": info.run_id, "mlflow_tracking_uri": tracker.uri,
        "lake_snapshot_id": tags.get("lake_snapshot_id"),
        "code_version": {"git_commit": tags.get("git_commit"), "git_dirty": tags.get("git_dirty")},
        "trained_at": trained_at, "dagster_run_id": tags.get("dagster_run_id"), "family": tags.get("family"),
        "tags": tags,
    }


def version_info(tracker: Tracker, version: str) -> ModelVersionInfo:
    """A registered version's record (ModelUnavailable naming the model and the store if there is none)."""
    try:
        mv = tracker.client.get_model_version(tracker.model_name, str(version))
    except MlflowException as exc:
        what = "no" if str(getattr(exc, "error_code", "")) == "RESOURCE_DOES_NOT_EXIST" else "cannot read"
        raise ModelUnavailable(f"{what} version {version} of {tracker.model_name!r} in {tracker.uri}: "
                               f"{exc}") from exc
    return ModelVersionInfo(tracker.model_name, mv.version, mv.run_id, dict(mv.tags), mv.source)


def load_predictor(tracker: Tracker, version: str | None = None) -> Predictor:
    """The champion (or one given version), checked against the contract.

    Raises ChampionUnavailable / ModelUnavailable with a message naming the model and the store.
    """
    if version is None:
        pipeline, info = tracker.load_champion()
    else:
        info = version_info(tracker, version)
        pipeline = tracker.load_version(str(version))
    predictor = Predictor(pipeline, info, lineage_of(tracker, info))
    predictor.check()
    return predictor


def top_k(P: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k largest probabilities, largest first; ties in
    COUNTRIES order (the order of a stable sort)."""
    k = min(k, P.shape[1])
    if k <= 8:  # k passes of argmax (first maximum wins): 10,000 x 72 with k=5 in ~3 ms, a sort takes ~20
        Q, rows = P.copy(), np.arange(P.shape[0])
        idx = np.empty((P.shape[0], k), dtype=np.intp)
        for i in range(k):
            idx[:, i] = Q.argmax(axis=1)
            Q[rows, idx[:, i]] = -np.inf
    else:
        idx = np.argsort(-P, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(P, idx, axis=1)
