"""`idiosyncratic`: every country has its own taste; its region shares little of it.

    raw_c(z) = linear_c . z + bump_amp_c * exp(-(z_{b_c} - bump_at_c)^2 / (2 bump_width_c^2))
             + step_amp_c * [z_{s_c} > step_at_c] + pair_amp_c * tanh(z_{p_c}) * tanh(z_{q_c})

linear_c is REGION_SHARE of the region's vector and the rest the country's own. The bump, the step and
the pair each sit on features the country draws for itself (b_c, s_c, p_c, q_c), at places it draws too:
pooling a region's countries, which helps in the demo's world, finds little here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.generator.randomness import stream
from hit_platform.generator.worlds.common import N_FEATURES, REGION_INDEX, CountryTaste, country_rates

REGION_SHARE = 0.25
LINEAR_SD = 0.35


@dataclass
class IdiosyncraticTaste(CountryTaste):
    linear: np.ndarray = None       # (72, 14)
    bump_feature: np.ndarray = None  # (72,) int: which feature each country's bump sits on
    bump_at: np.ndarray = None
    bump_width: np.ndarray = None
    bump_amp: np.ndarray = None
    step_feature: np.ndarray = None  # (72,) int
    step_at: np.ndarray = None
    step_amp: np.ndarray = None
    pair: np.ndarray = None          # (72, 2) int: the two features of each country's interaction
    pair_amp: np.ndarray = None

    FIXED = ("bump_feature", "step_feature", "pair")
    LOCATIONS = ("bump_at", "bump_width", "step_at")

    def raw(self, Z: np.ndarray) -> np.ndarray:
        out = Z @ self.linear.T
        bump = (Z[:, self.bump_feature] - self.bump_at) / self.bump_width
        out += self.bump_amp * np.exp(-0.5 * bump ** 2)
        out += self.step_amp * (Z[:, self.step_feature] > self.step_at)
        out += self.pair_amp * np.tanh(Z[:, self.pair[:, 0]]) * np.tanh(Z[:, self.pair[:, 1]])
        return out


def make(seed: int) -> IdiosyncraticTaste:
    rng = stream(seed, "world:idiosyncratic")
    n = len(COUNTRIES)
    region_linear = rng.normal(0.0, LINEAR_SD, (len(REGIONS), N_FEATURES))
    own = rng.normal(0.0, LINEAR_SD, (n, N_FEATURES))
    linear = REGION_SHARE * region_linear[REGION_INDEX] + np.sqrt(1 - REGION_SHARE ** 2) * own
    pair = np.array([rng.choice(N_FEATURES, 2, replace=False) for _ in range(n)])
    return IdiosyncraticTaste.normalized(
        seed, (1.2, 1.9), nominal_rate=country_rates(rng, sharing=REGION_SHARE), linear=linear,
        bump_feature=rng.integers(0, N_FEATURES, n), bump_at=rng.normal(0.0, 0.8, n),
        bump_width=rng.uniform(0.3, 0.8, n), bump_amp=rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n),
        step_feature=rng.integers(0, N_FEATURES, n), step_at=rng.normal(0.0, 0.8, n),
        step_amp=rng.normal(0.0, 1.2, n), pair=pair, pair_amp=rng.normal(0.0, 1.2, n))
