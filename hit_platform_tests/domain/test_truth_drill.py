"""The truth drill's machinery (issue 31, part 5): a black box's exact attributions, and the comparison.

A model that IS the truth (its own served predict_proba as the black box) must agree with it exactly: the
same attributions as the model's exact paths, rank correlation 1, sign agreement 100%. A model blind to the
truth's main feature, or leaning on features the truth ignores, must be caught. The generator's sparse
oracle gives its ignored features exactly 0 and the declared players change nothing.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.explain import LOG_ODDS, PROBABILITY, Background, background_sample, explain
from hit_platform.domain.explain.truth import compare, function_attributions
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.calibration import CountryCalibration
from hit_platform.domain.models.candidates import FAMILIES, with_calibration
from hit_platform_tests.domain.test_attributions import songs


@lru_cache(maxsize=1)
def fitted() -> dict:
    X, Y = songs(800, 11)
    linear = FAMILIES["linear"].build({"C": 1.0}, 0).fit(X, Y)
    Xv, Yv = songs(400, 12)
    isotonic = with_calibration(linear, CountryCalibration("isotonic").fit(linear.predict_proba(Xv), Yv))
    return {"linear": linear, "isotonic": isotonic, "background": background_sample(X, 64, seed=0)}


def served(model):
    """The model's served probabilities as a black box of (n, 14) arrays."""
    return lambda R: model.predict_proba(pd.DataFrame(R, columns=list(FEATURE_COLUMNS)))


def small(background: Background, size: int) -> Background:
    return Background(songs=background.songs[:size], seed=background.seed, drawn_from=background.drawn_from)


def reading_only(model, features) -> object:
    """A copy of a linear pipeline whose log-odds read only these features (the others' weights 0)."""
    out = copy.deepcopy(model)
    out[-1].weights_[[j for j, f in enumerate(FEATURE_COLUMNS) if f not in features]] = 0.0
    return out


TRUTH_READS = ("danceability", "energy", "loudness", "valence", "tempo")


def test_a_model_that_is_the_truth_agrees_exactly():
    model, background = fitted()["linear"], small(fitted()["background"], 2)
    X = songs(1, 13)[0]
    a = explain(model, X, background)
    truth = function_attributions(served(model), X, background, a.scales, a.background_size)  # all 2^14
    assert set(truth.scales) == {LOG_ODDS} and truth.max_gap <= 1e-9
    assert np.abs(truth.phi - a.phi).max() <= 1e-9 and np.abs(truth.base - a.base).max() <= 1e-9
    c = compare(a, truth)
    assert np.allclose(c.rank_correlation, 1.0) and (c.sign_agreement == 1.0).all() and c.ignored_share is None


def test_on_the_probability_scale_too():
    model, background = fitted()["isotonic"], small(fitted()["background"], 3)
    X = songs(1, 14)[0]
    a = explain(model, X, background)
    assert set(a.scales) == {PROBABILITY}
    truth = function_attributions(served(model), X, background, a.scales, a.background_size)
    assert np.abs(truth.phi - a.phi).max() <= 1e-9 and np.abs(truth.value - model.predict_proba(X)).max() <= 1e-12


def test_a_model_blind_to_the_truths_main_feature_is_caught():
    truth_model, background = reading_only(fitted()["linear"], TRUTH_READS), small(fitted()["background"], 16)
    X = songs(40, 15)[0]
    t = explain(truth_model, X, background)
    truth = function_attributions(served(truth_model), X, background, t.scales, t.background_size,
                                  players=TRUTH_READS)
    assert np.abs(truth.phi - t.phi).max() <= 1e-9
    assert np.allclose(compare(t, truth).rank_correlation, 1.0)   # the truth itself, ties and all
    main = int(np.abs(t.phi).mean(axis=(0, 1)).argmax())
    blind = reading_only(truth_model, [f for f in TRUTH_READS if f != FEATURE_COLUMNS[main]])
    a = explain(blind, X, background)
    c = compare(a, truth)
    assert (a.phi[:, :, main] == 0).all()
    assert np.median(c.rank_correlation) < 0.9, np.median(c.rank_correlation)
    # where the truth's main feature leads a country, the blind model's ranking is far off
    leads = np.abs(t.phi).mean(axis=0).argmax(axis=1) == main
    assert leads.sum() >= 10 and c.rank_correlation[leads].max() < 0.8, c.rank_correlation[leads].max()
    # while the signs of what it does use agree: the sign test alone would not catch it
    assert c.sign_agreement.min() >= 0.95


