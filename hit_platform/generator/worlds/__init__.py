"""The zoo of worlds: each a different structure of taste over a song's 14 features.

    taste = make_taste_of("sparse", seed)        # shape(X) -> (n, 73) logits - base, ALL_CHARTS order
    taste.ignored_features                       # the features no chart's taste reads

| world           | the structure of taste                                                         |
|-----------------|--------------------------------------------------------------------------------|
| `additive`      | the demo's (default): regional linear tastes, a tempo bump, a few thresholds   |
| `prototypes`    | a few prototype "sounds" per region; a song charts by its distance to them     |
| `interactions`  | products of 2-4 features only (soft XORs): high-order interactions             |
| `idiosyncratic` | each country its own linear taste, bump, step and pair; little regional sharing |
| `sparse`        | 4 features decide everything, the other 10 are ignored                          |
| `rare`          | the additive taste with hits rare: 0.4-2.5% of songs per country (imbalance)    |
| `mixture`       | the sum of the prototypes, interactions, idiosyncratic and sparse tastes        |

Each world draws its taste from its own random streams of the seed, so the catalogue, the charts'
schedule and everything else of the world stay as they are; only which songs chart where changes.
"""

from __future__ import annotations

from collections.abc import Callable

from hit_platform.generator.taste import make_taste
from hit_platform.generator.worlds import idiosyncratic, interactions, mixture, prototypes, rare, sparse

DEFAULT_WORLD = "additive"
WORLDS: dict[str, Callable] = {
    "additive": make_taste,
    "prototypes": prototypes.make,
    "interactions": interactions.make,
    "idiosyncratic": idiosyncratic.make,
    "sparse": sparse.make,
    "rare": rare.make,
    "mixture": mixture.make,
}


def make_taste_of(world: str, seed: int):
    """The hidden taste of `world` for `seed` (a `taste.Taste` or a `common.CountryTaste`)."""
    if world not in WORLDS:
        raise ValueError(f"world {world!r}: expected one of {list(WORLDS)}")
    return WORLDS[world](seed)
