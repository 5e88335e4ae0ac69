"""`mixture`: every structure of the zoo at once. A chart's taste is the sum of the prototypes,
interactions, idiosyncratic and sparse worlds' tastes of the same seed, each weighed WEIGHT (so the
logits spread about as much as in any one of them), with the additive world's shares of hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.generator.worlds import idiosyncratic, interactions, prototypes, sparse
from hit_platform.generator.worlds.common import country_rates
from hit_platform.generator.randomness import stream

COMPONENTS = (prototypes, interactions, idiosyncratic, sparse)
WEIGHT = 1 / np.sqrt(len(COMPONENTS))


@dataclass
class MixtureTaste:
    components: tuple      # the component worlds' tastes
    nominal_rate: np.ndarray

    def shape(self, X: np.ndarray) -> np.ndarray:
        return WEIGHT * sum(c.shape(X) for c in self.components)

    def shifted(self, shift) -> MixtureTaste:
        return MixtureTaste(tuple(c.shifted(shift) for c in self.components), self.nominal_rate)

    @property
    def ignored_features(self) -> tuple[str, ...]:
        ignored = [set(c.ignored_features) for c in self.components]
        return tuple(f for f in self.components[0].ignored_features if all(f in i for i in ignored))


def make(seed: int) -> MixtureTaste:
    return MixtureTaste(tuple(m.make(seed) for m in COMPONENTS), country_rates(stream(seed, "world:mixture")))
