"""What every world of the zoo shares: the song's 14 features as one matrix, their standard scale, the
charts' shares of hits, and a taste made of per-country parameters.

A world's taste is a pure function of a song's features: `shape(X)` takes an (n, 14) float matrix in
`features.FEATURE_COLUMNS` order and gives logit p - base for every chart of ALL_CHARTS (n, 73). The
additive world (`taste.Taste`) is the demo's; the others subclass `CountryTaste` below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass, fields, replace
from typing import ClassVar

import numpy as np

from hit_platform.domain.countries import COUNTRIES, REGION_OF, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.generator.randomness import stream
from hit_platform.generator.taste import region_rows

N_FEATURES = len(FEATURE_COLUMNS)
COLUMN = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
REGION_INDEX = np.array([list(REGIONS).index(REGION_OF[c]) for c in COUNTRIES])  # (72,) a country's region

# A population centre and scale per feature (after log of speechiness and duration, and time_signature
# as "not 4/4"), so a standardized feature is about N(0, 1) whatever the catalogue's size.
_CENTER = {"danceability": 0.62, "energy": 0.62, "key": 5.3, "loudness": -7.0, "mode": 0.57,
           "speechiness": np.log(0.07), "acousticness": 0.25, "instrumentalness": 0.05, "liveness": 0.17,
           "valence": 0.5, "tempo": 121.0, "time_signature": 0.08, "is_explicit": 0.29,
           "duration_ms": np.log(198_000)}
_SCALE = {"danceability": 0.13, "energy": 0.16, "key": 3.5, "loudness": 2.3, "mode": 0.5, "speechiness": 0.75,
          "acousticness": 0.30, "instrumentalness": 0.15, "liveness": 0.10, "valence": 0.20, "tempo": 27.0,
          "time_signature": 0.27, "is_explicit": 0.45, "duration_ms": 0.2}
CENTER = np.array([_CENTER[c] for c in FEATURE_COLUMNS])
SCALE = np.array([_SCALE[c] for c in FEATURE_COLUMNS])

MIN_RATE, MAX_RATE, GLOBAL_RATE = 0.03, 0.30, 0.10
REFERENCE_SONGS = 4000  # songs a world's strength is measured on (drawn like a catalogue, never dumped)


def feature_matrix(features: dict[str, np.ndarray], is_explicit: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """A catalogue's songs as the (n, 14) float64 matrix every taste reads, in FEATURE_COLUMNS order."""
    columns = {**features, "is_explicit": is_explicit, "duration_ms": duration_ms}
    return np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in FEATURE_COLUMNS])


def check_matrix(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise ValueError(f"song features: expected an (n, {N_FEATURES}) matrix in FEATURE_COLUMNS order "
                         f"{list(FEATURE_COLUMNS)}, got shape {X.shape}")
    return X


def standardized(X: np.ndarray) -> np.ndarray:
    """(n, 14): each feature on its population scale (log speechiness and duration, time_signature as not-4/4)."""
    T = X.copy()
    for name in ("speechiness", "duration_ms"):
        T[:, COLUMN[name]] = np.log(T[:, COLUMN[name]])
    T[:, COLUMN["time_signature"]] = (T[:, COLUMN["time_signature"]] != 4).astype(float)
    return (T - CENTER) / SCALE


def reference_songs(seed: int) -> np.ndarray:
    """Standardized features of REFERENCE_SONGS songs drawn like a catalogue (its own stream)."""
    from hit_platform.generator.songs import audio_features

    features, explicit, duration = audio_features(stream(seed, "world_reference"), REFERENCE_SONGS)
    return standardized(feature_matrix(features, explicit, duration))


def country_rates(rng: np.random.Generator, sharing: float = 1.0) -> np.ndarray:
    """(73,) nominal shares of hits: the global chart's, then each country's around its region's
    (`sharing` < 1 draws more of each country's own)."""
    region = rng.uniform(np.log(MIN_RATE * 1.3), np.log(MAX_RATE / 1.3), len(REGIONS))[REGION_INDEX]
    own = rng.uniform(np.log(MIN_RATE * 1.3), np.log(MAX_RATE / 1.3), len(COUNTRIES))
    log_rate = sharing * region + (1 - sharing) * own + rng.normal(0, 0.25, len(COUNTRIES))
    return np.concatenate([[GLOBAL_RATE], np.clip(np.exp(log_rate), MIN_RATE, MAX_RATE)])


@dataclass
class CountryTaste(ABC):
    """A taste given by per-country parameters: every field but the class's FIXED ones has one row per
    country (72, COUNTRIES order). `raw(Z)` is each country's taste of standardized songs, `scale` sets
    its strength; the global chart listens like the average country.

    A TasteShift moves a region's rows of every float field toward another region's mean (or reverses
    them about zero, LOCATIONS kept where they are); FIXED fields (shared structure, feature indices)
    never move."""

    scale: np.ndarray          # (72,) strength per country, set so its logits spread about STRENGTH_SD
    nominal_rate: np.ndarray   # (73,) target share of positives per chart (ALL_CHARTS order)

    FIXED: ClassVar[tuple[str, ...]] = ()
    LOCATIONS: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def raw(self, Z: np.ndarray) -> np.ndarray:
        """(n, 72) each country's taste of standardized songs, before `scale` (each world its own)."""

    def used_features(self) -> set[str]:
        """The features some country's taste reads."""
        return set(FEATURE_COLUMNS)

    @property
    def ignored_features(self) -> tuple[str, ...]:
        used = self.used_features()
        return tuple(c for c in FEATURE_COLUMNS if c not in used)

    def shape(self, X: np.ndarray) -> np.ndarray:
        """logit p - base for every (song, chart): (n, 73), ALL_CHARTS order."""
        country = self.raw(standardized(check_matrix(X))) * self.scale
        return np.column_stack([country.mean(axis=1), country])

    def shifted(self, shift) -> CountryTaste:
        """The taste after a TasteShift (see the class docstring)."""
        rows = shift.chart_rows - 1  # ALL_CHARTS rows -> country rows
        moved = {}
        for f in fields(self):
            if f.name in self.FIXED or f.name == "nominal_rate":
                continue
            values = np.array(getattr(self, f.name), dtype=np.float64)
            own = values[rows].mean(axis=0)
            if shift.toward is not None:
                target = values[region_rows(shift.toward) - 1].mean(axis=0)
            else:
                target = own if f.name in self.LOCATIONS else -own
            values[rows] += shift.strength * (target - own)
            moved[f.name] = values
        return replace(self, **moved)

    @classmethod
    def normalized(cls, seed: int, strength: tuple[float, float], **params) -> CountryTaste:
        """The taste with each country's `scale` set so its logits over reference songs have a standard
        deviation drawn uniformly in `strength` (how sharp the world's tastes are)."""
        rng = stream(seed, f"world_strength:{cls.__name__}")
        unit = cls(scale=np.ones(len(COUNTRIES)), **params)
        sd = unit.raw(reference_songs(seed)).std(axis=0)
        target = rng.uniform(*strength, len(COUNTRIES))
        return replace(unit, scale=target / np.maximum(sd, 1e-9))
