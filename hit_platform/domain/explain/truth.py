"""The truth's attributions, and how a model's compare with them (issue 31, part 5).

    truth = function_attributions(oracle, X, background, model_a.scales, model_a.background_size,
                                  players=features_it_reads)
    c = compare(model_a, truth, ignored=oracle.ignored_features)
    c.rank_correlation, c.sign_agreement, c.ignored_share        # (72,) each, one per country

`function_attributions` explains a black box f: (n, 14) features -> (n, 72) probabilities (the generator's
oracle, passed in by the caller: nothing here imports the generator) with the model's own value function:
interventional, v_c(S) = mean_b g_c(f(x on S, z_b elsewhere))_c over the first `sizes[c]` songs of the same
declared background, exact Shapley values by enumerating every coalition (2^14, or 2^p of the `players`
the caller declares f may read: a feature f never reads is a null player, its attribution exactly 0).

The common scale is the model's, country by country: g_c = log-odds (log q - log(1 - q)) where the model's
attributions are on "log-odds", g_c = the probability itself where they are on "probability, exact
enumeration" (an isotonic country). Both sides then explain the same kind of number, against the same
background songs, by the same value function.

Comparisons, per country c (the model's attributions a, the truth's t, over the songs explained):
- rank_correlation: Spearman's rho between mean_i |a_ic| and mean_i |t_ic| over the 14 features (values
  within ADDITIVITY_TOLERANCE tie, ties take their mean rank; a side that is constant ranks nothing: 0).
  When the truth ignores features they tie at 0, and a model that gives them tiny but distinct attributions
  cannot reach 1: with 10 of 14 ignored, the model's 10 smallest and the 4 read ranked right, rho is 0.80. `rank_correlation_read` is rho over the features the truth reads,
  so the ranking and the ignoring are read apart (the ignoring is `ignored_share`).
- sign_agreement: the share of songs whose top feature by the model (largest |a_icj|) has the same
  non-zero sign in the truth's attribution (a top feature the truth gives exactly 0 disagrees).
- ignored_share: sum over songs and ignored features of |a_icj| / sum over songs and all features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import exact
from hit_platform.domain.explain.attributions import (ADDITIVITY_TOLERANCE, Attributions, Background,
                                                      _features)
from hit_platform.domain.explain.model_parts import LOG_ODDS, PROBABILITY
from hit_platform.domain.features import FEATURE_COLUMNS

N = len(FEATURE_COLUMNS)
# hybrid rows per call of the function (several background songs' 2^p coalitions at once)
_ROWS_PER_CALL = 1 << 16


def function_attributions(f, X, background: Background, scales, sizes, players=None,
                          family: str = "function") -> Attributions:
    """Exact attributions of a black-box probability function f ((n, 14) -> (n, 72)) for songs X.

    scales (72,): each country's scale (LOG_ODDS or PROBABILITY), sizes (72,): each country's background
    songs (the first sizes[c] of `background`), both usually the model's own (`Attributions.scales`,
    `.background_size`). players: the feature names (or indices) f may read; the others get exactly 0 and
    are left out of the enumeration (default: all 14). ValueError for malformed input or a probability
    outside (0, 1) on the log-odds scale; ArithmeticError if base + sum misses the value by more than
    ADDITIVITY_TOLERANCE."""
    X = _features(X, "songs")
    k = len(COUNTRIES)
    scales, sizes = tuple(scales), np.asarray(sizes, dtype=np.intp)
    if len(scales) != k or not set(scales) <= {LOG_ODDS, PROBABILITY}:
        raise ValueError(f"scales: expected {k} of {LOG_ODDS!r} / {PROBABILITY!r}, got {sorted(set(scales))} "
                         f"({len(scales)})")
    if sizes.shape != (k,):
        raise ValueError(f"sizes: expected {k} background sizes, got shape {sizes.shape}")
    if sizes.min() < 1 or sizes.max() > background.size:
        raise ValueError(f"sizes: expected {k} background sizes within 1..{background.size}, got "
                         f"{sizes.min()}..{sizes.max()}")
    used = _players(players)
    log_odds = np.array([s == LOG_ODDS for s in scales])
    Z = np.asarray(background.songs, dtype=np.float64)[:sizes.max()]
    base, phi, value = np.empty((len(X), k)), np.zeros((len(X), k, N)), np.empty((len(X), k))
    for i in range(len(X)):
        values = _coalition_values(f, X[i], Z, used, log_odds, sizes, f"song {i}")
        base[i], phi_used = exact.enumerate_values(values)
        phi[i][:, used] = phi_used.T
        value[i] = values[-1]
    gap = float(np.abs(base + phi.sum(axis=2) - value).max()) if len(X) else 0.0
    if not gap <= ADDITIVITY_TOLERANCE:
        raise ArithmeticError(f"attributions of the {family}: base + sum misses its value by {gap:.3g} "
                              f"(tolerance {ADDITIVITY_TOLERANCE})")
    return Attributions(base=base, phi=phi, value=value, scales=scales, countries=COUNTRIES,
                        features=FEATURE_COLUMNS, background_size=sizes.copy(), background_seed=background.seed,
                        family=family, max_gap=gap)


def _players(players) -> np.ndarray:
    if players is None:
        return np.arange(N)
    out = []
    for p in players:
        if isinstance(p, str):
            if p not in FEATURE_COLUMNS:
                raise ValueError(f"players: unknown feature {p!r}, expected some of {list(FEATURE_COLUMNS)}")
            out.append(FEATURE_COLUMNS.index(p))
        else:
            out.append(int(p))
    return np.unique(np.array(out, dtype=np.intp))


def _coalition_values(f, x: np.ndarray, Z: np.ndarray, used: np.ndarray, log_odds: np.ndarray,
                      sizes: np.ndarray, where: str) -> np.ndarray:
    """(2^p, 72): v_c(S) for every coalition S of the players, each country averaged over its own first
    sizes[c] background songs (running sums, read off as each size is reached)."""
    k = len(COUNTRIES)
    M = exact.masks(len(used))
    per_call = max(1, _ROWS_PER_CALL // len(M))
    total, values = np.zeros((len(M), k)), np.empty((len(M), k))
    for start in range(0, len(Z), per_call):
        block = Z[start:start + per_call]
        rows = np.repeat(block[:, None, :], len(M), axis=1)        # (b, 2^p, 14)
        rows[:, :, used] = np.where(M[None], x[used], rows[:, :, used])
        q = np.asarray(f(rows.reshape(-1, N)), dtype=np.float64)
        if q.shape != (len(rows) * len(M), k):
            raise ValueError(f"{where}: the function answered shape {q.shape}, expected ({len(rows) * len(M)}, {k})")
        q = q.reshape(len(block), len(M), k)
        for j in range(len(block)):
            total += _on_scale(q[j], log_odds, where)
            b = start + j + 1
            reached = sizes == b
            values[:, reached] = total[:, reached] / b
    return values


def _on_scale(q: np.ndarray, log_odds: np.ndarray, where: str) -> np.ndarray:
    out = q.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, log_odds] = np.log(q[:, log_odds]) - np.log1p(-q[:, log_odds])
    if not np.isfinite(out).all():
        row, col = np.argwhere(~np.isfinite(out))[0]
        raise ValueError(f"{where}: the function's probability {float(q[row, col])!r} for {COUNTRIES[col]} (coalition "
                         f"{row}) has no finite {'log-odds' if log_odds[col] else 'value'}")
    return out


@dataclass(frozen=True)
class TruthComparison:
    """A model's attributions against the truth's, per country (see the module docstring)."""

    countries: tuple[str, ...]
    songs: int
    rank_correlation: np.ndarray        # (72,) over the 14 features
    rank_correlation_read: np.ndarray   # (72,) over the features the truth reads
    sign_agreement: np.ndarray          # (72,)
    ignored_share: np.ndarray | None    # (72,), None when the truth reads every feature
    ignored: tuple[str, ...]

    def summary(self) -> dict:
        """Per comparison: the median over countries and the worst country with its figure."""
        out = {}
        for name, worst in (("rank_correlation", np.argmin), ("rank_correlation_read", np.argmin),
                            ("sign_agreement", np.argmin), ("ignored_share", np.argmax)):
            v = getattr(self, name)
            if v is None:
                continue
            w = int(worst(v))
            out[name] = {"median": float(np.median(v)), "worst": float(v[w]), "worst_country": self.countries[w]}
        return out


def compare(model: Attributions, truth: Attributions, ignored=()) -> TruthComparison:
    """Per country: rank correlation of mean |attribution| per feature, top-feature sign agreement and the
    ignored features' share of the model's total |attribution|. Both must explain the same songs on the same
    scales against the same background (ValueError naming what differs)."""
    if model.phi.shape != truth.phi.shape or model.countries != truth.countries or model.features != truth.features:
        raise ValueError(f"compare: the model's attributions {model.phi.shape} and the truth's {truth.phi.shape} "
                         "are not of the same songs, countries and features")
    if model.scales != truth.scales:
        c = next(i for i, (a, b) in enumerate(zip(model.scales, truth.scales)) if a != b)
        raise ValueError(f"compare: {model.countries[c]} is on {model.scales[c]!r} for the model, "
                         f"{truth.scales[c]!r} for the truth")
    if not np.array_equal(model.background_size, truth.background_size) or \
            model.background_seed != truth.background_seed:
        raise ValueError("compare: the model and the truth were explained against different backgrounds "
                         f"(sizes {sorted(set(model.background_size.tolist()))} vs "
                         f"{sorted(set(truth.background_size.tolist()))}, seeds {model.background_seed} vs "
                         f"{truth.background_seed})")
    if len(model.phi) == 0:
        raise ValueError("compare: no songs")
    ignored_idx = _players(ignored) if len(ignored) else np.array([], dtype=np.intp)
    read = np.setdiff1d(np.arange(N), ignored_idx)
    a, t = np.abs(model.phi).mean(axis=0), np.abs(truth.phi).mean(axis=0)   # (72, 14)
    rho = np.array([_spearman(a[c], t[c]) for c in range(len(a))])
    rho_read = np.array([_spearman(a[c, read], t[c, read]) for c in range(len(a))])
    top = np.abs(model.phi).argmax(axis=2)                                    # (n, 72)
    m_top = np.take_along_axis(model.phi, top[..., None], axis=2)[..., 0]
    t_top = np.take_along_axis(truth.phi, top[..., None], axis=2)[..., 0]
    agree = (np.sign(m_top) == np.sign(t_top)) & (t_top != 0)
    share = None
    if len(ignored_idx):
        total = np.abs(model.phi).sum(axis=(0, 2))
        share = np.abs(model.phi[:, :, ignored_idx]).sum(axis=(0, 2)) / np.where(total > 0, total, 1.0)
    return TruthComparison(countries=model.countries, songs=len(model.phi), rank_correlation=rho,
                           rank_correlation_read=rho_read, sign_agreement=agree.mean(axis=0), ignored_share=share,
                           ignored=tuple(FEATURE_COLUMNS[j] for j in ignored_idx))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    # attributions are exact to ADDITIVITY_TOLERANCE: values closer than that are ties, not an order
    a, b = np.round(a / ADDITIVITY_TOLERANCE), np.round(b / ADDITIVITY_TOLERANCE)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])
