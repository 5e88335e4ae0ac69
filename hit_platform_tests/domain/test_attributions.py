"""Exact per-country attributions: additivity, equality with brute force, null features, bad input.

Small real models fitted on generated songs (support.models); the brute force (support.brute_force)
is written apart from the library: every one of the 2^14 coalitions' hybrid rows scored by the
pipeline's own served predict_proba, then the textbook Shapley formula.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import LOG_ODDS, PROBABILITY, Background, background_sample, exact, explain
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.calibration import METHODS, CountryCalibration
from hit_platform.domain.models.candidates import FAMILIES, with_calibration
from hit_platform_tests.support.brute_force import brute_force as support_brute_force
from hit_platform_tests.support.brute_force import served_on_scale as support_served_on_scale
from hit_platform_tests.support.models import synthetic_features, synthetic_truth

UNUSED = FEATURE_COLUMNS.index("liveness")  # constant in training: no model can use it
FAMILY_PARAMS = {
    "prior": {},
    "linear": {"C": 1.0},
    "trees": {"learning_rate": 0.3, "max_leaf_nodes": 7, "min_samples_leaf": 20, "max_iter": 25, "holdout": 0.0},
    "mlp": {"hidden": 8, "alpha": 30.0, "max_iter": 60},
}


def songs(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    X = synthetic_features(n, seed)
    Y = np.random.default_rng(seed + 1).random((n, len(COUNTRIES))) < synthetic_truth(X)
    return X, Y


@lru_cache(maxsize=1)
def models() -> dict:
    X, Y = songs(800, 1)
    X["liveness"] = 0.15
    fitted = {f: FAMILIES[f].build(p, 0).fit(X, Y) for f, p in FAMILY_PARAMS.items()}
    # their weights of a constant column reach only ~1e-18 by themselves (scaling leaves rounding dust)
    fitted["mlp"][-1].W1_[UNUSED] = 0.0
    fitted["linear"][-1].weights_[UNUSED] = 0.0
    fitted["blend"] = FAMILIES["blend"].build({"trees_weight": 0.4}, 0, fitted)
    Xv, Yv = songs(400, 2)
    P = fitted["blend"].predict_proba(Xv)
    for method in METHODS:
        fitted[f"blend+{method}"] = with_calibration(fitted["blend"], CountryCalibration(method).fit(P, Yv))
    fitted["background"] = background_sample(X, 64, seed=0)
    return fitted


def served_on_scale(pipeline, X: pd.DataFrame, scales) -> np.ndarray:
    return support_served_on_scale(pipeline, X, [s == LOG_ODDS for s in scales])


def brute_force(pipeline, x: np.ndarray, Z: np.ndarray, scales) -> tuple[np.ndarray, np.ndarray]:
    return support_brute_force(pipeline, x, Z, [s == LOG_ODDS for s in scales])


CASES = ["prior", "linear", "trees", "mlp", *[f"blend+{m}" for m in METHODS]]


@pytest.mark.parametrize("name", CASES)
def test_base_plus_attributions_is_the_served_value(name):
    model = models()[name]
    X, _ = songs(300, 3)
    probe = explain(model, X.iloc[:1], models()["background"])
    if PROBABILITY in probe.scales:  # the enumerated countries cost about a second a song: fewer songs
        X = X.iloc[:8]
    a = explain(model, X, models()["background"])
    assert a.phi.shape == (len(X), 72, 14) and a.base.shape == a.value.shape == (len(X), 72)
    assert np.abs(a.base + a.phi.sum(axis=2) - a.value).max() <= 1e-9
    # the value is what is served: its probability on the log-odds scale, itself on the other
    assert np.abs(served_on_scale(model, X, a.scales) - a.value).max() <= 1e-9
    assert a.family == ("blend" if name.startswith("blend") else name)


def test_scales_follow_each_countrys_calibration():
    bg = models()["background"]
    x = songs(1, 5)[0]
    assert set(explain(models()["blend+platt"], x, bg).scales) == {LOG_ODDS}
    assert set(explain(models()["blend+isotonic"], x, bg).scales) == {PROBABILITY}
    per_country = models()["blend+per_country"]
    methods = per_country[-1].calibration.country_methods_
    assert explain(per_country, x, bg).scales == tuple(PROBABILITY if m == "isotonic" else LOG_ODDS for m in methods)


@pytest.mark.parametrize("name", CASES)
def test_attributions_equal_brute_force_over_every_coalition(name):
    model = models()[name]
    full = models()["background"]
    background = Background(songs=full.songs[:3], seed=full.seed, drawn_from=full.drawn_from)
    X, _ = songs(3, 4)
    a = explain(model, X, background)
    assert (a.background_size == 3).all()
    for i in range(len(X)):
        base, phi = brute_force(model, X.to_numpy()[i], background.songs, a.scales)
        assert np.abs(a.base[i] - base).max() <= 1e-9
        assert np.abs(a.phi[i] - phi).max() <= 1e-9


def test_each_country_is_exact_against_its_own_background_size():
    """Under a per-country calibration the isotonic countries average over fewer background songs (8) than
    the others (all 10 here): each country still equals the brute force over its own first songs."""
    model, full = copy.deepcopy(models()["blend+per_country"]), models()["background"]
    # the small models' per-country choice keeps no isotonic country: every third one made isotonic, the
    # rest Platt, each part fitted as per_country fits it
    calibration = model[-1].calibration
    Xv, Yv = songs(400, 2)
    P = models()["blend"].predict_proba(Xv)
    calibration.country_methods_ = ["isotonic" if j % 3 == 0 else "platt" for j in range(len(COUNTRIES))]
    calibration.parts_ = {m: CountryCalibration(m).fit(P, Yv) for m in ("isotonic", "platt")}
    background = Background(songs=full.songs[:10], seed=full.seed, drawn_from=full.drawn_from)
    x = songs(1, 13)[0].to_numpy()
    a = explain(model, x, background)
    assert set(a.background_size) == {8, 10} and set(a.scales) == {LOG_ODDS, PROBABILITY}
    base, phi = support_brute_force(model, x[0], background.songs, [s == LOG_ODDS for s in a.scales],
                                    sizes=a.background_size)
    assert np.abs(a.base[0] - base).max() <= 1e-9 and np.abs(a.phi[0] - phi).max() <= 1e-9
    # against all 10 songs everywhere, the isotonic countries' values differ: the sizes are not decoration
    base_all, _ = brute_force(model, x[0], background.songs, a.scales)
    assert np.abs(a.base[0] - base_all)[a.background_size == 8].max() > 1e-6


@pytest.mark.parametrize("name", ["mlp", "blend+platt", "blend+isotonic"])
def test_songs_sharing_features_with_background_songs_equal_brute_force(name):
    """A feature where the song equals a background song is a null player of that song's game: the
    enumeration leaves it out for that background song only. Songs sharing some, all but one, and all
    features with one background song and others with another: still the brute force's values."""
    model = models()[name]
    full = models()["background"]
    Z = full.songs[:3]
    background = Background(songs=Z, seed=full.seed, drawn_from=full.drawn_from)
    X = songs(3, 11)[0].to_numpy()
    X[0, :6], X[0, 9:12] = Z[0, :6], Z[1, 9:12]   # some features of row 0, others of row 1
    X[1] = Z[2]                                    # every feature of row 2
    X[2], X[2, 3] = Z[1], X[2, 3] + 0.25           # row 1 but for one feature
    shared = (X[:, None, :] == Z[None]).sum(axis=2)
    assert shared[0, 0] >= 6 and shared[0, 1] >= 3 and shared[1, 2] == 14 and shared[2, 1] == 13
    a = explain(model, X, background)
    assert np.abs(a.base + a.phi.sum(axis=2) - a.value).max() <= 1e-9
    for i in range(len(X)):
        base, phi = brute_force(model, X[i], Z, a.scales)
        assert np.abs(a.base[i] - base).max() <= 1e-9
        assert np.abs(a.phi[i] - phi).max() <= 1e-9


