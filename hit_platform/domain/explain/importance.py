"""Global importance per country: how much each audio feature moves a model's answer in each country.

    imp = global_importance(Explainer(model, background), val_ids, val_X, songs=64, seed=0)
    imp.matrix[c, j]    # mean |phi| of feature j in country c over the sampled songs, on imp.scales[c]
    imp.shares()        # each country's row divided by its total: comparable across countries and scales

The songs are a bounded deterministic sample (`importance_sample`): the first `songs` songs of a
`seed`-ed permutation of those with every feature present, so the same split, size and seed give the
same songs, named by id. The attributions are the exact ones of `Explainer` (declared background,
declared scale per country); nothing here approximates them, only the sample is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain.attributions import Explainer, _features
from hit_platform.domain.features import FEATURE_COLUMNS


@dataclass(frozen=True)
class Importance:
    """mean |attribution| per (country, feature): `matrix` (72, 14) in COUNTRIES x FEATURE_COLUMNS order,
    each row on its country's `scales` entry, over `song_ids` (the sample, in its drawn order)."""

    matrix: np.ndarray
    scales: tuple[str, ...]
    song_ids: tuple[str, ...]
    seed: int
    family: str
    background_seed: int
    background_size: tuple[int, ...]  # per country: background songs its value function averages over
    computed_at: datetime | None = None
    countries: tuple[str, ...] = COUNTRIES
    features: tuple[str, ...] = FEATURE_COLUMNS

    @property
    def songs(self) -> int:
        return len(self.song_ids)

    def shares(self) -> np.ndarray:
        """(72, 14): each country's mean |attribution| divided by its sum over features (NaN for a country
        where the model uses no feature: the prior)."""
        total = self.matrix.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self.matrix / np.where(total > 0, total, 1.0), np.nan)

    def feature_shares(self) -> dict[str, float]:
        """Each feature's share averaged over the countries the model uses a feature in (NaN if none)."""
        shares = self.shares()
        used = ~np.isnan(shares).all(axis=1)
        mean = shares[used].mean(axis=0) if used.any() else np.full(len(self.features), np.nan)
        return dict(zip(self.features, map(float, mean)))

    def top_feature(self) -> str | None:
        """The feature with the largest share over all countries; None when the model uses no feature."""
        shares = self.feature_shares()
        finite = {f: s for f, s in shares.items() if np.isfinite(s)}
        return max(finite, key=finite.get) if finite and max(finite.values()) > 0 else None


def importance_sample(X, songs: int, seed: int) -> np.ndarray:
    """Row positions of the sampled songs: the first `songs` of a `seed`-ed permutation of the rows with
    every feature present (all of them when fewer). ValueError when none is complete or songs < 1."""
    values = _features(X, "importance songs", allow_missing=True)
    complete = np.flatnonzero(~np.isnan(values).any(axis=1))
    if songs < 1 or not len(complete):
        raise ValueError(f"importance sample: need songs >= 1 (got {songs}) and songs with every feature present "
                         f"({len(complete)} of {len(values)})")
    return complete[np.random.default_rng(seed).permutation(len(complete))[:songs]]


def global_importance(explainer: Explainer, ids, X, songs: int, seed: int) -> Importance:
    """The explainer's model's mean |attribution| per (country, feature) over `importance_sample(X, songs,
    seed)`; `ids` name X's rows (spotify ids)."""
    ids = np.asarray(ids)
    if len(ids) != len(X):
        raise ValueError(f"importance: {len(ids)} song ids for {len(X)} songs")
    rows = importance_sample(X, songs, seed)
    a = explainer.explain(_features(X, "importance songs", allow_missing=True)[rows])
    return Importance(matrix=np.abs(a.phi).mean(axis=0), scales=tuple(a.scales),
                      song_ids=tuple(str(i) for i in ids[rows]), seed=int(seed), family=a.family,
                      background_seed=int(a.background_seed),
                      background_size=tuple(int(s) for s in a.background_size), computed_at=datetime.now(timezone.utc))