def test_a_model_leaning_on_what_the_truth_ignores_is_caught():
    model, background = fitted()["linear"], small(fitted()["background"], 16)
    truth_model = reading_only(model, TRUTH_READS)
    ignored = tuple(f for f in FEATURE_COLUMNS if f not in TRUTH_READS)
    X = songs(20, 16)[0]
    a, t = explain(model, X, background), explain(truth_model, X, background)
    truth = function_attributions(served(truth_model), X, background, t.scales, t.background_size,
                                  players=TRUTH_READS)
    leaning, honest = compare(a, truth, ignored), compare(t, truth, ignored)
    assert (honest.ignored_share == 0).all() and (honest.sign_agreement == 1).all()
    assert np.median(leaning.ignored_share) > 0.05, np.median(leaning.ignored_share)
    assert leaning.ignored == ignored


def test_the_sparse_worlds_oracle_gives_what_it_ignores_exactly_zero(tmp_path: Path):
    from hit_platform.generator import GeneratorConfig, world_oracle

    oracle = world_oracle(GeneratorConfig(seed=3, songs=3000, out_dir=tmp_path, world_name="sparse"))
    assert len(oracle.ignored_features) == 10
    X = songs(3, 17)[0].to_numpy()
    background = small(background_sample(songs(200, 18)[0], 8, seed=0), 2)
    scales, sizes = [LOG_ODDS] * 72, np.full(72, 2)
    reads = [f for f in FEATURE_COLUMNS if f not in oracle.ignored_features]
    declared = function_attributions(oracle, X, background, scales, sizes, players=reads)
    full = function_attributions(oracle, X[:1], background, scales, sizes)   # every one of the 2^14 coalitions
    assert np.abs(full.phi - declared.phi[:1]).max() <= 1e-9
    ignored = [FEATURE_COLUMNS.index(f) for f in oracle.ignored_features]
    assert (declared.phi[:, :, ignored] == 0).all() and (np.abs(declared.phi).sum(axis=(0, 1)) > 0).sum() == 4
    q = oracle(X)
    assert np.abs(declared.value - (np.log(q) - np.log1p(-q))).max() <= 1e-12 and declared.max_gap <= 1e-9


def test_attributions_on_different_terms_are_refused():
    model, background = fitted()["linear"], small(fitted()["background"], 4)
    X = songs(1, 19)[0]
    a = explain(model, X, background)
    f, reads = served(model), ["tempo"]
    with pytest.raises(ValueError, match="different backgrounds"):
        compare(a, function_attributions(f, X, background, a.scales, np.full(72, 3), players=reads))
    with pytest.raises(ValueError, match="AE is on 'log-odds' for the model, 'probability, exact enumeration'"):
        compare(a, function_attributions(f, X, background, [PROBABILITY] * 72, a.background_size, players=reads))
    with pytest.raises(ValueError, match="sizes: expected 72 background sizes within 1..4"):
        function_attributions(f, X, background, a.scales, np.full(72, 5))
    with pytest.raises(ValueError, match="players: unknown feature 'tempi'"):
        function_attributions(f, X, background, a.scales, a.background_size, players=["tempi"])
    with pytest.raises(ValueError, match="answered shape"):
        function_attributions(lambda R: np.zeros((len(R), 3)), X, background, a.scales, a.background_size)
    with pytest.raises(ValueError, match="probability 1.0 for AE .* has no finite log-odds"):
        function_attributions(lambda R: np.ones((len(R), 72)), X, background, a.scales, a.background_size)