@pytest.mark.parametrize("scale", [0.3, 200.0])  # 200: pre-activations beyond the exponentials' range
def test_the_hidden_layers_enumeration_equals_plain_tanh_of_every_hybrid(scale):
    rng = np.random.default_rng(12)
    d, H, B = 14, 6, 5
    W1, b1 = rng.normal(size=(d, H)) * scale, rng.normal(size=H)
    Z = rng.normal(size=(B, d))
    x = rng.normal(size=d)
    x[:4], x[7], Z[1] = Z[0, :4], Z[2, 7], x   # shared with row 0 and row 2, and a row equal to x
    base, phi = exact.mlp_hidden(x, Z, W1, b1)
    values = np.tanh(exact.hybrids(x, Z) @ W1 + b1).mean(axis=1)   # (2^d, H), every hybrid
    plain_base, plain_phi = exact.enumerate_values(values)
    assert np.abs(base - plain_base).max() <= 1e-12 and np.abs(phi - plain_phi).max() <= 1e-12


@pytest.mark.parametrize("name", ["linear", "trees", "mlp", "blend+platt", "blend+isotonic"])
def test_a_feature_the_model_does_not_use_gets_exactly_zero(name):
    X, _ = songs(50, 6)
    assert X["liveness"].nunique() > 10  # the songs explained do vary in it
    a = explain(models()[name], X if "isotonic" not in name else X.iloc[:2], models()["background"])
    assert (a.phi[:, :, UNUSED] == 0.0).all()
    assert (np.abs(a.phi).sum(axis=(0, 1)) > 0).sum() >= 5  # while the features it uses get some


