"""Global importance per country: the mean |exact attribution| over a bounded deterministic sample of songs."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import (PROBABILITY, Explainer, background_sample, explain, global_importance,
                                         importance_sample)
from hit_platform.domain.models.calibration import CountryCalibration
from hit_platform.domain.models.candidates import FAMILIES, with_calibration
from hit_platform_tests.support.models import synthetic_features, synthetic_truth


def songs(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    X = synthetic_features(n, seed)
    return X, np.random.default_rng(seed + 1).random((n, len(COUNTRIES))) < synthetic_truth(X)


@lru_cache(maxsize=1)
def models() -> dict:
    """Small real models: the prior, and a linear model bare and under isotonic calibration (its countries
    enumerated on the probability scale, as a blend's are, at a linear model's cost)."""
    X, Y = songs(600, 1)
    fitted = {f: FAMILIES[f].build(p, 0).fit(X, Y) for f, p in (("prior", {}), ("linear", {"C": 1.0}))}
    Xv, Yv = songs(300, 2)
    fitted["linear+isotonic"] = with_calibration(
        fitted["linear"], CountryCalibration("isotonic").fit(fitted["linear"].predict_proba(Xv), Yv))
    fitted["background"] = background_sample(X, 64, seed=0)
    return fitted


def test_it_is_the_mean_absolute_attribution_of_the_sampled_songs_on_each_countrys_scale():
    """Under isotonic calibration: every country enumerated on the probability scale."""
    model, background = models()["linear+isotonic"], models()["background"]
    X, _ = songs(40, 7)
    X.loc[[3, 11], "energy"] = np.nan  # incomplete songs are never sampled
    ids = np.array([f"song-{i}" for i in range(len(X))])
    imp = global_importance(Explainer(model, background), ids, X, songs=2, seed=5)
    rows = importance_sample(X, 2, 5)
    assert imp.song_ids == tuple(ids[rows]) and not {3, 11} & set(rows) and imp.songs == 2
    a = explain(model, X.iloc[rows], background)
    assert np.array_equal(imp.matrix, np.abs(a.phi).mean(axis=0)) and imp.scales == a.scales
    assert set(imp.scales) == {PROBABILITY} and imp.family == "linear"
    assert np.allclose(imp.shares().sum(axis=1), 1.0)
    assert imp.top_feature() == max(imp.feature_shares(), key=imp.feature_shares().get)


def test_the_same_songs_size_and_seed_give_the_same_sample_and_importance():
    X, _ = songs(200, 8)
    ids, explainer = np.arange(200), Explainer(models()["linear"], models()["background"])
    first, again = (global_importance(explainer, ids, X, songs=20, seed=1) for _ in range(2))
    assert np.array_equal(first.matrix, again.matrix) and first.song_ids == again.song_ids
    other = global_importance(explainer, ids, X, songs=20, seed=2)
    assert other.song_ids != first.song_ids
    assert global_importance(explainer, ids, X, songs=10, seed=1).song_ids == first.song_ids[:10]  # a prefix


def test_fewer_complete_songs_than_asked_are_all_taken_and_none_is_refused_by_name():
    X, _ = songs(5, 3)
    assert sorted(importance_sample(X, 64, 0)) == list(range(5))
    X[:] = np.nan
    with pytest.raises(ValueError, match="songs with every feature present"):
        importance_sample(X, 64, 0)
    with pytest.raises(ValueError, match="3 song ids for 5 songs"):
        global_importance(Explainer(models()["linear"], models()["background"]), ["a", "b", "c"], songs(5, 3)[0], 4, 0)


def test_the_prior_uses_no_feature():
    X, _ = songs(10, 4)
    imp = global_importance(Explainer(models()["prior"], models()["background"]), np.arange(10), X, 4, 0)
    assert not imp.matrix.any() and np.isnan(imp.shares()).all() and imp.top_feature() is None
