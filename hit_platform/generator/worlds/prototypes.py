"""`prototypes`: each region has a few prototype "sounds"; a song charts by how close it is to them.

    raw_c(z) = sum_k amp_ck * exp(-d_ck(z)^2 / 2),   d_ck(z)^2 = sum_f weight_cf (z_f - center_ckf)^2 / width_c^2

Each region draws PROTOTYPES centres at the standardized features of songs drawn like a catalogue (so
they sit where songs are), a weighting of the 14 features that makes a few of them matter most to its
ear (Dirichlet), a width and an amplitude per prototype; its countries take them with a little noise.
No linear or per-feature term: the taste is a sum of radial bumps in the joint feature space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.generator.randomness import stream
from hit_platform.generator.worlds.common import N_FEATURES, REGION_INDEX, CountryTaste, country_rates, reference_songs

PROTOTYPES = 3
EFFECTIVE_DIMS = 4.0  # the weights of a region's ear sum to this (a few features carry most of it)


@dataclass
class PrototypeTaste(CountryTaste):
    center: np.ndarray = None   # (72, K, 14) prototype sounds, standardized
    weight: np.ndarray = None   # (72, 14) how much each feature counts in the distance
    width: np.ndarray = None    # (72,)
    amp: np.ndarray = None      # (72, K)

    LOCATIONS = ("center", "weight", "width")

    def raw(self, Z: np.ndarray) -> np.ndarray:
        # d^2 = sum_f w (z - c)^2 = (z^2) . w - 2 z . (w c) + sum_f w c^2, for all countries at once
        w = self.weight[:, None, :] / self.width[:, None, None] ** 2          # (72, 1, 14)
        wc = (w * self.center).reshape(-1, N_FEATURES)                        # (72K, 14)
        const = (w * self.center ** 2).sum(axis=2).reshape(-1)                # (72K,)
        w_rows = np.repeat(w[:, 0, :], self.center.shape[1], axis=0)          # (72K, 14)
        d2 = (Z ** 2) @ w_rows.T - 2.0 * Z @ wc.T + const
        bumps = np.exp(-0.5 * np.maximum(d2, 0.0)) * self.amp.reshape(-1)
        return bumps.reshape(len(Z), len(self.amp), -1).sum(axis=2)


def make(seed: int) -> PrototypeTaste:
    rng = stream(seed, "world:prototypes")
    songs = reference_songs(seed)
    n_regions = len(REGIONS)
    region_center = songs[rng.integers(0, len(songs), (n_regions, PROTOTYPES))]     # (R, K, 14)
    region_weight = rng.dirichlet(np.full(N_FEATURES, 0.5), n_regions) * EFFECTIVE_DIMS
    region_width = rng.uniform(0.8, 1.3, n_regions)
    region_amp = rng.uniform(0.5, 1.5, (n_regions, PROTOTYPES)) * rng.choice([-1.0, 1.0], (n_regions, PROTOTYPES),
                                                                               p=[0.25, 0.75])
    n = len(COUNTRIES)
    r = REGION_INDEX
    return PrototypeTaste.normalized(
        seed, (1.2, 1.9),
        nominal_rate=country_rates(rng),
        center=region_center[r] + rng.normal(0, 0.25, (n, PROTOTYPES, N_FEATURES)),
        weight=region_weight[r] * np.exp(rng.normal(0, 0.2, (n, N_FEATURES))),
        width=region_width[r] * np.exp(rng.normal(0, 0.1, n)),
        amp=region_amp[r] + rng.normal(0, 0.2, (n, PROTOTYPES)))
