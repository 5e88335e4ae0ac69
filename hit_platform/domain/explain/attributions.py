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
# 2^14 coalitions per background song: their sizes keep one song x 72 countries well under 50 ms
# (MLP) and under a second (isotonic); bench/bench_explain.py measures them.
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


def explain(model, X, background: Background) -> Attributions:
    """Exact interventional Shapley values of a fitted model pipeline (any family, blend and calibration
    included) for songs X (DataFrame with the feature columns, or (n, 14) array in FEATURE_COLUMNS
    order), against the first FAMILY_BACKGROUND[family] songs of `background`.

    ValueError for a malformed X (shape, NaN, infinite); TypeError for a model part with no exact path;
    ArithmeticError if base + sum misses the served value by more than ADDITIVITY_TOLERANCE."""
    X = _features(X, "songs")
    log_odds, maps = take_apart(model)
    family = log_odds.family
    size = min(FAMILY_BACKGROUND[family], background.size)
    Z = background.songs[:size]
    if Z.shape[1] != N_FEATURES or not np.isfinite(Z).all():
        raise ValueError(f"background: expected finite ({background.size}, {N_FEATURES}) songs, got {Z.shape}")
    n, k = len(X), len(COUNTRIES)
    base, phi = _log_odds_attributions(log_odds, X, Z)        # (n, 72), (n, 72, 14)
    value = maps.value(log_odds(X))
    base = maps.slope * base + maps.intercept
    phi *= maps.slope[None, :, None]
    sizes = np.full(k, size)
    if not maps.affine.all():
        enumerated = min(ENUMERATED_BACKGROUND, background.size)
        sizes[~maps.affine] = enumerated
        for i in range(n):
            base[i, ~maps.affine], phi[i, ~maps.affine] = _enumerated(log_odds, maps, X[i], background.songs[:enumerated])
    gap = float(np.abs(base + phi.sum(axis=2) - value).max()) if n else 0.0
    if not gap <= ADDITIVITY_TOLERANCE:
        raise ArithmeticError(f"attributions of the {family} model: base + sum misses the served value by {gap:.3g} "
                              f"(tolerance {ADDITIVITY_TOLERANCE})")
    return Attributions(base=base, phi=phi, value=value, scales=maps.scales, countries=COUNTRIES,
                        features=FEATURE_COLUMNS, background_size=sizes, background_seed=background.seed,
                        family=family, max_gap=gap)


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


def _log_odds_attributions(z: LogOdds | Blend, X: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base (n, 72), phi (n, 72, 14)) of the uncalibrated log-odds."""
    if isinstance(z, Blend):
        base, phi = None, None
        for member, w in zip(z.members, z.weights):
            b, p = _log_odds_attributions(member, X, Z)
            base, phi = (w * b, w * p) if base is None else (base + w * b, phi + w * p)
        return base, phi
    n, k = len(X), len(COUNTRIES)
    base, phi = np.empty((n, k)), np.empty((n, k, N_FEATURES))
    if z.family == "prior":
        base[:] = z.of_prepared(X[:1])[0]
        phi[:] = 0.0
        return base, phi
    Xp, Zp = z.prepare(X), z.prepare(Z)
    est = z.estimator
    if z.family == "linear":
        mean_z = Zp.mean(axis=0)
        base[:] = mean_z @ est.weights_ + est.intercepts_
        phi[:] = np.einsum("nd,dk->nkd", Xp - mean_z, est.weights_)
    elif z.family == "mlp":
        used = used_features(z)  # a feature the model ignores is a null player: left out of the 2^d
        W1u = est.W1_[used]
        hidden_base = np.tanh(Zp @ est.W1_ + est.b1_).mean(axis=0)
        phi[:] = 0.0
        for i in range(n):
            base[i] = hidden_base @ est.W2_ + est.b2_
            if len(used):
                # the pre-activations' constant part (unused features) stays in the background's own
                bh, ph = exact.mlp_hidden(Xp[i, used], Zp[:, used], W1u, est.b1_ + _unused_part(Zp, est.W1_, used))
                phi[i][:, used] = (ph @ est.W2_).T
    elif z.family == "trees":
        explainer = TreeExplainer(est, Zp)
        for i in range(n):
            b, p = explainer.explain_one(Xp[i])
            base[i], phi[i] = b, p.T
    else:  # take_apart admits only the families above
        raise TypeError(f"attributions: no exact path for family {z.family!r}")
    return base, phi


def used_features(z: LogOdds, trees: TreeExplainer | None = None) -> np.ndarray:
    """The features the family's log-odds can depend on (the others are null players: phi exactly 0)."""
    est = z.estimator
    if z.family == "prior":
        return np.array([], dtype=np.intp)
    if z.family == "linear":
        return np.flatnonzero((est.weights_ != 0).any(axis=1))
    if z.family == "mlp":
        return np.flatnonzero((est.W1_ != 0).any(axis=1))
    return trees.used


def _unused_part(Zp: np.ndarray, W1: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(B, H): what the features outside `used` add to each background song's pre-activations (0 when
    they are truly unused: their W1 rows are zero)."""
    unused = np.setdiff1d(np.arange(W1.shape[0]), used)
    return Zp[:, unused] @ W1[unused]


def _enumerated(z: LogOdds | Blend, maps: CountryMaps, x: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base, phi (k, 14)) of the served probability of the non-affine countries: the model's log-odds of
    every coalition's hybrid with each background song, through the calibration, v(S) their mean."""
    parts = [(m, w) for m, w in zip(z.members, z.weights)] if isinstance(z, Blend) else [(z, 1.0)]
    prepared = [(m, w, m.prepare(x[None])[0], m.prepare(Z)) for m, w in parts]
    trees = {id(m): TreeExplainer(m.estimator, Zp) for m, _, _, Zp in prepared if m.family == "trees"}
    used = np.unique(np.concatenate([used_features(m, trees.get(id(m))) for m, _, _, _ in prepared]))
    values = 0.0
    for b in range(len(Z)):
        logits = None
        for m, w, xp, Zp in prepared:
            table = w * _hybrid_log_odds(m, xp, Zp[b], trees.get(id(m)), b, used)
            logits = table if logits is None else logits + table
        values = values + maps.probability(logits)[:, ~maps.affine]
    values = values / len(Z)
    phi = np.zeros((int((~maps.affine).sum()), N_FEATURES))
    if len(used):
        _, phi_used = exact.enumerate_values(values)
        phi[:, used] = phi_used.T
    return values[0].copy(), phi


def _hybrid_log_odds(m: LogOdds, x: np.ndarray, z: np.ndarray, trees: TreeExplainer | None, b: int,
                     used: np.ndarray) -> np.ndarray:
    """(2^u, 72) log-odds of one family for every coalition (of the `used` features) hybrid of x and z."""
    est = m.estimator
    if m.family == "prior":
        return np.tile(m.of_prepared(x[None]), (1 << len(used), 1))
    if m.family == "linear":
        return exact.linear_hybrids(x, z, est.weights_, est.intercepts_, used)
    if m.family == "mlp":
        return exact.mlp_hybrids(x, z, est.W1_, est.b1_, est.W2_, est.b2_, used)
    return trees.hybrid_values(x, b, used)
