"""`sparse`: a few features decide everything; the other ten play no part (`ignored_features`).

The world draws RELEVANT features (CONTINUOUS of them from the continuous ones, so the taste has
something to bend); every chart's taste reads those alone:

    raw_c(z) = linear_c . z_R + bump_amp_c * exp(-(z_{R0} - bump_at_c)^2 / 2 bump_width_c^2)
             + pair_amp_c * tanh(z_{R1}) * tanh(z_{R2}) + step_amp_c * [z_{R3} > step_at_c]

Regions share most of it (countries add a little noise), as in the demo's world. A model that spreads
its attention over all 14 features wastes it; an attribution of this oracle gives the ignored ones
exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.generator.randomness import stream
from hit_platform.generator.worlds.common import COLUMN, N_FEATURES, REGION_INDEX, CountryTaste, country_rates

RELEVANT, CONTINUOUS = 4, 3
_CONTINUOUS = ("danceability", "energy", "loudness", "speechiness", "acousticness", "instrumentalness",
               "liveness", "valence", "tempo", "duration_ms")


@dataclass
class SparseTaste(CountryTaste):
    relevant: np.ndarray = None  # (RELEVANT,) int: the features that matter, continuous ones first (shared)
    linear: np.ndarray = None    # (72, RELEVANT)
    bump_at: np.ndarray = None
    bump_width: np.ndarray = None
    bump_amp: np.ndarray = None
    pair_amp: np.ndarray = None
    step_at: np.ndarray = None
    step_amp: np.ndarray = None

    FIXED = ("relevant",)
    LOCATIONS = ("bump_at", "bump_width", "step_at")

    def raw(self, Z: np.ndarray) -> np.ndarray:
        R = Z[:, self.relevant]
        out = R @ self.linear.T
        out += self.bump_amp * np.exp(-0.5 * ((R[:, [0]] - self.bump_at) / self.bump_width) ** 2)
        out += self.pair_amp * (np.tanh(R[:, 1]) * np.tanh(R[:, 2]))[:, None]
        out += self.step_amp * (R[:, [3]] > self.step_at)
        return out

    def used_features(self) -> set[str]:
        return {FEATURE_COLUMNS[f] for f in self.relevant}


def make(seed: int) -> SparseTaste:
    rng = stream(seed, "world:sparse")
    continuous = rng.choice([COLUMN[c] for c in _CONTINUOUS], CONTINUOUS, replace=False)
    rest = [f for f in range(N_FEATURES) if f not in continuous]
    relevant = np.concatenate([continuous, rng.choice(rest, RELEVANT - CONTINUOUS, replace=False)])
    n, regions, r = len(COUNTRIES), len(REGIONS), REGION_INDEX

    def shared(region: np.ndarray, sd: float, *shape: int) -> np.ndarray:
        return region[r] + rng.normal(0.0, sd, (n, *shape))

    return SparseTaste.normalized(
        seed, (1.2, 1.9), nominal_rate=country_rates(rng), relevant=relevant,
        linear=shared(rng.normal(0.0, 0.5, (regions, RELEVANT)), 0.15, RELEVANT),
        bump_at=shared(rng.normal(0.0, 0.7, regions), 0.15), bump_width=shared(rng.uniform(0.4, 0.8, regions), 0.05),
        bump_amp=shared(rng.uniform(0.8, 1.6, regions), 0.15), pair_amp=shared(rng.normal(0.0, 1.0, regions), 0.15),
        step_at=shared(rng.normal(0.0, 0.6, regions), 0.15), step_amp=shared(rng.normal(0.0, 1.0, regions), 0.15))
