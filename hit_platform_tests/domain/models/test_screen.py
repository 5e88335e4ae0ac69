"""Feature screening: the features the labels depend on are kept, the others become a constant no model can
use, their exact attributions are 0 (equal to brute force), and bad input is refused saying what."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import LOG_ODDS, background_sample, explain
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.estimators import MultiLabelMLP
from hit_platform.domain.models.frame import FeatureFrame, LogFeatures, feature_matrix
from hit_platform.domain.models.screen import FeatureScreen
from hit_platform.domain.models.trees import CountryTrees
from hit_platform_tests.support.brute_force import brute_force
from hit_platform_tests.support.models import synthetic_features, synthetic_truth

# synthetic_truth reads these seven; the other seven play no part in any country's labels
READ = {"danceability", "energy", "loudness", "speechiness", "acousticness", "valence", "tempo"}
IGNORED = [c for c in FEATURE_COLUMNS if c not in READ]


def songs(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    X = synthetic_features(n, seed)
    return X, np.random.default_rng(seed + 10).random((n, len(COUNTRIES))) < synthetic_truth(X)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_screen_keeps_what_the_labels_depend_on_and_nothing_else(seed):
    X, Y = songs(6000, seed)
    screen = FeatureScreen().fit(feature_matrix(X), Y)
    kept = {c for c, k in zip(FEATURE_COLUMNS, screen.keep_) if k}
    assert kept == READ, dict(zip(FEATURE_COLUMNS, screen.signal_.round(2)))
    noise = screen.signal_[[FEATURE_COLUMNS.index(c) for c in IGNORED]]
    assert 0.5 < noise.mean() < 1.5  # chi-square per degree of freedom: about 1 for an unrelated feature


def test_screened_features_become_a_constant_and_the_input_is_left_alone():
    X, Y = songs(2000, 3)
    M = feature_matrix(X)
    screen = FeatureScreen().fit(M, Y)
    before = M.copy()
    out = screen.transform(M)
    np.testing.assert_array_equal(M, before)
    assert (out[:, ~screen.keep_] == 0.0).all() and np.array_equal(out[:, screen.keep_], M[:, screen.keep_])
    # no signal anywhere: the strongest feature is still kept, so a model has something to read
    flat = FeatureScreen(min_signal=1e9).fit(M, Y)
    assert flat.keep_.sum() == 1 and flat.keep_[int(np.argmax(flat.signal_))]


def test_bad_input_is_refused_saying_what():
    X, Y = songs(200, 4)
    M = feature_matrix(X)
    with pytest.raises(ValueError, match="needs the labels"):
        FeatureScreen().fit(M)
    with pytest.raises(ValueError, match="min_signal must be > 0"):
        FeatureScreen(min_signal=0).fit(M, Y)
    with pytest.raises(ValueError, match="2-D feature matrix"):
        FeatureScreen().fit(M[0], Y)
    with pytest.raises(ValueError, match="expected 14 feature columns"):
        FeatureScreen().fit(M, Y).transform(M[:, :3])


@pytest.mark.parametrize("family", ["mlp", "trees"])
def test_a_screened_model_gives_the_features_it_left_out_exactly_zero(family):
    X, Y = songs(3000, 5)
    if family == "mlp":
        steps = [("features", FeatureFrame()), ("log", LogFeatures()), ("scale", StandardScaler()),
                 ("screen", FeatureScreen()), ("model", MultiLabelMLP(hidden=8, alpha=30.0, max_iter=60))]
    else:  # on raw features: a constant is never split on
        steps = [("features", FeatureFrame(impute=False)), ("screen", FeatureScreen()),
                 ("model", CountryTrees(max_leaf_nodes=7, min_samples_leaf=40, max_iter=25, holdout=0.0))]
    model = Pipeline(steps).fit(X, Y)
    out = ~model.named_steps["screen"].keep_
    assert out.sum() >= 5
    background = background_sample(X, 16, seed=0)
    a = explain(model, X.iloc[:20], background)
    assert (a.phi[..., out] == 0.0).all()
    np.testing.assert_allclose(a.base + a.phi.sum(axis=-1), a.value, atol=1e-9)
    base, phi = brute_force(model, X.to_numpy()[0], background.songs, [s == LOG_ODDS for s in a.scales])
    np.testing.assert_allclose(phi, a.phi[0], atol=1e-9)
    np.testing.assert_allclose(base, a.base[0], atol=1e-9)


def test_a_grid_point_with_a_screen_builds_it_and_refits_the_same_bytes():
    from hit_platform.domain.models.candidates import FAMILIES, refit

    X, Y = songs(1500, 6)
    later, _ = songs(300, 7)
    points = {"linear": {"C": 1.0}, "mlp": {"hidden": 8, "alpha": 30.0, "max_iter": 40},
              "trees": {"learning_rate": 0.3, "max_leaf_nodes": 7, "min_samples_leaf": 40, "max_iter": 20,
                        "holdout": 0.0}}
    for family, point in points.items():
        assert "screen" not in FAMILIES[family].build(dict(point), 0).named_steps  # off unless a point says so
        screened = {**point, "screen": 2.0}
        fitted = FAMILIES[family].build(dict(screened), 0).fit(X, Y)
        assert not fitted.named_steps["screen"].keep_.all(), family  # the seven ignored features are out
        again = refit(family, screened, X, Y, seed=0)  # what the reproducibility gate and rebuild do
        assert fitted.predict_proba(later).tobytes() == again.predict_proba(later).tobytes(), family


def test_a_proxy_of_a_feature_that_matters_is_left_out():
    # the labels read tempo and speechiness; liveness echoes speechiness (correlation ~0.9) but adds nothing
    rng = np.random.default_rng(8)
    X = synthetic_features(6000, 8)
    X["liveness"] = np.clip(X["speechiness"] * 1.5 + rng.normal(0, 0.02, len(X)), 0, 1)
    z = np.log(X["speechiness"].to_numpy() / 0.07)[:, None] * rng.normal(1.0, 0.3, len(COUNTRIES)) \
        + 2.0 * np.exp(-0.5 * ((X["tempo"].to_numpy()[:, None] - 120) / 10) ** 2) - 3.0
    Y = rng.random(z.shape) < 1 / (1 + np.exp(-z))
    screen = FeatureScreen().fit(feature_matrix(X), Y)
    live = FEATURE_COLUMNS.index("liveness")
    assert screen.signal_[live] > 10  # on its own it looks like it matters
    assert {c for c, k in zip(FEATURE_COLUMNS, screen.keep_) if k} == {"tempo", "speechiness"}, \
        dict(zip(FEATURE_COLUMNS, screen.signal_.round(2)))


def test_a_screened_point_wins_a_near_tie_and_loses_a_real_gap():
    from hit_platform.domain.models.search import SCREEN_PREFERENCE, point_key

    plain, screened = {"hidden": 64}, {"hidden": 64, "screen": 2.0}
    m = {"mean_roc_auc": 0.8100, "mean_log_loss": 0.2}
    near = {"mean_roc_auc": 0.8100 - SCREEN_PREFERENCE / 2, "mean_log_loss": 0.2}
    gap = {"mean_roc_auc": 0.8100 - 3 * SCREEN_PREFERENCE, "mean_log_loss": 0.2}
    assert point_key(screened, near) < point_key(plain, m)  # smaller is better
    assert point_key(screened, gap) > point_key(plain, m)
    assert point_key({**screened, "screen": 0}, near) > point_key(plain, m)  # screen 0: no screen, no preference
