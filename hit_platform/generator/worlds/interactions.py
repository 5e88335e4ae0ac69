"""`interactions`: tastes made only of products of 2 to 4 features (high-order interactions).

    raw_c(z) = sum_t amp_ct * prod_{f in S_t} tanh(SHARPNESS * (z_f - cut_tf))

The world draws TERMS sets S_t of features (mostly 3 or 4 of them) and cuts; each region weighs every
term its own way and its countries follow with a little noise. A term is a soft sign pattern (an
XOR of 2-4 features), so each feature alone says little: no main effects beyond what the cuts leave.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.generator.randomness import stream
from hit_platform.generator.worlds.common import N_FEATURES, REGION_INDEX, CountryTaste, country_rates

TERMS = 8
ORDERS = (2, 3, 3, 4)  # drawn with equal chance per term
SHARPNESS = 1.5


@dataclass
class InteractionTaste(CountryTaste):
    members: np.ndarray = None  # (TERMS, 14) bool: the features of each term (shared by the world)
    cut: np.ndarray = None      # (TERMS, 14) where each feature's sign flips (shared)
    amp: np.ndarray = None      # (72, TERMS)

    FIXED = ("members", "cut")

    def raw(self, Z: np.ndarray) -> np.ndarray:
        terms = np.ones((len(Z), len(self.members)))
        for t, row in enumerate(self.members):
            for f in np.flatnonzero(row):
                terms[:, t] *= np.tanh(SHARPNESS * (Z[:, f] - self.cut[t, f]))
        return terms @ self.amp.T

    def used_features(self) -> set[str]:
        return {FEATURE_COLUMNS[f] for f in np.flatnonzero(self.members.any(axis=0))}


def make(seed: int) -> InteractionTaste:
    rng = stream(seed, "world:interactions")
    members = np.zeros((TERMS, N_FEATURES), dtype=bool)
    for t in range(TERMS):
        members[t, rng.choice(N_FEATURES, ORDERS[rng.integers(len(ORDERS))], replace=False)] = True
    cut = np.where(members, rng.normal(0.0, 0.4, (TERMS, N_FEATURES)), 0.0)
    region_amp = rng.normal(0.0, 1.0, (len(REGIONS), TERMS))
    return InteractionTaste.normalized(
        seed, (1.2, 1.9), nominal_rate=country_rates(rng), members=members, cut=cut,
        amp=region_amp[REGION_INDEX] + rng.normal(0.0, 0.25, (len(COUNTRIES), TERMS)))
