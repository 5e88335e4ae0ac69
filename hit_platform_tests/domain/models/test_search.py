"""The search inside a family: successive halving over its grid under a time budget (issue 30)."""

import dataclasses
import math

import numpy as np
import pydantic
import pytest

from hit_platform.domain.models import FAMILIES, refit, train_candidates
from hit_platform.domain.models import candidates
from hit_platform.domain.models.search import planned_points, rungs
from hit_platform.settings.training import TrainingSettings
from hit_platform_tests.support.models import N_TRAIN, data

# one region of the grid clearly better: a sane penalty (pooled by region: its refit is checked too); the others
# all but switch the hidden layer off
GOOD = {"hidden": 8, "alpha": 30.0, "max_iter": 40, "pool": 3.0}
GRID = (*({"hidden": h, "alpha": a, "max_iter": 40} for h, a in ((8, 1e5), (4, 1e5), (8, 3e5), (4, 3e5), (4, 1e6))),
        GOOD)


@pytest.fixture
def small_mlp_grid(monkeypatch):
    monkeypatch.setitem(candidates.FAMILIES, "mlp", dataclasses.replace(FAMILIES["mlp"], grid=GRID))


def _train(**kw):
    (Xt, Yt, _), (Xv, Yv, _) = data()["train"], data()["validation"]
    return train_candidates(Xt, Yt, Xv, Yv, seed=0, **kw)


def test_rungs_keep_a_third_until_one_point_is_left():
    assert rungs(9) == [9, 3, 1] and rungs(6) == [6, 2, 1] and rungs(3) == [3, 1] and rungs(1) == [1]
    assert planned_points(FAMILIES["linear"]) == len(FAMILIES["linear"].grid)  # light: every point on all songs


def test_the_search_climbs_to_the_better_region_and_fits_the_finalist_on_all_songs(small_mlp_grid):
    told = []
    [r] = _train(families=["mlp"], on_progress=told.append)
    assert {k: r.params[k] for k in GOOD} == GOOD
    assert [row["songs"] for row in r.search] == [N_TRAIN // 4] * 6 + [N_TRAIN // 2] * 2 + [N_TRAIN]
    assert r.search[-1]["val_mean_roc_auc"] == r.val_metrics["mean_roc_auc"] or r.params["calibration"] != "none"
    assert not r.skipped
    assert [(t.done, t.points) for t in told] == [(i, 9) for i in range(1, 10)]  # done of the planned total


def test_refit_of_the_chosen_point_gives_the_same_bytes(small_mlp_grid):
    [r] = _train(families=["mlp"])
    (Xt, Yt, _), (Xv, Yv, _), (Xs, _, _) = data()["train"], data()["validation"], data()["test"]
    again = refit("mlp", r.params, Xt, Yt, seed=0, val_X=Xv, val_Y=Yv)
    assert again.predict_proba(Xs).tobytes() == r.pipeline.predict_proba(Xs).tobytes()


def test_a_tiny_budget_fits_fewer_points_says_what_it_skipped_and_still_returns_every_family(small_mlp_grid):
    told = []
    results = {r.family: r for r in _train(families=["linear", "mlp"], budget_s=1e-3, on_progress=told.append)}
    mlp = results["mlp"]
    assert len(mlp.search) == 2  # the first wave (one worker: one point), then the finalist on all songs
    assert mlp.search[-1]["songs"] == N_TRAIN and {k: mlp.params[k] for k in GRID[0]} == GRID[0]
    assert [{k: s[k] for k in p} for s, p in zip(mlp.skipped, GRID[1:])] == list(GRID[1:])
    assert len(mlp.skipped) == len(GRID) - 1
    assert all(s["rung"] == 0 and s["songs"] == N_TRAIN // 4 and s["projected_seconds"] >= 0 for s in mlp.skipped)
    assert len(results["linear"].search) == len(FAMILIES["linear"].grid)  # light families are not budgeted
    assert told[-1].done == told[-1].points == len(FAMILIES["linear"].grid) + 2  # the plan shrank with the skips
    P = mlp.pipeline.predict_proba(data()["test"][0])
    assert P.shape == (len(data()["test"][0]), 72) and np.isfinite(P).all()


@pytest.mark.parametrize("bad", [0, -5, math.nan, math.inf, "soon", True])
def test_bad_budgets_are_refused_by_the_search(bad):
    with pytest.raises(ValueError, match="budget_s must be a positive number of seconds or None"):
        _train(families=["prior"], budget_s=bad)


@pytest.mark.parametrize("bad", ["0", "-1", "soon"])
def test_bad_budgets_are_refused_by_the_settings(monkeypatch, bad):
    monkeypatch.setenv("HIT_TRAIN_BUDGET_S", bad)
    with pytest.raises(pydantic.ValidationError, match="budget_s"):
        TrainingSettings()
    monkeypatch.setenv("HIT_TRAIN_BUDGET_S", "240")
    assert TrainingSettings().budget_s == 240.0
