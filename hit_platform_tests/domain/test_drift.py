"""The population stability index behind the drift gate and the served-feature monitor."""

import numpy as np
import pytest

from hit_platform.domain.drift import psi


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20_000), rng.normal(size=20_000)
    assert psi(a, b) < 0.01
    assert psi(a, b + 1.0) > 0.25  # the threshold the gate and the monitor use by default


def test_psi_ignores_nan_and_is_infinite_when_a_side_is_empty():
    x = np.array([0.1, 0.2, np.nan, 0.3, 0.4] * 100)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-9)
    assert psi(np.array([np.nan]), x) == float("inf")
    assert psi(x, np.array([], dtype=float)) == float("inf")


def test_psi_of_a_constant_feature_compares_the_share_at_that_constant():
    ones = np.ones(1000)
    assert psi(ones, ones) < 1e-3
    assert psi(ones, np.r_[np.ones(500), np.zeros(500)]) > 0.25
