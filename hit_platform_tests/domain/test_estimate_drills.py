"""The label-free performance estimate against the generator's hidden truth (issue #16's drills, small).

One world whose taste changes in Latin America for the songs released from day 60 on; a small
MLP (the quickest family to fit here) trained on songs released before, then calibrated per
country (Platt) on others: the estimate is only as good as the calibration. The songs released
before the shift
have the same truth as in a world without it, so they serve the covariate-shift and no-shift
drills; the songs released after it serve the concept-shift drill. bench/bench_monitoring.py
runs the same drills at full size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.calibration import CountryCalibration
from hit_platform.domain.models.candidates import FAMILIES
from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.performance_estimate import estimated_roc_auc
from hit_platform.generator import GeneratorConfig
from hit_platform.generator.dump import hidden_truth
from hit_platform.generator.taste import TasteShift

SHIFT = TasteShift("latam", 60, 1.0, "anglo")
LATAM = np.array([COUNTRIES.index(c) for c in REGIONS["latam"]])
OTHERS = np.setdiff1d(np.arange(len(COUNTRIES)), LATAM)
SERVED = 5000
MIN_POSITIVES = 100  # a realized AUC on fewer positives scatters by about the +-0.03 judged


@dataclass
class Drill:
    X: pd.DataFrame
    Y: np.ndarray                  # (songs, 72) labels of the shifted world
    val: np.ndarray                # song indices: the calibration split
    pool: np.ndarray               # songs released before the shift, neither trained nor calibrated on
    new: np.ndarray                # songs released on or after the shift's day, in the dump
    predict: Callable[[np.ndarray], np.ndarray]  # song indices -> calibrated (n, 72) probabilities

    def realized(self, rows: np.ndarray) -> np.ndarray:
        return np.array(list(evaluate(self.Y[rows], self.predict(rows))["roc_auc"].values()))


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> Drill:
    root = tmp_path_factory.mktemp("drill")
    truth = hidden_truth(GeneratorConfig(out_dir=root / "landing", seed=7, songs=24_000, history_days=60,
                                         increments=0, world_days=75, start_date=date(2026, 1, 1),
                                         taste_shift=SHIFT))
    cat = truth.catalogue
    X = pd.DataFrame({**{c: cat.features[c] for c in FEATURE_COLUMNS if c in cat.features},
                      "is_explicit": cat.is_explicit.astype(float), "duration_ms": cat.duration_ms.astype(float)})
    X = X[list(FEATURE_COLUMNS)].astype(float)
    Y = truth.labels[:, 1:]
    before = np.random.default_rng(0).permutation(np.flatnonzero(truth.in_dump & ~truth.shifted))
    train, val, pool = before[:6000], before[6000:10_000], before[10_000:]
    model = FAMILIES["mlp"].build({"hidden": 32, "alpha": 30.0, "max_iter": 300}, 0).fit(X.iloc[train], Y[train])
    calibration = CountryCalibration("platt").fit(model.predict_proba(X.iloc[val]), Y[val])
    return Drill(X, Y, val, pool, np.flatnonzero(truth.in_dump & truth.shifted),
                 lambda rows: calibration.transform(model.predict_proba(X.iloc[rows])))


def _within(estimated: np.ndarray, realized: np.ndarray, enough: np.ndarray, tol: float = 0.03) -> float:
    return float((np.abs(estimated - realized)[enough] <= tol).mean())


def test_covariate_shift_the_estimate_follows_the_realized_auc(drill):
    X = drill.X.iloc[drill.pool]
    lift = np.exp(1.25 * ((X.energy - X.energy.mean()) / X.energy.std()
                          + (X.danceability - X.danceability.mean()) / X.danceability.std())).to_numpy()
    served = drill.pool[np.random.default_rng(1).choice(len(X), SERVED, replace=False, p=lift / lift.sum())]
    assert drill.X.energy.iloc[served].mean() > X.energy.mean() + 0.05  # the served songs did shift
    P, realized = drill.predict(served), drill.realized(served)
    enough = drill.Y[served].sum(axis=0) >= MIN_POSITIVES
    assert enough.sum() >= 60
    assert _within(estimated_roc_auc(P), realized, enough) >= 0.8
    # The check has teeth: an over-confident model (logits doubled: same ranking, so the same
    # realized AUC) or the probabilities of other countries estimate badly.
    logit = np.log(P) - np.log1p(-P)
    assert _within(estimated_roc_auc(1 / (1 + np.exp(-2 * logit))), realized, enough) < 0.3
    assert _within(estimated_roc_auc(P[:, np.random.default_rng(2).permutation(P.shape[1])]), realized,
                   enough) < 0.6


def test_concept_shift_the_estimate_cannot_see_it_the_labels_do(drill):
    est_before, est_after = estimated_roc_auc(drill.predict(drill.pool)), estimated_roc_auc(drill.predict(drill.new))
    real_before, real_after = drill.realized(drill.pool), drill.realized(drill.new)
    assert len(drill.new) > 500 and (drill.Y[drill.new][:, LATAM].sum(axis=0) >= 10).all()
    # the estimate barely moves, in Latin America as elsewhere ...
    assert abs(est_after.mean() - est_before.mean()) < 0.01
    assert abs(est_after[LATAM].mean() - est_before[LATAM].mean()) < 0.02
    # ... while the labels say Latin America's countries lost much of the model's skill, the others not
    latam_drop = real_before[LATAM].mean() - real_after[LATAM].mean()
    assert latam_drop > 0.1
    assert latam_drop > 5 * abs(est_after[LATAM].mean() - est_before[LATAM].mean())
    assert abs(real_before[OTHERS].mean() - real_after[OTHERS].mean()) < 0.02


def test_no_shift_no_country_estimate_falls_below_its_validation_auc(drill):
    served = drill.pool[np.random.default_rng(3).choice(len(drill.pool), SERVED, replace=False)]
    P = drill.predict(served)
    val_auc = drill.realized(drill.val)
    judged = drill.Y[drill.val].sum(axis=0) >= MIN_POSITIVES  # a validation AUC on fewer is itself noisy
    assert judged.sum() >= 60
    assert (estimated_roc_auc(P) - val_auc)[judged].min() > -0.05
    # The check has teeth: under-confident probabilities (logits halved, the ranking unchanged) would alert.
    logit = np.log(P) - np.log1p(-P)
    assert (estimated_roc_auc(1 / (1 + np.exp(-0.5 * logit))) - val_auc)[judged].min() < -0.05
