"""Model families, their hyper-parameter grids, and the search that picks one candidate per family.

    results = train_candidates(train_X, train_Y, val_X, val_Y, seed=0)
    best = select_best(results)

Every family builds ONE scikit-learn Pipeline (input checks, preprocessing,
model) whose predict_proba(DataFrame) returns (n, 72) probabilities in
COUNTRIES order; serving needs nothing else. Each grid point is fitted on the
train split and scored on the validation split; the family keeps the point
with the best validation mean ROC AUC (ties: lower mean log loss).

The `blend` family averages the logits of the chosen `trees` and `mlp`
candidates (reusing them when they are trained in the same call).

Calibration is chosen like a hyper-parameter: once a family's grid point is
chosen, a per-country Platt or isotonic map (`calibration.choose_calibration`,
two-fold cross-fitted on the validation split) is added to its pipeline when it
lowers the validation log loss; `params["calibration"]` says which ("none",
"platt", "isotonic", "per_country": each country its own), and `refit` fits the same map again from the validation split.

A fit depends only on (data, family, grid point, seed): families do not share
random state, so training one family alone (families=["trees"]) rebuilds
exactly the model it builds among all of them, and a family's grid points can
be fitted in parallel processes (`workers`) with the same result.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.domain.models.blend import LogitBlend
from hit_platform.domain.models.calibration import Calibrated, CountryCalibration, choose_calibration
from hit_platform.domain.models.estimators import CompiledLogistic, MultiLabelMLP, PriorRates
from hit_platform.domain.models.frame import FeatureFrame, LogFeatures, feature_matrix, label_matrix
from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.models.trees import CountryTrees


@dataclass(frozen=True)
class Family:
    """A model family: its grid, and how to build its pipeline from a grid point and a seed.

    A family with `members` trains nothing itself: `build(params, seed,
    members)` combines the chosen, fitted pipelines of its member families
    (trained first, or reused when they are candidates of the same call)."""

    name: str
    summary: str
    grid: tuple[dict, ...]
    build: Callable[..., Pipeline] = field(repr=False)
    members: tuple[str, ...] = ()
    # a combining family's grid fitted on validation from its fitted members (the blend's weights): the
    # search takes fit_grid(members, val_X, val_Y)'s points instead of `grid`'s (the blend's: equal weights)
    fit_grid: Callable[..., tuple[dict, ...]] | None = field(default=None, repr=False)
    # its grid points fit in well under the ~2 s a helper process takes to start (spawn, import pandas
    # and sklearn), on the demo's 14k songs too: fitted in the calling process, never in helpers
    light: bool = False


def _prior(params: dict, seed: int) -> Pipeline:
    return Pipeline([("features", FeatureFrame()), ("model", PriorRates())])


def _linear(params: dict, seed: int) -> Pipeline:
    return Pipeline([("features", FeatureFrame()), ("log", LogFeatures()), ("scale", StandardScaler()),
                     ("model", CompiledLogistic(C=params["C"]))])


def _trees(params: dict, seed: int) -> Pipeline:
    # No imputation: the trees learn which side missing values go.
    return Pipeline([("features", FeatureFrame(impute=False)),
                     ("model", CountryTrees(random_state=seed, **params))])


def _mlp(params: dict, seed: int) -> Pipeline:
    return Pipeline([("features", FeatureFrame()), ("log", LogFeatures()), ("scale", StandardScaler()),
                     ("model", MultiLabelMLP(random_state=seed, **params))])


def _blend(params: dict, seed: int, members: dict[str, Pipeline]) -> Pipeline:
    # the members' own logits, before any calibration they chose: the blend chooses its own on top
    w = params["trees_weight"]
    return Pipeline([("model", LogitBlend.of_fitted([("trees", uncalibrated(members["trees"])),
                                                     ("mlp", uncalibrated(members["mlp"]))],
                                                    [w, round(1.0 - w, 10)]))])


# Grids are small on purpose: all families together train in about 1.5 minutes on the demo and 2 cores.
# Values are plain JSON scalars so that params survive MLflow and Dagster metadata unchanged.
LINEAR_GRID = tuple({"C": c} for c in (0.01, 0.1, 1.0))
# Small trees, a high rate: on the demo lake 7-leaf trees at 0.3 matched 15/31-leaf trees at 0.1 in validation
# AUC at a third of the cost. One point: min_samples_leaf 200 beat 40 on the demo world (AUC 0.8110 vs 0.8099)
# and the zoo's, and a one-point grid's reproducibility refit runs beside its fit (`adapters.early_rebuild`).
TREES_GRID = ({"learning_rate": 0.3, "max_leaf_nodes": 7, "min_samples_leaf": 200},)
MLP_GRID = tuple({"hidden": h, "alpha": 30.0, "max_iter": 300} for h in (32, 64))


def _blend_weights(members: dict[str, Pipeline], val_X: pd.DataFrame, val_Y) -> tuple[dict, ...]:
    """The trees' weight in the blend that minimises its validation log loss (the members' own logits),
    to 4 decimals: one point, fitted where a grid of fixed weights only came near it."""
    zt, zm = (uncalibrated(members[m]).decision_function(val_X) for m in ("trees", "mlp"))
    Y = np.asarray(val_Y, dtype=bool)

    def log_loss(w: float) -> float:
        z = w * zt + (1.0 - w) * zm
        return float(np.where(Y, np.logaddexp(0.0, -z), np.logaddexp(0.0, z)).mean())

    best = minimize_scalar(log_loss, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-5})
    return ({"trees_weight": round(float(best.x), 4)},)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("prior", "each country's training base rate (the baseline)", ({},), _prior, light=True),
    Family("linear", "72 L2 logistic regressions on log/standardised features, compiled into one "
                     "14x72 matrix product", LINEAR_GRID, _linear, light=True),
    Family("trees", "one gradient-boosted tree model over song x country rows (country and region "
                    "categorical), early-stopped on held-out train songs, compiled to bitmask tables",
           TREES_GRID, _trees),
    Family("mlp", "one tanh hidden layer shared by 72 logistic outputs, full-batch L-BFGS", MLP_GRID, _mlp),
    Family("blend", "weighted mean of the logits of the chosen trees and mlp candidates, the weight fitted on "
                    "validation", ({"trees_weight": 0.5},), _blend, members=("trees", "mlp"),
           fit_grid=_blend_weights),
)}


@dataclass
class CandidateResult:
    """The chosen candidate of one family.

    params: the chosen grid point, plus what the fit chose itself (n_iter for
    early-stopped / iterative models). search: one entry per grid point with
    its params, val_mean_roc_auc, val_mean_log_loss and fit_seconds.
    fit_seconds: wall time of the whole family (every grid point, and for a
    blend its members' fit_seconds too: the cost of building it from scratch)."""

    family: str
    params: dict
    pipeline: Pipeline
    val_metrics: dict
    train_metrics: dict
    search: list[dict]
    fit_seconds: float
    calibration_log_loss: dict[str, float] = field(default_factory=dict)  # cross-fitted, per method


TRAINING_LOG_PREFIX = "training: "  # how the training asset's progress lines begin (the CLI shows them)


@dataclass(frozen=True)
class SearchProgress:
    """How far a search is: grid points fitted of this family and of all, and the seconds so far."""

    family: str
    family_done: int
    family_points: int
    done: int
    points: int
    seconds: float

    def __str__(self) -> str:
        text = (f"{self.family} {self.family_done}/{self.family_points} grid points, {self.done}/{self.points} in "
                f"all, {self.seconds:.0f} s")
        if 0 < self.done < self.points:  # the points left, at the pace so far (families differ: "about")
            text += f", about {self.seconds / self.done * (self.points - self.done):.0f} s left"
        return text


def train_candidates(train_X: pd.DataFrame, train_Y, val_X: pd.DataFrame, val_Y, seed: int = 0,
                     families: Sequence[str] | None = None, workers: int = 1,
                     on_progress: Callable[[SearchProgress], None] | None = None,
                     on_point_known: Callable[[str, dict], None] | None = None,
                     pool: Callable[[int], Executor] | None = None) -> list[CandidateResult]:
    """Fit every grid point of each family on train, choose on validation; one result per family.

    families: names from FAMILIES (None = all, in FAMILIES order).
    workers: processes fitting a family's grid points side by side (1 = in this process; light
    families are always fitted here). The models are the same either way: each point is fitted from
    its own seed.
    on_progress: called after each grid point is fitted and scored.
    on_point_known: called with a family's name and grid point as soon as that point is known to be the
    chosen one: before its search when its grid has one point, else once its grid is scored.
    pool: makes the executor for the helpers from `workers` (default: local spawned processes; a Ray
    cluster's tasks: `cluster.training.RayTaskPool`)."""
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise ValueError(f"train_candidates: unknown families {unknown or names}; choose from {list(FAMILIES)}")
    n_train, n_val = len(feature_matrix(train_X)), len(feature_matrix(val_X))  # column checks up front
    train_Y = label_matrix(train_Y, n_train, where="train_Y")
    val_Y = label_matrix(val_Y, n_val, where="val_Y")

    done: dict[str, CandidateResult] = {}
    helpers = _Helpers(workers, pool)
    order = _with_members(names)
    tick = _Ticker(sum(len(FAMILIES[n].grid) for n in order), on_progress)
    try:
        for name in order:
            family = FAMILIES[name]
            known = len(family.grid) == 1 and family.fit_grid is None
            if on_point_known is not None and known:
                on_point_known(name, dict(family.grid[0]))
            done[name] = _search(family, done, train_X, train_Y, val_X, val_Y, seed, helpers, tick)
            if on_point_known is not None and not known:
                on_point_known(name, grid_point(done[name].params))
    finally:
        helpers.shutdown()
    return [done[name] for name in names]


class _Ticker:
    """Counts the grid points fitted and tells `on_progress`."""

    def __init__(self, points: int, on_progress: Callable[[SearchProgress], None] | None):
        self.points, self.on_progress = points, on_progress
        self.done, self.started = 0, time.perf_counter()

    def __call__(self, family: Family, family_done: int) -> None:
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(SearchProgress(family.name, family_done, len(family.grid), self.done, self.points,
                                            time.perf_counter() - self.started))


class _Helpers:
    """Processes that fit a family's grid points side by side, started at the first family whose
    points are worth it (not `light`): a training of light families alone never starts them."""

    def __init__(self, count: int, make: Callable[[int], Executor] | None = None):
        self.count, self.make, self.pool = count, make, None

    def take(self, family: Family) -> bool:  # one point: fitted here, unless the caller's pool (a cluster) takes it
        return self.count > 1 and not family.light and (len(family.grid) > 1 or self.make is not None)

    def executor(self) -> Executor:
        if self.pool is None and self.make is not None:  # the caller's: a Ray cluster's tasks, say
            self.pool = self.make(self.count)
        if self.pool is None:  # spawn: the caller may hold threads (Dagster, DuckDB) that fork would copy mid-state
            self.pool = ProcessPoolExecutor(max_workers=self.count, mp_context=multiprocessing.get_context("spawn"))
        return self.pool

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _fit_point(family: str, point: dict, seed: int, train_X: pd.DataFrame, train_Y) -> tuple[Pipeline, float]:
    t = time.perf_counter()
    pipeline = FAMILIES[family].build(dict(point), seed).fit(train_X, train_Y)
    return pipeline, time.perf_counter() - t


def _with_members(names: list[str]) -> list[str]:
    """The requested families and the members they combine, members first, each once."""
    order: list[str] = []
    for name in names:
        for needed in (*FAMILIES[name].members, name):
            if needed not in order:
                order.append(needed)
    return order


def _search(family: Family, done: dict[str, CandidateResult], train_X, train_Y, val_X, val_Y,
            seed: int, helpers: _Helpers, tick: _Ticker) -> CandidateResult:
    """Fit (or combine) every grid point, score it on validation, keep the best."""
    started = time.perf_counter()
    members = {m: done[m].pipeline for m in family.members}
    grid = family.fit_grid(members, val_X, val_Y) if family.fit_grid is not None else family.grid
    if family.members:
        fitted = []
        for point in grid:
            t = time.perf_counter()
            fitted.append((family.build(dict(point), seed, members), time.perf_counter() - t))
    elif helpers.take(family):
        fitted = helpers.executor().map(  # lazily, in order: each point is told as it comes
            _fit_point, *zip(*[(family.name, p, seed, train_X, train_Y) for p in family.grid]))
    else:
        fitted = (_fit_point(family.name, p, seed, train_X, train_Y) for p in family.grid)
    search, best, best_key = [], None, None
    for i, (point, (pipeline, seconds)) in enumerate(zip(grid, fitted), start=1):
        m = evaluate(val_Y, pipeline.predict_proba(val_X))
        tick(family, i)
        params = {**point, **fitted_params(pipeline)}
        search.append({**params, "val_mean_roc_auc": m["mean_roc_auc"],
                       "val_mean_log_loss": m["mean_log_loss"], "fit_seconds": round(seconds, 3)})
        key = _rank_key(m)
        if best_key is None or key < best_key:
            best, best_key = (params, pipeline, m), key
    params, pipeline, val_metrics = best
    P_val = pipeline.predict_proba(val_X)
    choice = choose_calibration(P_val, val_Y, seed)
    params["calibration"] = choice.method
    if choice.method != "none":
        pipeline = with_calibration(pipeline, choice.calibration)
        val_metrics = evaluate(val_Y, choice.calibration.transform(P_val))
    for member in family.members:  # what the blend is made of, flat (member.param)
        params.update({f"{member}.{k}": v for k, v in done[member].params.items()})
    train_metrics = evaluate(train_Y, pipeline.predict_proba(train_X))
    # The cost of this candidate from scratch: its own search plus its members'.
    seconds = time.perf_counter() - started + sum(done[m].fit_seconds for m in family.members)
    return CandidateResult(family=family.name, params=params, pipeline=pipeline, val_metrics=val_metrics,
                           train_metrics=train_metrics, search=search, fit_seconds=seconds,
                           calibration_log_loss=choice.val_log_loss)


def uncalibrated(pipeline: Pipeline) -> Pipeline:
    """A fitted pipeline without the calibration `with_calibration` put after it (itself when it has none)."""
    last = pipeline[-1]
    return last.model if isinstance(last, Calibrated) else pipeline


def with_calibration(pipeline: Pipeline, calibration: CountryCalibration) -> Pipeline:
    """A fitted pipeline followed by its fitted per-country calibration."""
    return Pipeline([("model", Calibrated(pipeline, calibration))])


def member_params(family: str, params: dict) -> dict[str, dict]:
    """The parameters of each member a combining family's `params` hold (as `member.param`)."""
    return {m: {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(m + ".")}
            for m in FAMILIES[family].members}


def refit(family: str, params: dict, train_X: pd.DataFrame, train_Y, seed: int = 0,
          val_X: pd.DataFrame | None = None, val_Y=None, workers: int = 1,
          ready: Mapping[str, Pipeline] | None = None) -> Pipeline:
    """The chosen grid point of `family` fitted again, with no search: `params` as a CandidateResult
    holds them (what the fit chose itself, like n_iter, is chosen again; a blend's members come
    from their `member.param` entries; a calibration is fitted again on val_X, val_Y). The
    reproducibility check rebuilds the model this way. `workers` > 1: a blend's heavy members are
    refitted side by side in processes (each from its own seed: the same bytes either way).
    `ready`: grid points (`grid_point`) of it or its members fitted so elsewhere, uncalibrated: taken as fitted."""
    ready = ready or {}
    fam = FAMILIES[family]
    own = grid_point(params)
    if family in ready:
        pipeline = ready[family]
    elif fam.members:
        of = member_params(family, params)
        todo = [m for m in fam.members if m not in ready]
        heavy = [m for m in todo if not FAMILIES[m].light] if workers > 1 else []
        spawn = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(heavy)), mp_context=spawn) if len(heavy) > 1 else None
        try:
            away = {m: pool.submit(refit, m, of[m], train_X, train_Y, seed, val_X, val_Y) for m in heavy} if pool \
                else {}
            here = {m: refit(m, of[m], train_X, train_Y, seed, val_X, val_Y) for m in todo if m not in away}
            members = {m: refit(m, of[m], train_X, train_Y, seed, val_X, val_Y, ready=ready) if m in ready
                       else away[m].result() if m in away else here[m] for m in fam.members}
        finally:
            if pool is not None:
                pool.shutdown()
        pipeline = fam.build(own, seed, members)
    else:
        train_Y = label_matrix(train_Y, len(feature_matrix(train_X)), where="train_Y")
        pipeline = fam.build(own, seed).fit(train_X, train_Y)
    method = params.get("calibration", "none")
    if method == "none":
        return pipeline
    if val_X is None or val_Y is None:
        raise ValueError(f"refit {family}: its calibration ({method}) is fitted on the validation split; "
                         "pass val_X and val_Y")
    val_Y = label_matrix(val_Y, len(feature_matrix(val_X)), where="val_Y")
    return with_calibration(pipeline, CountryCalibration(method).fit(pipeline.predict_proba(val_X), val_Y))


