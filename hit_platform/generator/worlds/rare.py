"""`rare`: the demo world's taste, but hits are rare: each country's share of hits is 0.4-2.5% of the
catalogue instead of 3-30% (strong class imbalance).

A chart still needs its 50 songs a day, so a small catalogue keeps at least the positives that fill it
(`taste.target_positives`): at 6,000 songs about 1.1%, at 20,000 about 0.4%. Its taste, tempo bumps and
thresholds are the additive world's of the same seed; only the rates differ.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hit_platform.domain.countries import COUNTRIES
from hit_platform.generator.randomness import stream
from hit_platform.generator.taste import Taste, make_taste

MIN_RATE, MAX_RATE, GLOBAL_RATE = 0.004, 0.025, 0.03


def make(seed: int) -> Taste:
    rng = stream(seed, "world:rare")
    rates = np.exp(rng.uniform(np.log(MIN_RATE), np.log(MAX_RATE), len(COUNTRIES)))
    return replace(make_taste(seed), nominal_rate=np.concatenate([[GLOBAL_RATE], rates]))
