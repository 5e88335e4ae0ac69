"""The search inside one family: successive halving over its grid, under a time budget (issue 30).

A heavy family's grid (the trees', the MLP's) is searched in rungs: the first rung fits every grid point
on a seeded quarter of the train songs (an eighth on large splits), the best third (validation mean ROC AUC, ties log loss) go on to
twice as many, and so on until one point is left: the finalist, always fitted on ALL the train songs with
its own seed. The chosen model is therefore exactly `FAMILIES[name].build(point, seed).fit(train)`, what
`refit` rebuilds. A light family's few points (the linear model's) are each fitted on all songs, as a
one-point grid is.

The budget (`budget_s`, the whole `train_candidates` call's seconds; None = no limit) is shared by the
heavy families still to search, in equal parts of what is left. Within its part, a family starts a wave
of points (as many as there are workers) only when the seconds so far plus the wave's projected seconds
(each point's measured seconds on its previous rung, or the rung's slowest so far, scaled by the songs)
plus the finalist's projected seconds stay within it; the first wave and the finalist always run, so
every family returns a model. What was not started is recorded (`skipped`: point, rung, songs, the
projected seconds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.pipeline import Pipeline

from hit_platform.domain.models.calibration import Calibrated
from hit_platform.domain.models.metrics import evaluate

# The first rung's share of the train songs, each later rung doubling it: a quarter, down to an eighth
# on large splits, so long as it holds FIRST_SONGS (the demo's 14k train songs: an eighth, 1,750 songs).
FIRST_SHARE, FIRST_SHARE_MIN, FIRST_SONGS = 0.25, 0.125, 1500
KEEP = 3  # each rung keeps the best third of the points it fitted


def rungs(points: int) -> list[int]:
    """How many points each rung fits, the finalist's rung (1 point, all songs) last: 9 -> [9, 3, 1]."""
    sizes = [points]
    while sizes[-1] > 1:
        sizes.append(math.ceil(sizes[-1] / KEEP))
    return sizes


def share_of(rung: int, n_rungs: int, n: int) -> float:
    """The share of the n train songs rung `rung` of `n_rungs` fits on (the last: all of them)."""
    first = min(FIRST_SHARE, max(FIRST_SHARE_MIN, FIRST_SONGS / max(n, 1)))
    return 1.0 if rung == n_rungs - 1 else min(1.0, first * 2 ** rung)


def check_budget(budget_s) -> float | None:
    """The budget as seconds (None = no limit); anything else is refused, saying what was given."""
    if budget_s is None:
        return None
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not math.isfinite(budget_s) \
            or budget_s <= 0:
        raise ValueError(f"train_candidates: budget_s must be a positive number of seconds or None (no limit), "
                         f"got {budget_s!r}")
    return float(budget_s)


@dataclass
class Budget:
    """The whole search's seconds, and the heavy families still to search (they share what is left)."""

    seconds: float | None
    heavy_left: int
    started: float = field(default_factory=time.perf_counter)

    def share(self) -> float:
        """This heavy family's part: an equal part of what is left (inf without a budget)."""
        if self.seconds is None:
            return math.inf
        left = self.seconds - (time.perf_counter() - self.started)
        return max(0.0, left) / max(1, self.heavy_left)


def subset(n: int, share: float, seed: int, rung: int) -> np.ndarray:
    """Sorted row positions of a seeded share of n songs (all of them at share 1)."""
    if share >= 1.0:
        return np.arange(n)
    m = max(2, round(share * n))
    return np.sort(np.random.default_rng([seed, rung, n]).permutation(n)[:m])


