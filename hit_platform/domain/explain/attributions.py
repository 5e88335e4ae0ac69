"""`explain(model, X, background)`: exact per-country attributions of a fitted model, and the background.

See the package docstring for the value function, the scales and what each path costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import exact
from hit_platform.domain.explain.model_parts import Blend, CountryMaps, LogOdds, take_apart
from hit_platform.domain.explain.tree_shap import TreeExplainer
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.frame import N_FEATURES, feature_matrix

# Background songs each path uses (the first rows of the declared background, itself a seeded random
# sample, so they are a seeded random sample too). The MLP and the isotonic countries enumerate all
# coalitions of the features where the song and each background song differ, a cost linear in B: the
# MLP's enumeration alone measured 15, 23, 41, 69 ms CPU at B = 8, 16, 32, 64 (H = 32, 2 BLAS threads,
# about twice the wall time; 23, 31, 51, 79 at H = 64), so B = 16 keeps one song x 72 countries well
# under 50 ms (bench/bench_explain.py, section 2, has the whole model).
BACKGROUND_SIZE = 64
FAMILY_BACKGROUND = {"prior": 64, "linear": 64, "trees": 64, "mlp": 16, "blend": 16}
ENUMERATED_BACKGROUND = 8   # countries whose calibration is not affine in log-odds (isotonic)
ADDITIVITY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Background:
    """The declared background: `songs` (size, 14) training songs drawn without replacement by `seed`
    from the `drawn_from` complete rows (every feature present) of the songs given."""

    songs: np.ndarray
    seed: int
    drawn_from: int

    @property
    def size(self) -> int:
        return len(self.songs)


@dataclass(frozen=True)
class Attributions:
    """Per song and country: base + phi.sum(-1) == value (within ADDITIVITY_TOLERANCE) on `scales`.

    base (n, 72), phi (n, 72, 14), value (n, 72): the served value on each country's scale, "log-odds"
    (the log-odds of the served probability) or "probability, exact enumeration" (the served
    probability itself, for a calibration that is not affine in log-odds). background_size (72,):
    background songs the country's value function averages over (the first of the declared
    background's); family: the model's family; max_gap: the largest |base + sum - value| seen."""

    base: np.ndarray
    phi: np.ndarray
    value: np.ndarray
    scales: tuple[str, ...]
    countries: tuple[str, ...]
    features: tuple[str, ...]
    background_size: np.ndarray
    background_seed: int
    family: str
    max_gap: float


def background_sample(X_train, size: int = BACKGROUND_SIZE, seed: int = 0) -> Background:
    """`size` training songs drawn without replacement by `seed` among those with every feature present.

    X_train: a DataFrame with the feature columns or an (n, 14) array in FEATURE_COLUMNS order. The
    first k songs of a sample are the sample of size k with the same seed (a permutation's prefix)."""
    values = _features(X_train, "background", allow_missing=True)
    complete = np.flatnonzero(~np.isnan(values).any(axis=1))
    if size < 1 or len(complete) < size:
        raise ValueError(f"background: need {size} songs with every feature present, the training songs have "
                         f"{len(complete)} of {len(values)}")
    chosen = complete[np.random.default_rng(seed).permutation(len(complete))[:size]]
    return Background(songs=np.ascontiguousarray(values[chosen]), seed=int(seed), drawn_from=len(complete))


class Explainer:
    """A fitted model and a background, prepared once (the trees' leaves and the background's side of
    every table): `explain(X)` then costs only the songs' part. Serving holds one per model version.

    Exact interventional Shapley values of a fitted model pipeline (any family, blend and calibration
    included) against the first FAMILY_BACKGROUND[family] songs of `background` (`size` of them if
    given; the countries whose value is enumerated take at most ENUMERATED_BACKGROUND).
    TypeError for a model part with no exact path; ValueError for a malformed background."""

    def __init__(self, model, background: Background, size: int | None = None):
        self.log_odds, self.maps = take_apart(model)
        self.family = self.log_odds.family
        self.background = background
        self.size = min(FAMILY_BACKGROUND[self.family] if size is None else int(size), background.size)
        Z = np.asarray(background.songs, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != N_FEATURES or not np.isfinite(Z).all() or self.size < 1:
            raise ValueError(f"background: expected finite (B, {N_FEATURES}) songs, got shape {Z.shape}")
        self.enumerated_size = min(ENUMERATED_BACKGROUND, self.size)
        self.parts = [_Prepared(m, w, Z[:self.size]) for m, w in _members(self.log_odds)]
        self.enumerated_parts = [] if self.maps.affine.all() else \
            [_Prepared(m, w, Z[:self.enumerated_size]) for m, w in _members(self.log_odds)]

    def explain(self, X) -> Attributions:
        """Attributions of songs X (a DataFrame with the feature columns, or an (n, 14) array in
        FEATURE_COLUMNS order). ValueError for a malformed X (shape, NaN, infinite); ArithmeticError if
        base + sum misses the served value by more than ADDITIVITY_TOLERANCE anywhere."""
        X = _features(X, "songs")
        maps, k = self.maps, len(COUNTRIES)
        base, phi = 0.0, 0.0
        for part in self.parts:  # a blend is linear in its members' log-odds
            b, p = part.attributions(X)
            base, phi = base + part.weight * b, phi + part.weight * p
        base = maps.slope * base + maps.intercept
        phi = phi * maps.slope[None, :, None]
        value = maps.value(self.log_odds(X))
        sizes = np.full(k, self.size)
        if not maps.affine.all():
            sizes[~maps.affine] = self.enumerated_size
            for i in range(len(X)):
                base[i, ~maps.affine], phi[i, ~maps.affine] = _enumerated(self.enumerated_parts, maps, X[i])
        gap = float(np.abs(base + phi.sum(axis=2) - value).max()) if len(X) else 0.0
        if not gap <= ADDITIVITY_TOLERANCE:
            raise ArithmeticError(f"attributions of the {self.family} model: base + sum misses the served value by "
                                  f"{gap:.3g} (tolerance {ADDITIVITY_TOLERANCE})")
        return Attributions(base=base, phi=phi, value=value, scales=maps.scales, countries=COUNTRIES,
                            features=FEATURE_COLUMNS, background_size=sizes, background_seed=self.background.seed,
                            family=self.family, max_gap=gap)


def explain(model, X, background: Background, size: int | None = None) -> Attributions:
    """`Explainer(model, background, size).explain(X)`: for one call; keep an Explainer for many."""
    return Explainer(model, background, size).explain(X)


def _features(X, what: str, allow_missing: bool = False) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        values = feature_matrix(X)
    else:
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != N_FEATURES:
            raise ValueError(f"{what}: expected an (n, {N_FEATURES}) array of features in the order "
                             f"{list(FEATURE_COLUMNS)}, got shape {values.shape}")
        if np.isinf(values).any():
            row, col = np.argwhere(np.isinf(values))[0]
            raise ValueError(f"{what}: row {row} column {FEATURE_COLUMNS[col]!r} is infinite")
    if not allow_missing and np.isnan(values).any():
        row, col = np.argwhere(np.isnan(values))[0]
        raise ValueError(f"{what}: row {row} column {FEATURE_COLUMNS[col]!r} is missing (NaN); attributions "
                         f"need every feature")
    return values


def _members(z: LogOdds | Blend) -> list[tuple[LogOdds, float]]:
    return list(zip(z.members, z.weights)) if isinstance(z, Blend) else [(z, 1.0)]


class _Prepared:
    """One family's log-odds with its background prepared: its exact path for songs."""

    def __init__(self, part: LogOdds, weight: float, Z: np.ndarray):
        self.part, self.weight, self.family = part, weight, part.family
        self.Zp = part.prepare(Z)
        est = part.estimator
        self.trees = TreeExplainer(est, self.Zp) if self.family == "trees" else None
        self.used = _used_features(part, self.trees)
        if self.family == "prior":
            self.base = part.of_prepared(self.Zp[:1])[0]
        elif self.family == "linear":
            self.base = self.Zp.mean(axis=0) @ est.weights_ + est.intercepts_
        elif self.family == "mlp":
            self.base = np.tanh(self.Zp @ est.W1_ + est.b1_).mean(axis=0) @ est.W2_ + est.b2_
            # the pre-activations' part from features the MLP ignores (zero rows of W1: exactly 0)
            ignored = np.setdiff1d(np.arange(N_FEATURES), self.used)
            self.b1 = est.b1_ + self.Zp[:, ignored] @ est.W1_[ignored]
        else:
            self.base = self.trees.base

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(base (n, 72), phi (n, 72, 14)) of this part's uncalibrated log-odds."""
        n, k = len(X), len(COUNTRIES)
        base = np.tile(self.base, (n, 1))
        phi = np.zeros((n, k, N_FEATURES))
        if self.family == "prior" or not len(self.used):
            return base, phi
        Xp, est, used = self.part.prepare(X), self.part.estimator, self.used
        if self.family == "linear":
            phi[:] = np.einsum("nd,dk->nkd", Xp - self.Zp.mean(axis=0), est.weights_)
        elif self.family == "mlp":
            W1u = est.W1_[used]
            for i in range(n):  # a feature the model ignores is a null player: left out of the 2^d
                _, hidden_phi = exact.mlp_hidden(Xp[i, used], self.Zp[:, used], W1u, self.b1)
                phi[i][:, used] = (hidden_phi @ est.W2_).T
        else:
            for i in range(n):
                _, p = self.trees.explain_one(Xp[i])
                phi[i] = p.T
        return base, phi

    def hybrid_log_odds(self, x: np.ndarray, b: int, players: np.ndarray) -> np.ndarray:
        """(2^p, 72): this part's log-odds of every coalition (of the `players`) hybrid of the prepared
        song x and background song b."""
        est, z = self.part.estimator, self.Zp[b]
        if self.family == "prior":
            return np.tile(self.base, (1 << len(players), 1))
        if self.family == "linear":
            return exact.linear_hybrids(x, z, est.weights_, est.intercepts_, players)
        if self.family == "mlp":
            return exact.mlp_hybrids(x, z, est.W1_, est.b1_, est.W2_, est.b2_, players)
        return self.trees.hybrid_values(x, b, players)


def _used_features(z: LogOdds, trees: TreeExplainer | None) -> np.ndarray:
    """The features the family's log-odds can depend on (the others are null players: phi exactly 0)."""
    est = z.estimator
    if z.family == "prior":
        return np.array([], dtype=np.intp)
    if z.family == "linear":
        return np.flatnonzero((est.weights_ != 0).any(axis=1))
    if z.family == "mlp":
        return np.flatnonzero((est.W1_ != 0).any(axis=1))
    return trees.used


def _enumerated(parts: list[_Prepared], maps: CountryMaps, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base, phi (k, 14)) of the served probability of the non-affine countries: the model's log-odds of
    every coalition's hybrid with each background song, through the calibration, v(S) their mean."""
    players = np.unique(np.concatenate([p.used for p in parts]))
    prepared = [p.part.prepare(x[None])[0] for p in parts]
    B, k = len(parts[0].Zp), int((~maps.affine).sum())
    # a player where x equals background song b (in every part's features) is a null player of b's game:
    # b's hybrids are enumerated over the others only, songs differing in the same players together
    differs = np.zeros((B, len(players)), dtype=bool)
    for p, xp in zip(parts, prepared):
        differs |= p.Zp[:, players] != xp[players]
    patterns, group = np.unique(differs, axis=0, return_inverse=True) if len(players) else (differs[:1], np.zeros(B))
    base, phi = np.zeros(k), np.zeros((k, N_FEATURES))
    for g, keep in enumerate(patterns):
        own, values = players[keep], 0.0
        for b in np.flatnonzero(np.ravel(group) == g):
            logits = sum(p.weight * p.hybrid_log_odds(xp, b, own) for p, xp in zip(parts, prepared))
            values = values + maps.probability(logits)[:, ~maps.affine]
        base += values[0]
        if len(own):
            _, phi_own = exact.enumerate_values(values)
            phi[:, own] += phi_own.T
    return base / B, phi / B
