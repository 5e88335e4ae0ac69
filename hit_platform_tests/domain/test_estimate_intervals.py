"""The label-free estimate's 90% intervals are honest when the model errs where its calibration on average
does not show it: a score too sharp in one country, too flat in another. The spread of the test split's
realized AUC around the estimate beyond sampling (`model_error`) widens them; sampling and ECE alone do not."""

from __future__ import annotations

import numpy as np

from hit_platform.domain.models.calibration import expected_calibration_error
from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.performance_estimate import estimate, model_error

K = 20  # countries
COUNTRY = [str(j) for j in range(K)]


class World:
    """Songs with a true hit probability Q per country, and a model whose score is Q's logit made sharper or
    flatter per country around the country's base rate."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.w = self.rng.normal(0, 1.2, (4, K))
        self.base = self.rng.normal(-2.2, 0.4, K)
        self.sharpness = self.rng.uniform(0.55, 1.6, K)

    def songs(self, n: int, *, the_truth: bool = False):
        logit = self.base + self.rng.normal(size=(n, 4)) @ self.w
        Q = 1 / (1 + np.exp(-logit))
        P = Q if the_truth else 1 / (1 + np.exp(-(self.sharpness * (logit - self.base) + self.base)))
        return P, self.rng.random(Q.shape) < Q


def coverage(world: World, ece: np.ndarray, tau: float | None, windows: int = 5, n: int = 1000) -> float:
    covered = []
    for _ in range(windows):
        P, Y = world.songs(n)
        real = np.array(list(evaluate(Y, P, countries=COUNTRY)["roc_auc"].values()))
        e = estimate(P, calibration_error=ece, auc_model_error=tau)
        covered.append((real >= e.roc_auc_lower) & (real <= e.roc_auc_upper))
    return float(np.mean(covered))


def test_a_model_that_errs_per_country_gets_intervals_that_cover_the_truth():
    world = World()
    P_test, Y_test = world.songs(3000)
    tau, ece = model_error(Y_test, P_test), expected_calibration_error(Y_test, P_test)
    assert tau.spread > 0.02, tau
    honest = coverage(world, ece, tau)
    assert honest >= 0.85, f"intervals with the model's own error cover {honest:.0%}"
    assert coverage(World(), ece, None) < 0.75, "sampling and ECE alone already covered: the drill shows nothing"


def test_the_truth_itself_has_no_model_error():
    P, Y = World(1).songs(3000, the_truth=True)
    error = model_error(Y, P)
    assert error.spread < 0.005 and abs(error.bias) < 0.005, error


def test_a_model_that_sells_itself_short_everywhere_gets_its_estimate_moved_up():
    """Scores flatter than the truth in every country (underconfident): the estimate from the probabilities
    runs low in all of them; the test split's shared offset moves it back, and the intervals cover."""
    world = World(2)
    world.sharpness[:] = 0.6
    P_test, Y_test = world.songs(3000)
    error, ece = model_error(Y_test, P_test), expected_calibration_error(Y_test, P_test)
    assert error.bias > 0.01, error
    P, Y = world.songs(3000)
    real = np.array(list(evaluate(Y, P, countries=COUNTRY)["roc_auc"].values()))
    plain, moved = estimate(P, calibration_error=ece), estimate(P, calibration_error=ece, auc_model_error=error)
    assert np.mean(real - plain.roc_auc) > 0.01, "the drill's model does not sell itself short"
    assert abs(np.mean(real - moved.roc_auc)) < abs(np.mean(real - plain.roc_auc)) / 3
    assert coverage(world, ece, error) >= 0.85
