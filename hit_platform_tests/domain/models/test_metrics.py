"""evaluate() against scikit-learn's metrics, country by country."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.models import CountryMetrics, country_metrics, evaluate


def _case(seed=0, n=500, ties=False):
    rng = np.random.default_rng(seed)
    P = np.clip(rng.beta(1, 5, (n, 72)), 1e-6, 1 - 1e-6)
    if ties:
        P = np.round(P, 2).clip(1e-6, 1 - 1e-6)  # many tied scores
    Y = rng.random((n, 72)) < P
    return Y, P


@pytest.mark.parametrize("ties", [False, True])
def test_matches_sklearn(ties):
    Y, P = _case(ties=ties)
    m = evaluate(Y, P)
    for j in (0, 7, 33, 71):
        c = COUNTRIES[j]
        assert m["roc_auc"][c] == pytest.approx(roc_auc_score(Y[:, j], P[:, j]), abs=1e-12)
        assert m["pr_auc"][c] == pytest.approx(average_precision_score(Y[:, j], P[:, j]), abs=1e-12)
        assert m["log_loss"][c] == pytest.approx(log_loss(Y[:, j], P[:, j], labels=[False, True]), abs=1e-12)
        assert m["brier"][c] == pytest.approx(brier_score_loss(Y[:, j], P[:, j]), abs=1e-12)
    for name in ("roc_auc", "pr_auc", "log_loss", "brier"):
        assert m[f"mean_{name}"] == pytest.approx(np.mean(list(m[name].values())))
        assert isinstance(m[f"mean_{name}"], float)
    assert m["countries_skipped"] == []
    assert m["n_songs"] == len(Y) and m["positives"]["US"] == Y[:, COUNTRIES.index("US")].sum()


def test_single_class_countries_are_skipped_from_every_mean():
    Y, P = _case(1)
    Y[:, COUNTRIES.index("AE")] = False
    Y[:, COUNTRIES.index("ZA")] = True
    m = evaluate(Y, P)
    assert m["countries_skipped"] == ["AE", "ZA"]
    assert np.isnan(m["roc_auc"]["AE"]) and np.isnan(m["pr_auc"]["ZA"])
    assert np.isfinite(m["log_loss"]["AE"])
    kept = [c for c in COUNTRIES if c not in ("AE", "ZA")]
    assert m["mean_roc_auc"] == pytest.approx(np.mean([m["roc_auc"][c] for c in kept]))
    assert m["mean_log_loss"] == pytest.approx(np.mean([m["log_loss"][c] for c in kept]))


def test_perfect_and_constant_predictions():
    Y, _ = _case(2)
    m = evaluate(Y, Y.astype(float))
    assert m["mean_roc_auc"] == 1.0 and m["mean_pr_auc"] == 1.0 and m["mean_brier"] == 0.0
    assert m["mean_roc_auc"] == evaluate(Y, np.where(Y, 0.9, 0.1))["mean_roc_auc"]
    assert evaluate(Y, np.full(Y.shape, 0.3))["mean_roc_auc"] == 0.5


def test_country_metrics_rows():
    Y, P = _case(3)
    rows = country_metrics(evaluate(Y, P))
    assert [r.country for r in rows] == list(COUNTRIES)
    assert isinstance(rows[0], CountryMetrics) and rows[0].n_positive == Y[:, 0].sum()


def test_bad_inputs():
    Y, P = _case(4)
    with pytest.raises(ValueError, match="P has shape"):
        evaluate(Y, P[:, :70])
    with pytest.raises(ValueError, match=r"Y_true must be \(n_songs, 72\)"):
        evaluate(Y[:, :70], P[:, :70])
    bad = P.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values for countries \['AU'\]"):
        evaluate(Y, bad)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        evaluate(Y, P + 1)


def test_calibration_comes_with_the_metrics():
    from hit_platform.domain.models.calibration import calibration_noise_floor, expected_calibration_error

    Y, P = _case(n=2000)
    m = evaluate(Y, P)
    assert m["ece"]["US"] == pytest.approx(expected_calibration_error(Y, P)[COUNTRIES.index("US")])
    assert m["mean_ece_excess"] == pytest.approx(np.mean(expected_calibration_error(Y, P) - calibration_noise_floor(P)))
    assert abs(m["mean_ece_excess"]) < 0.003  # labels drawn from P: calibrated