def test_the_prior_attributes_nothing():
    a = explain(models()["prior"], songs(20, 7)[0], models()["background"])
    assert (a.phi == 0).all() and np.array_equal(a.base, a.value)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 13)), "expected an \\(n, 14\\) array"),
    (np.zeros(14), "expected an \\(n, 14\\) array"),
    (np.full((2, 14), np.nan), "row 0 column 'danceability' is missing"),
    (np.array([[0.5] * 13 + [np.inf]]), "column 'duration_ms' is infinite"),
])
def test_malformed_songs_are_refused_with_what_and_where(bad, message):
    with pytest.raises(ValueError, match=message):
        explain(models()["linear"], bad, models()["background"])


def test_a_missing_value_in_a_frame_is_refused_by_name():
    X = songs(3, 8)[0]
    X.loc[1, "tempo"] = np.nan
    with pytest.raises(ValueError, match="row 1 column 'tempo' is missing"):
        explain(models()["trees"], X, models()["background"])
    with pytest.raises(ValueError, match="missing columns \\['tempo'\\]"):
        explain(models()["trees"], X.drop(columns="tempo"), models()["background"])


def test_background_is_a_seeded_sample_of_complete_songs():
    X = songs(200, 9)[0]
    X.loc[::2, "energy"] = np.nan
    a, b = background_sample(X, 32, seed=3), background_sample(X, 32, seed=3)
    assert np.array_equal(a.songs, b.songs) and a.drawn_from == 100 and not np.isnan(a.songs).any()
    assert np.array_equal(background_sample(X, 8, seed=3).songs, a.songs[:8])  # a prefix is the smaller sample
    assert not np.array_equal(background_sample(X, 32, seed=4).songs, a.songs)
    with pytest.raises(ValueError, match="need 101 songs with every feature present, the training songs have 100"):
        background_sample(X, 101)


def test_a_served_value_the_tree_nodes_do_not_give_is_refused():
    broken = copy.deepcopy(models()["trees"])
    broken[-1].forest_.baseline += 1e-7  # the compiled scorer no longer matches the trees it came from
    with pytest.raises(ArithmeticError, match="misses the served value by 1e-07"):
        explain(broken, songs(2, 10)[0], models()["background"])