def halving(family, grid, seed: int, train_X, train_Y, val_X, val_Y, fit_wave: Callable, tick: Ticker,
            budget: Budget, workers: int, on_final: Callable[[dict], None] | None = None):
    """Successive halving over `grid`: (pipeline, params of the finalist, its validation metrics, search rows,
    skipped rows). fit_wave(points, X, Y) -> [(pipeline, seconds)], in order."""
    share_s, started = budget.share(), time.perf_counter()
    sizes = rungs(len(grid))
    n = len(train_X)
    search, skipped = [], []
    alive = [(dict(p), None) for p in grid]  # (point, its seconds on the previous rung)
    final_guess = 0.0  # projected seconds of the finalist on all songs
    for r in range(len(sizes)):
        share = share_of(r, len(sizes), n)
        if r == len(sizes) - 1 or len(alive) == 1:  # the finalist: always fitted, on all songs
            point = alive[0][0]
            if on_final is not None:
                on_final(point)
            [(pipeline, seconds)] = fit_wave([point], train_X, train_Y)
            m = evaluate(val_Y, pipeline.predict_proba(val_X))
            tick(family)
            params = {**point, **fitted_params(pipeline)}
            search.append(_row(params, r, n, m, seconds))
            return pipeline, params, m, search, skipped
        rows = subset(n, share, seed, r)
        X, Y = train_X.iloc[rows].reset_index(drop=True), train_Y[rows]
        scale = share / share_of(r - 1, len(sizes), n) if r > 0 else 1.0
        scored, slowest = [], 0.0
        for start in range(0, len(alive), workers):
            wave = alive[start:start + workers]
            guesses = [s * scale if s is not None else slowest for _, s in wave]
            if start > 0 and time.perf_counter() - started + max(guesses) + final_guess > share_s:
                for point, s in alive[start:]:
                    skipped.append({**point, "rung": r, "songs": len(rows),
                                    "projected_seconds": round(s * scale if s is not None else slowest, 3)})
                break
            for point, (pipeline, seconds) in zip([p for p, _ in wave], fit_wave([p for p, _ in wave], X, Y)):
                m = evaluate(val_Y, pipeline.predict_proba(val_X))
                tick(family)
                search.append(_row({**point, **fitted_params(pipeline)}, r, len(rows), m, seconds))
                scored.append((point_key(point, m), len(scored), point, seconds))
                slowest = max(slowest, seconds)
            final_guess = slowest / share
        scored.sort(key=lambda s: (s[0], s[1]))
        # on to the next rung: the best third, less those whose fit on all songs alone would pass the budget;
        # the best always goes on (the budget bounds what is explored, never drops the best point found for a
        # second of projection: that made the choice depend on the machine's load)
        left = share_s - (time.perf_counter() - started)
        fits = scored[:1] + [x for x in scored[1:] if x[3] / share <= left]
        alive = [(p, s) for _, _, p, s in fits[:min(sizes[r + 1], math.ceil(len(scored) / KEEP))]]
        nxt = r + 1 if len(alive) > 1 else len(sizes) - 1
        skipped += [{**p, "rung": nxt, "songs": len(subset(n, share_of(nxt, len(sizes), n), seed, nxt)),
                     "projected_seconds": round(s_ * share_of(nxt, len(sizes), n) / share, 3)}
                    for _, _, p, s_ in scored[:min(sizes[r + 1], math.ceil(len(scored) / KEEP))]
                    if not any(p is q for q, _ in alive) and s_ / share > left]
        tick.plan[family.name] = len(search) + _planned(len(alive), sizes[r + 1:])  # skips shrink the plan
    raise AssertionError("unreachable: the last rung returns")


def _planned(alive: int, sizes: list[int]) -> int:
    """Points the rungs `sizes` still fit when `alive` points go on (one point: the finalist alone)."""
    total = 0
    for i, size in enumerate(sizes):
        if alive == 1 or i == len(sizes) - 1:
            return total + 1
        total += alive
        alive = min(sizes[i + 1], math.ceil(alive / KEEP))
    return total


class Ticker:
    """Counts the points fitted of those planned and tells `on_progress` (a skip shrinks the plan)."""

    def __init__(self, plan: dict[str, int], on_progress):
        self.plan, self.on_progress = dict(plan), on_progress
        self.done, self.family_done, self.started = 0, {}, time.perf_counter()

    def __call__(self, family) -> None:
        from hit_platform.domain.models.candidates import SearchProgress

        self.done += 1
        self.family_done[family.name] = self.family_done.get(family.name, 0) + 1
        if self.on_progress is not None:
            self.on_progress(SearchProgress(family.name, self.family_done[family.name], self.plan[family.name],
                                            self.done, sum(self.plan.values()), time.perf_counter() - self.started))

def planned_points(family) -> int:
    """Points a family's search fits when nothing is skipped."""
    return len(family.grid) if family.light or family.members or len(family.grid) == 1 \
        else sum(rungs(len(family.grid)))


def _row(params: dict, rung: int, songs: int, m: dict, seconds: float) -> dict:
    return {**params, "rung": rung, "songs": songs, "val_mean_roc_auc": m["mean_roc_auc"],
            "val_mean_log_loss": m["mean_log_loss"], "fit_seconds": round(seconds, 3)}


def uncalibrated(pipeline: Pipeline) -> Pipeline:
    """A fitted pipeline without the calibration `with_calibration` put after it (itself when it has none)."""
    last = pipeline[-1]
    return last.model if isinstance(last, Calibrated) else pipeline


FITTED_PARAMS = ("n_iter",)


def grid_point(params: dict) -> dict:
    """The grid point of a family's chosen `params`: without n_iter, calibration and member entries."""
    return {k: v for k, v in params.items() if "." not in k and k not in FITTED_PARAMS and k != "calibration"}


def fitted_params(pipeline: Pipeline) -> dict:
    """What the fit chose by itself (boosting rounds kept by early stopping, optimiser iterations)."""
    n_iter = getattr(uncalibrated(pipeline)[-1], "n_iter_", None)  # the model's, under any calibration
    return {} if n_iter is None else {"n_iter": int(n_iter)}


# Parsimony: a point that reads fewer features (a FeatureScreen) is preferred to one that reads them all
# unless it loses more than this much validation mean ROC AUC, as the one-standard-error rule prefers the
# simpler model. The features it leaves out then get exactly zero attribution, where an equal model that
# reads them gives them small, arbitrary shares.
SCREEN_PREFERENCE = 0.001


def point_key(point: dict, m: dict) -> tuple[float, float]:
    """`rank_key` of a grid point's validation metrics, with a screened point's AUC counted SCREEN_PREFERENCE higher."""
    auc, loss = rank_key(m)
    return (auc - SCREEN_PREFERENCE if point.get("screen") else auc, loss)


def rank_key(m: dict) -> tuple[float, float]:
    """Smaller is better: highest mean ROC AUC, then lowest mean log loss; NaN ranks last."""
    auc, loss = m["mean_roc_auc"], m["mean_log_loss"]
    return (-auc if np.isfinite(auc) else np.inf, loss if np.isfinite(loss) else np.inf)
