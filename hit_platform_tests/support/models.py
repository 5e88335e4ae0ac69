"""Tests of hit_platform.domain.models on small synthetic data (no lake needed).

`synthetic_split` makes songs with realistic feature ranges and a non-linear
per-country truth (regional tempo bumps, a danceability x energy threshold,
a speechiness step); `trained_candidates` trains every family once per test
session and is shared by the test modules.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES, REGION_OF, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS

N_TRAIN, N_VAL, N_TEST = 2000, 600, 400


def synthetic_features(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {
        "danceability": rng.beta(5, 3, n),
        "energy": rng.beta(5, 3, n),
        "key": rng.integers(-1, 12, n).astype(float),
        "loudness": np.clip(rng.normal(-7, 2.5, n), -30, 0),
        "mode": rng.integers(0, 2, n).astype(float),
        "speechiness": np.clip(np.exp(rng.normal(np.log(0.07), 0.75, n)), 0.02, 0.95),
        "acousticness": rng.beta(0.6, 1.5, n),
        "instrumentalness": np.clip(rng.exponential(0.03, n), 0, 1),
        "liveness": rng.beta(2, 10, n),
        "valence": rng.beta(2.5, 2.5, n),
        "tempo": np.clip(rng.normal(120, 25, n), 55, 210),
        "time_signature": rng.choice([3.0, 4.0, 5.0], n, p=[0.08, 0.9, 0.02]),
        "is_explicit": (rng.random(n) < 0.3).astype(float),
        "duration_ms": np.round(np.exp(rng.normal(np.log(200_000), 0.2, n))),
    }
    return pd.DataFrame({c: cols[c] for c in FEATURE_COLUMNS})


def synthetic_truth(X: pd.DataFrame) -> np.ndarray:
    """(n, 72) true probabilities: a weak linear part and strong non-linear, region-shaped parts."""
    rng = np.random.default_rng(12345)  # the "world": fixed whatever the songs
    region_tempo = {r: t for r, t in zip(REGIONS, (96, 122, 128, 104, 132, 112, 100))}
    region_of = [REGION_OF[c] for c in COUNTRIES]
    tempo_center = np.array([region_tempo[r] for r in region_of]) + rng.normal(0, 2, 72)
    lin = rng.normal(0, 0.3, (3, 72))
    base = rng.uniform(-3.0, -1.5, 72)
    z = np.column_stack([(X["valence"] - 0.5) / 0.2, (X["loudness"] + 7) / 2.5, (X["acousticness"] - 0.3) / 0.3])
    tempo_bump = 2.5 * np.exp(-0.5 * ((X["tempo"].to_numpy()[:, None] - tempo_center) / 9.0) ** 2)
    dance_energy = 1.5 * ((X["danceability"] > 0.68) & (X["energy"] > 0.62)).to_numpy()[:, None]
    speech = np.where([r in ("latam", "anglo") for r in region_of], 1.2, -0.8) * \
        (X["speechiness"] > 0.18).to_numpy()[:, None]
    logit = base + z @ lin + tempo_bump + dance_energy + speech
    return 1.0 / (1.0 + np.exp(-logit))


def synthetic_split(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(X, Y, P_true) for n songs."""
    X = synthetic_features(n, seed)
    P = synthetic_truth(X)
    Y = np.random.default_rng(seed + 1).random(P.shape) < P
    return X, Y, P


@lru_cache(maxsize=1)
def data() -> dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    return {"train": synthetic_split(N_TRAIN, 1), "validation": synthetic_split(N_VAL, 2),
            "test": synthetic_split(N_TEST, 3)}


@lru_cache(maxsize=1)
def trained_candidates() -> dict:
    """Every family trained once with train_candidates on the synthetic data: {family: CandidateResult}."""
    from hit_platform.domain.models import train_candidates

    (Xt, Yt, _), (Xv, Yv, _) = data()["train"], data()["validation"]
    return {r.family: r for r in train_candidates(Xt, Yt, Xv, Yv, seed=0)}
