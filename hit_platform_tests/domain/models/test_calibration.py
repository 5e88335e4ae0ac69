"""Per-country calibration: the error it measures, the maps that fix it, and the choice among them."""

from __future__ import annotations

import numpy as np
import pytest

from hit_platform.domain.models.calibration import (METHODS, Calibrated, CountryCalibration, choose_calibration,
                                                    expected_calibration_error, mean_log_loss, reliability)


def _world(n: int = 4000, k: int = 72, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = rng.beta(0.5, 8, (n, k))
    Y = rng.random((n, k)) < true
    overconfident = 1 / (1 + np.exp(-(2.0 * np.log(true / (1 - true)) + 1.0)))  # logit doubled, shifted up
    return true, Y, overconfident


def test_the_error_is_small_for_true_probabilities_and_large_for_distorted_ones():
    true, Y, distorted = _world()
    assert expected_calibration_error(Y, true).mean() < 0.01
    assert expected_calibration_error(Y, distorted).mean() > 0.02
    curve = reliability(Y, true)
    assert curve.mean_predicted.shape == (10, 72) and (curve.songs.sum(axis=0) == 4000).all()
    assert np.nanmax(np.abs(curve.mean_predicted - curve.observed_rate)) < 0.06


def test_platt_undoes_a_sigmoid_distortion_and_isotonic_any_monotone_one():
    true, Y, distorted = _world()
    platt = CountryCalibration("platt").fit(distorted, Y)
    assert abs(np.median(platt.a_) - 0.5) < 0.03 and abs(np.median(platt.b_) + 0.5) < 0.15  # the inverse map
    for method in ("platt", "isotonic"):
        fixed = CountryCalibration(method).fit(distorted, Y).transform(distorted)
        assert expected_calibration_error(Y, fixed).mean() < 0.01, method
        assert mean_log_loss(Y, fixed) < mean_log_loss(Y, distorted) - 0.02
        assert ((fixed >= 0) & (fixed <= 1)).all()


def test_a_calibration_is_chosen_only_when_it_lowers_the_cross_fitted_validation_log_loss():
    true, Y, distorted = _world()
    kept = choose_calibration(true, Y)
    assert kept.method == "none" and set(kept.val_log_loss) == set(METHODS)
    fixed = choose_calibration(distorted, Y)
    # every country distorted alike (logits doubled, shifted): one pooled map is the best fix
    assert fixed.method == "temperature", fixed.val_log_loss
    assert fixed.val_log_loss[fixed.method] < fixed.val_log_loss["none"]


def test_countries_miscalibrated_in_different_ways_each_get_their_own_map():
    """Half the countries calibrated, a quarter over-confident (a sigmoid distortion: Platt's), a quarter
    squeezed above a floor (no sigmoid of the logit undoes it: isotonic's): one method for all cannot be
    right everywhere."""
    true, Y, over = _world(n=6000, k=16, seed=3)
    P = true.copy()
    P[:, 8:12] = over[:, 8:12]
    P[:, 12:] = 0.15 + 0.3 * true[:, 12:]
    choice = choose_calibration(P, Y)
    assert choice.method == "per_country", choice.val_log_loss
    assert choice.val_log_loss["per_country"] < min(choice.val_log_loss[m] for m in ("none", "platt", "isotonic"))
    chosen = choice.calibration.country_methods_
    assert chosen[:8].count("none") >= 6 and chosen[8:12] == ["platt"] * 4 and chosen[12:] == ["isotonic"] * 4
    fixed = choice.calibration.transform(P)
    assert (fixed[:, :8] == P[:, :8]).sum() >= 6 * len(P)  # the calibrated ones mostly left alone
    assert expected_calibration_error(Y, fixed)[8:].mean() < expected_calibration_error(Y, P)[8:].mean() / 2
    # refitted on the same data, the same choice: what training's reproducibility check relies on
    again = CountryCalibration("per_country").fit(P, Y)
    assert again.country_methods_ == chosen and np.array_equal(again.transform(P), fixed)


def test_a_country_of_one_class_and_bad_input():
    rng = np.random.default_rng(1)
    P = rng.random((200, 3))
    Y = np.zeros((200, 3), dtype=bool)
    Y[:40, 1] = True
    for method in ("platt", "isotonic", "per_country"):  # a map per country: a country of one class alone
        out = CountryCalibration(method).fit(P, Y).transform(P)
        assert np.isfinite(out).all() and out[:, 0].max() < 0.05, method
    assert np.isfinite(CountryCalibration("temperature").fit(P, Y).transform(P)).all()
    with pytest.raises(ValueError, match="calibration 'region' needs the 72 countries' columns, got 3"):
        CountryCalibration("region").fit(P, Y)
    with pytest.raises(ValueError, match="expected one of"):
        CountryCalibration("beta").fit(P, Y)
    with pytest.raises(ValueError, match="must be the same"):
        CountryCalibration("platt").fit(P, Y[:10])


def test_a_calibrated_model_answers_its_models_probabilities_calibrated():
    true, Y, distorted = _world(n=500, k=4)

    class Fixed:
        def predict_proba(self, X):
            return distorted[X]

    cal = CountryCalibration("isotonic").fit(distorted, Y)
    model = Calibrated(Fixed(), cal)
    rows = np.arange(10)
    assert np.array_equal(model.predict_proba(rows), cal.transform(distorted[rows]))
    assert np.array_equal(Calibrated(Fixed(), None).predict_proba(rows), distorted[rows])


@pytest.mark.parametrize("n", [500, 20_000])
def test_the_excess_over_the_noise_floor_is_about_zero_for_a_calibrated_model_whatever_the_songs(n):
    from hit_platform.domain.models.calibration import calibration_noise_floor, excess_calibration_error

    true, Y, distorted = _world(n=n, seed=3)
    assert expected_calibration_error(Y, true).mean() > 0.5 * calibration_noise_floor(true).mean()  # noise, not 0
    assert abs(excess_calibration_error(Y, true).mean()) < 0.002
    assert excess_calibration_error(Y, distorted).mean() > 0.015


def test_a_bias_every_country_shares_is_seen_pooled_and_fixed_by_one_map():
    """Each country's model too timid alike (logits shrunk by a third), with ~40 hits per country: the
    pooled error sees it where each country's excess is within its noise; temperature then fixes it,
    with one slope near the inverse 1.5, and is chosen over a map per country."""
    from hit_platform.domain.models.calibration import pooled_calibration_error

    rng = np.random.default_rng(3)
    logits = rng.normal(-3.2, 1.2, (600, 72))
    true = 1 / (1 + np.exp(-logits))
    Y = rng.random(true.shape) < true
    from scipy.optimize import brentq

    def shrunk(c):
        return 1 / (1 + np.exp(-(logits / 1.5 + c)))
    timid = shrunk(brentq(lambda c: shrunk(c).mean() - true.mean(), -5, 5))  # the same mean, a narrower spread
    _, excess_true = pooled_calibration_error(Y, true)
    _, excess_timid = pooled_calibration_error(Y, timid)
    assert excess_true < 0.003 < 0.01 < excess_timid, (excess_true, excess_timid)
    choice = choose_calibration(timid, Y)
    assert choice.method in ("temperature", "region"), choice.val_log_loss
    assert choice.val_log_loss[choice.method] < choice.val_log_loss["platt"]
    assert 1.35 < np.median(choice.calibration.a_) < 1.65
    _, excess_fixed = pooled_calibration_error(Y, choice.calibration.transform(timid))
    assert excess_fixed < 0.003


def test_the_pooled_floor_counts_each_song_once():
    """A model that knows each country's rate but not which songs are hits is calibrated, and its residuals
    move together across a song's countries (a hit charts in many). Its floor counted by song is above
    the one of 72 x 300 independent draws, every time, and its excess (over twice the floor) stays
    within the shipped 0.01 on 300 songs."""
    from hit_platform.domain.models.calibration import calibration_noise_floor, pooled_calibration_error

    for seed in range(6):
        rng = np.random.default_rng(seed)
        country = rng.normal(-2.6, 0.5, (1, 72))
        true = 1 / (1 + np.exp(-(rng.normal(0.0, 1.5, (300, 1)) + country)))  # the song's hitness: unseen
        Y = rng.random(true.shape) < true
        population = 1 / (1 + np.exp(-(rng.normal(0.0, 1.5, (100_000, 1)) + country)))
        rate = np.repeat(population.mean(axis=0, keepdims=True), 300, axis=0)  # each country's true rate
        ece, excess = pooled_calibration_error(Y, rate)
        by_song, as_independent = (ece - excess) / 2, calibration_noise_floor(rate.reshape(-1, 1))[0]
        assert by_song > as_independent and excess < 0.01, (seed, ece, by_song, as_independent)
