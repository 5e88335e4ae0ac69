"""Same data, same seed -> byte-identical predictions, whatever the thread settings."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from hit_platform.domain.models import refit, train_candidates
from hit_platform.domain.models import candidates
from hit_platform.domain.models.calibration import METHODS
from hit_platform.domain.models.candidates import FAMILIES
from hit_platform.domain.models.search import planned_points
from hit_platform_tests.support.models import data, trained_candidates


def _probe():
    return data()["test"][0]


def _fit(family, params, seed=0):
    X, Y, _ = data()["train"]
    return FAMILIES[family].build(params, seed).fit(X, Y)


def test_linear_two_fits_identical():
    a = _fit("linear", {"C": 0.1}).predict_proba(_probe())
    b = _fit("linear", {"C": 0.1}).predict_proba(_probe())
    assert a.tobytes() == b.tobytes()


def test_trees_identical_across_fits_and_thread_counts():
    params = {"learning_rate": 0.3, "max_leaf_nodes": 7, "min_samples_leaf": 40, "max_iter": 40}
    X, Y, _ = data()["train"]
    one = FAMILIES["trees"].build(params, 0)
    one.set_params(model__n_threads=1)
    two = FAMILIES["trees"].build(params, 0)
    two.set_params(model__n_threads=2)
    a = one.fit(X, Y).predict_proba(_probe())
    b = two.fit(X, Y).predict_proba(_probe())
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, _fit("trees", params, seed=1).predict_proba(_probe()))  # the seed matters


@pytest.mark.parametrize("extra", [{}, {"pool": 3.0}, {"pool": 3.0, "bag": 2}])  # pooled by region, bagged
def test_mlp_identical_across_fits_and_blas_threads(extra):
    params = {"hidden": 16, "alpha": 30.0, "max_iter": 40, **extra}
    with threadpool_limits(limits=1):
        a = _fit("mlp", params).predict_proba(_probe())
    with threadpool_limits(limits=2):
        b = _fit("mlp", params).predict_proba(_probe())
    assert a.tobytes() == b.tobytes()


@pytest.mark.slow  # ~30 s: a search and its refit
def test_refit_of_the_chosen_parameters_rebuilds_the_same_model():
    """What the pipeline's reproducibility check does: fit the chosen grid point again, no search.
    The blend refits its members (trees, mlp) from their `member.param` entries and must still give
    the same bytes; so must every other family."""
    (Xt, Yt, _), (Xv, Yv, _) = data()["train"], data()["validation"]
    for family, first in trained_candidates().items():
        assert first.params["calibration"] in METHODS
        again = refit(family, first.params, Xt, Yt, seed=0, val_X=Xv, val_Y=Yv)
        assert again.predict_proba(_probe()).tobytes() == first.pipeline.predict_proba(_probe()).tobytes(), family
    # the blend's members refitted side by side in processes (what the check does with 2 workers): same bytes
    blend = trained_candidates()["blend"]
    side_by_side = refit("blend", blend.params, Xt, Yt, seed=0, val_X=Xv, val_Y=Yv, workers=2)
    assert side_by_side.predict_proba(_probe()).tobytes() == blend.pipeline.predict_proba(_probe()).tobytes()


def test_a_calibration_is_fitted_again_from_the_validation_split():
    """A calibrated candidate (here forced: isotonic) refits to the same bytes, and says why it needs
    the validation split when it is not given."""
    (Xt, Yt, _), (Xv, Yv, _) = data()["train"], data()["validation"]
    first = trained_candidates()["linear"]
    params = {**first.params, "calibration": "isotonic"}
    a = refit("linear", params, Xt, Yt, seed=0, val_X=Xv, val_Y=Yv)
    b = refit("linear", params, Xt, Yt, seed=0, val_X=Xv, val_Y=Yv)
    assert a.predict_proba(_probe()).tobytes() == b.predict_proba(_probe()).tobytes()
    assert a.predict_proba(_probe()).tobytes() != first.pipeline.predict_proba(_probe()).tobytes()
    with pytest.raises(ValueError, match="calibration \\(isotonic\\) is fitted on the validation split"):
        refit("linear", params, Xt, Yt, seed=0)


def _spy_on_helpers(monkeypatch) -> list:
    """Counts the helper pools started (the real ones: only the count is added)."""
    started = []
    real = candidates._Helpers.executor

    def executor(self):
        started.append(self.pool is None)
        return real(self)

    monkeypatch.setattr(candidates._Helpers, "executor", executor)
    return started


def test_grid_points_fitted_in_helper_processes_give_the_same_models(monkeypatch):
    (Xt, Yt, _), (Xv, Yv, _) = data()["train"], data()["validation"]
    serial = trained_candidates()
    started = _spy_on_helpers(monkeypatch)
    told = []
    for r in train_candidates(Xt, Yt, Xv, Yv, seed=0, families=["linear", "mlp"], workers=2, on_progress=told.append):
        assert r.params == serial[r.family].params
        assert r.pipeline.predict_proba(_probe()).tobytes() == serial[r.family].pipeline.predict_proba(_probe()).tobytes()
    assert started[0] and not any(started[1:])  # one pool, started for mlp (linear is light), then reused
    # each grid point is told as it is fitted, helper processes or not, with the time left at the pace so far
    # (the mlp's: every rung of its successive halving, the finalist last; no budget: nothing skipped)
    n_linear, n_mlp = len(FAMILIES["linear"].grid), planned_points(FAMILIES["mlp"])
    points = n_linear + n_mlp
    assert [(t.family, t.family_done, t.done) for t in told] == (
        [("linear", i, i) for i in range(1, n_linear + 1)] + [("mlp", i, n_linear + i) for i in range(1, n_mlp + 1)])
    assert all(t.points == points for t in told) and "s left" in str(told[0]) and "left" not in str(told[-1])
    assert str(told[-1]).startswith(f"mlp {n_mlp}/{n_mlp} grid points, {points}/{points} in all")


def test_light_families_alone_never_start_helper_processes(monkeypatch):
    (Xt, Yt, _), (Xv, Yv, _) = data()["train"], data()["validation"]
    started = _spy_on_helpers(monkeypatch)
    [r] = train_candidates(Xt, Yt, Xv, Yv, seed=0, families=["linear"], workers=2)
    assert FAMILIES["linear"].light and not started  # its three points fitted here, no process spawned
    assert r.params == trained_candidates()["linear"].params