FITTED_PARAMS = ("n_iter",)


def grid_point(params: dict) -> dict:
    """The grid point of a family's chosen `params`: without n_iter, calibration and member entries."""
    return {k: v for k, v in params.items() if "." not in k and k not in FITTED_PARAMS and k != "calibration"}


def fitted_params(pipeline: Pipeline) -> dict:
    """What the fit chose by itself (boosting rounds kept by early stopping, optimiser iterations)."""
    n_iter = getattr(uncalibrated(pipeline)[-1], "n_iter_", None)  # the model's, under any calibration
    return {} if n_iter is None else {"n_iter": int(n_iter)}


def _rank_key(m: dict) -> tuple[float, float]:
    """Smaller is better: highest mean ROC AUC, then lowest mean log loss; NaN ranks last."""
    auc, loss = m["mean_roc_auc"], m["mean_log_loss"]
    return (-auc if np.isfinite(auc) else np.inf, loss if np.isfinite(loss) else np.inf)


def select_best(results: Sequence[CandidateResult]) -> CandidateResult:
    """The candidate with the highest validation mean ROC AUC (ties: lower validation mean log loss;
    then the earlier family)."""
    if not results:
        raise ValueError("select_best: no candidates")
    return min(results, key=lambda r: _rank_key(r.val_metrics))
