"""Performance estimated without labels: exact for the expected metric, and honest about its error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.performance_estimate import estimate, estimated_log_loss, estimated_roc_auc, expected_roc_auc


def _calibrated(n: int, k: int = 72, seed: int = 0):
    rng = np.random.default_rng(seed)
    P = 1 / (1 + np.exp(-rng.normal(-3, 1.3, (n, k))))
    return np.round(P, 3), rng  # rounded: ties exist, as with printed probabilities


def test_the_auc_estimate_is_the_expected_pair_order_ties_counting_half():
    P, _ = _calibrated(120, k=2)
    for j in range(2):
        p = P[:, j]
        pairs = [(p[i] * (1 - p[m]), (p[i] > p[m]) + 0.5 * (p[i] == p[m]))
                 for i, m in itertools.permutations(range(len(p)), 2)]
        expected = sum(w * s for w, s in pairs) / sum(w for w, _ in pairs)
        assert estimated_roc_auc(P[:, [j]])[0] == pytest.approx(expected, rel=1e-12)
    assert estimated_log_loss(np.array([[0.5], [0.5]]))[0] == pytest.approx(np.log(2))


def test_on_labels_drawn_from_calibrated_probabilities_the_estimate_is_close_and_its_interval_covers():
    P, rng = _calibrated(6000)
    Y = rng.random(P.shape) < P
    real = evaluate(Y, P)
    realized_auc = np.array(list(real["roc_auc"].values()))
    realized_loss = np.array(list(real["log_loss"].values()))
    e = estimate(P, level=0.9)
    assert (np.abs(e.roc_auc - realized_auc) <= 0.03).mean() >= 0.9
    covered = (realized_auc >= e.roc_auc_lower) & (realized_auc <= e.roc_auc_upper)
    assert 0.75 <= covered.mean() <= 1.0  # nominal 90%, over 72 countries
    covered_loss = (realized_loss >= e.log_loss_lower) & (realized_loss <= e.log_loss_upper)
    assert 0.75 <= covered_loss.mean() <= 1.0
    assert e.songs == 6000 and e.expected_positives.shape == (72,)


def test_the_calibration_error_widens_the_interval():
    P, _ = _calibrated(2000, k=8)
    plain = estimate(P)
    wide = estimate(P, calibration_error=np.full(8, 0.02))
    assert (wide.roc_auc_upper - wide.roc_auc_lower >= plain.roc_auc_upper - plain.roc_auc_lower).all()
    assert (wide.log_loss_upper - wide.log_loss_lower > plain.log_loss_upper - plain.log_loss_lower).all()
    assert np.array_equal(wide.roc_auc, plain.roc_auc)


@pytest.mark.parametrize("P, match", [(np.full((1, 3), 0.5), "songs >= 2"), (np.full((5, 2), 1.5), "within"),
                                      (np.full((5, 2), np.nan), "finite")])
def test_bad_input_is_refused(P, match):
    with pytest.raises(ValueError, match=match):
        estimate(P)


def test_the_expected_auc_of_scores_under_other_probabilities_is_the_realized_auc_when_they_are_labels():
    P, rng = _calibrated(400)
    Y = rng.random(P.shape) < P
    assert np.allclose(expected_roc_auc(P, Y.astype(float)), list(evaluate(Y, P)["roc_auc"].values()))
    truth = np.clip(P + rng.normal(0, 0.05, P.shape), 0, 1)  # another truth: not what the scores expect
    assert np.all(np.abs(expected_roc_auc(P, truth) - estimated_roc_auc(P)) > 1e-4)
    assert np.array_equal(expected_roc_auc(P, P), estimated_roc_auc(P))
