"""Model families, their hyper-parameter grids, and the search that picks one candidate per family.

    results = train_candidates(train_X, train_Y, val_X, val_Y, seed=0)
    best = select_best(results)

Every family builds ONE scikit-learn Pipeline (input checks, preprocessing, a `screen.FeatureScreen` when
its point says `screen`, model) whose predict_proba(DataFrame) returns (n, 72) probabilities in COUNTRIES
order; serving needs nothing else. Grid points are scored on the validation split (mean ROC AUC, ties: lower
mean log loss). A heavy family's grid is searched by successive halving under `budget_s` (`search.py`: rungs
on seeded shares of the train songs); its chosen point, like every light family's, is fitted on the whole
train split.

The `blend` family averages the logits of the chosen `trees` and `mlp`
candidates (reusing them when they are trained in the same call).

Calibration is chosen like a hyper-parameter: once a family's grid point is chosen, a calibration map
(`calibration.choose_calibration`, two-fold cross-fitted on the validation split) is added to its pipeline
when it lowers the validation log loss; `params["calibration"]` says which ("none", "platt", "isotonic",
"per_country", ...), and `refit` fits the same map again from the validation split.

A fit depends only on (data, family, grid point, seed): families do not share random state, so training one
family alone (families=["trees"]) rebuilds exactly the model it builds among all of them, and a family's
grid points can be fitted in parallel processes (`workers`) with the same result.
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

from hit_platform.domain.models import search
from hit_platform.domain.models.blend import LogitBlend
from hit_platform.domain.models.calibration import Calibrated, CountryCalibration, choose_calibration
from hit_platform.domain.models.estimators import CompiledLogistic, MultiLabelMLP, PriorRates
from hit_platform.domain.models.frame import FeatureFrame, LogFeatures, feature_matrix, label_matrix
from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.models.screen import screen_step
from hit_platform.domain.models.search import fitted_params, grid_point, rank_key, uncalibrated
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
    screen, params = screen_step(params)
    return Pipeline([("features", FeatureFrame()), ("log", LogFeatures()), ("scale", StandardScaler()), *screen,
                     ("model", CompiledLogistic(C=params["C"]))])


def _trees(params: dict, seed: int) -> Pipeline:
    screen, params = screen_step(params)  # on raw features (no imputation: the trees learn where missing goes)
    return Pipeline([("features", FeatureFrame(impute=False)), *screen,
                     ("model", CountryTrees(random_state=seed, **params))])


def _mlp(params: dict, seed: int) -> Pipeline:
    screen, params = screen_step(params)
    return Pipeline([("features", FeatureFrame()), ("log", LogFeatures()), ("scale", StandardScaler()), *screen,
                     ("model", MultiLabelMLP(random_state=seed, **params))])


def _blend(params: dict, seed: int, members: dict[str, Pipeline]) -> Pipeline:
    # the members' own logits, before any calibration they chose: the blend chooses its own on top
    w = params["trees_weight"]
    return Pipeline([("model", LogitBlend.of_fitted([("trees", uncalibrated(members["trees"])),
                                                     ("mlp", uncalibrated(members["mlp"]))],
                                                    [w, round(1.0 - w, 10)]))])


# Plain JSON scalar values (params survive MLflow and Dagster metadata). Heavy grids are searched by successive halving
# under the budget (`search.py`) in this order; a small budget fits the first points (14k songs, 60 s: two), so each of
# the first two is followed by its FeatureScreen twin. Deeper trees, an MLP pooled by region, a bag last (issue 30).
LINEAR_GRID = tuple({"C": c} for c in (0.01, 0.1, 1.0))
_TREES = [{"learning_rate": lr, "max_leaf_nodes": leaves, "min_samples_leaf": leaf, "l2_regularization": l2}
          for lr, leaves, leaf, l2 in ((0.3, 7, 200, 0.0), (0.1, 31, 20, 3.0), (0.1, 31, 50, 1.0), (0.1, 15, 40, 1.0),
                                       (0.2, 15, 100, 1.0), (0.1, 63, 20, 3.0))]
_MLP = [{"hidden": h, "alpha": a, "max_iter": 300, **({"pool": p} if p else {}), **({"bag": b} if b > 1 else {})}
        for h, a, p, b in ((64, 30.0, 3.0, 1), (128, 30.0, 3.0, 1), (64, 30.0, 0, 1), (128, 30.0, 0, 1),
                           (128, 30.0, 1.5, 1), (32, 30.0, 3.0, 1), (128, 10.0, 0, 1), (128, 60.0, 3.0, 1),
                           (32, 30.0, 0, 1), (128, 30.0, 3.0, 3))]
TREES_GRID, MLP_GRID = ((g[0], {**g[0], "screen": 2.0}, g[1], {**g[1], "screen": 2.0}, *g[2:]) for g in [_TREES, _MLP])


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
    Family("mlp", "one tanh hidden layer, 72 logistic outputs pooled toward their region's, L-BFGS", MLP_GRID, _mlp),
    Family("blend", "weighted mean of the logits of the chosen trees and mlp candidates, the weight fitted on "
                    "validation", ({"trees_weight": 0.5},), _blend, members=("trees", "mlp"), fit_grid=_blend_weights),
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
    skipped: list[dict] = field(default_factory=list)  # points the budget did not start (search.halving)


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
                     pool: Callable[[int], Executor] | None = None,
                     budget_s: float | None = None) -> list[CandidateResult]:
    """Fit every grid point of each family on train, choose on validation; one result per family.

    families: names from FAMILIES (None = all, in FAMILIES order).
    workers: processes fitting a family's grid points side by side (1 = in this process; light
    families are always fitted here). The models are the same either way: each point is fitted from
    its own seed.
    on_progress: called after each grid point is fitted and scored.
    on_point_known: called with a family's name and grid point as soon as that point is known to be the
    chosen one: before its search when its grid has one point, else once its grid is scored.
    pool: makes the executor for the helpers from `workers` (default: local spawned processes; a Ray
    cluster's tasks: `cluster.training.RayTaskPool`).
    budget_s: the search's seconds (None = no limit): a heavy family's points whose projected seconds would
    pass it are not started (`search.halving`; they are in its result's `skipped`)."""
    budget_s = search.check_budget(budget_s)
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
    tick = search.Ticker({n: search.planned_points(FAMILIES[n]) for n in order}, on_progress)
    budget = search.Budget(budget_s, sum(1 for n in order if _halved(FAMILIES[n])))
    try:
        for name in order:
            family = FAMILIES[name]
            known = len(family.grid) == 1 and family.fit_grid is None
            if on_point_known is not None and known:
                on_point_known(name, dict(family.grid[0]))
            done[name] = _search(family, done, train_X, train_Y, val_X, val_Y, seed, helpers, tick, budget,
                                 on_point_known)
            if on_point_known is not None and not known and not _halved(family):
                on_point_known(name, grid_point(done[name].params))
    finally:
        helpers.shutdown()
    return [done[name] for name in names]


class _Helpers:
    """Processes that fit a family's grid points side by side, started at the first family whose
    points are worth it (not `light`): a training of light families alone never starts them."""

    def __init__(self, count: int, make: Callable[[int], Executor] | None = None):
        self.count, self.make, self.pool = count, make, None

    def take(self, family: Family, points: int) -> bool:  # one point: here, unless the caller's pool (a cluster)
        return self.count > 1 and not family.light and (points > 1 or self.make is not None)

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


def _halved(family: Family) -> bool:
    """Searched by successive halving under the budget: a heavy family with more than one point."""
    return not family.light and not family.members and len(family.grid) > 1


def _search(family: Family, done: dict[str, CandidateResult], train_X, train_Y, val_X, val_Y, seed: int,
            helpers: _Helpers, tick: search.Ticker, budget: search.Budget, on_point_known) -> CandidateResult:
    """Fit (or combine) the grid points, score them on validation, keep the best (`search.halving` for a
    heavy family's grid)."""
    started = time.perf_counter()
    members = {m: done[m].pipeline for m in family.members}
    grid = family.fit_grid(members, val_X, val_Y) if family.fit_grid is not None else family.grid
    skipped: list[dict] = []
    if _halved(family):
        def fit_wave(points, X, Y):
            if helpers.take(family, len(points)):
                return list(helpers.executor().map(_fit_point, *zip(*[(family.name, p, seed, X, Y) for p in points])))
            return [_fit_point(family.name, p, seed, X, Y) for p in points]

        pipeline, params, val_metrics, rows, skipped = search.halving(
            family, grid, seed, train_X, train_Y, val_X, val_Y, fit_wave, tick, budget, helpers.count,
            on_final=None if on_point_known is None else lambda point: on_point_known(family.name, dict(point)))
        budget.heavy_left -= 1
        return _finish(family, done, params, pipeline, val_metrics, rows, started, train_X, train_Y, val_X,
                       val_Y, seed, skipped)
    if family.members:
        fitted = []
        for point in grid:
            t = time.perf_counter()
            fitted.append((family.build(dict(point), seed, members), time.perf_counter() - t))
    elif helpers.take(family, len(family.grid)):
        fitted = helpers.executor().map(  # lazily, in order: each point is told as it comes
            _fit_point, *zip(*[(family.name, p, seed, train_X, train_Y) for p in family.grid]))
    else:
        fitted = (_fit_point(family.name, p, seed, train_X, train_Y) for p in family.grid)
    rows, best, best_key = [], None, None
    for point, (pipeline, seconds) in zip(grid, fitted):
        m = evaluate(val_Y, pipeline.predict_proba(val_X))
        tick(family)
        params = {**point, **fitted_params(pipeline)}
        rows.append({**params, "val_mean_roc_auc": m["mean_roc_auc"],
                     "val_mean_log_loss": m["mean_log_loss"], "fit_seconds": round(seconds, 3)})
        key = search.point_key(point, m)
        if best_key is None or key < best_key:
            best, best_key = (params, pipeline, m), key
    params, pipeline, val_metrics = best
    return _finish(family, done, params, pipeline, val_metrics, rows, started, train_X, train_Y, val_X, val_Y,
                   seed, skipped)


def _finish(family: Family, done, params, pipeline, val_metrics, rows, started, train_X, train_Y, val_X, val_Y,
            seed, skipped) -> CandidateResult:
    """The chosen point's calibration (chosen on validation), its members' params and its metrics."""
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
                           train_metrics=train_metrics, search=rows, fit_seconds=seconds,
                           calibration_log_loss=choice.val_log_loss, skipped=skipped)


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


def select_best(results: Sequence[CandidateResult]) -> CandidateResult:
    """The candidate with the highest validation mean ROC AUC (ties: lower validation mean log loss;
    then the earlier family)."""
    if not results:
        raise ValueError("select_best: no candidates")
    return min(results, key=lambda r: rank_key(r.val_metrics))
