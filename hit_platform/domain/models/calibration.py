"""Per-country calibration: how far predicted probabilities are from observed rates, and a fix.

    ece = expected_calibration_error(Y, P)          # (72,) on any split
    curve = reliability(Y, P)                       # mean predicted vs observed rate per bin
    choice = choose_calibration(P_val, Y_val)       # "none" | "platt" | "isotonic", by validation log loss
    model = calibrated(pipeline, choice.calibration)

Bins hold equal numbers of songs (quantiles of each country's predictions): most
songs have a small probability in most countries, so equal-width bins would put
nearly all of them in the first bin and say nothing about the rest.

A calibration is chosen like a hyper-parameter on the validation split, with
two-fold cross-fitting so that no song scores a calibration fitted on itself;
the one kept is then fitted on the whole validation split. The test split stays
untouched for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression

from hit_platform.domain.countries import COUNTRIES, REGION_OF

# "per_country": each country its own of the three, by its two-fold cross-fitted log loss on the data
# the map is fitted to (so a refit on the same data chooses the same)
SINGLE: tuple[str, ...] = ("none", "platt", "isotonic")
# Pooled: one Platt map for every country ("temperature": a slope and a shift of the logits), or one per
# region. A country's validation songs hold 20-100 hits, too few to see a bias every country shares
# (a model too timid everywhere); 72 countries together see it.
POOLED: tuple[str, ...] = ("temperature", "region")
METHODS: tuple[str, ...] = (*SINGLE, *POOLED, "per_country")
DEFAULT_BINS = 10
_EPS = 1e-6  # probabilities are kept this far from 0 and 1 (the logit and the log stay finite)


def _binned(Y: np.ndarray, P: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bins, countries) mean prediction, observed rate and song count, bins by each country's quantiles."""
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    n, k = P.shape
    order = np.argsort(P, axis=0, kind="stable")
    edges = np.linspace(0, n, bins + 1).round().astype(int)
    mean_p = np.full((bins, k), np.nan)
    observed = np.full((bins, k), np.nan)
    counts = np.diff(edges)[:, None].repeat(k, axis=1)
    Ps, Ys = np.take_along_axis(P, order, axis=0), np.take_along_axis(Y, order, axis=0)
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        if hi > lo:
            mean_p[b] = Ps[lo:hi].mean(axis=0)
            observed[b] = Ys[lo:hi].mean(axis=0)
    return mean_p, observed, counts


def expected_calibration_error(Y, P, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Per country: the song-weighted mean |mean prediction - observed rate| over equal-mass bins."""
    mean_p, observed, counts = _binned(Y, P, bins)
    gap = np.nan_to_num(np.abs(mean_p - observed))
    return (gap * counts).sum(axis=0) / counts.sum(axis=0)


def calibration_noise_floor(P, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Per country: the ECE a perfectly calibrated model still shows on these songs, from sampling
    alone. A bin of m songs has an observed rate whose spread around its mean prediction is
    sqrt(sum p(1 - p)) / m, and E|N(0, s)| = s sqrt(2 / pi). On a few thousand songs it is about
    as large as a real model's ECE (0.011 of the demo champion's 0.012 on its test split), so a
    gate judges the excess over it, not the ECE itself."""
    P = np.asarray(P, dtype=np.float64)
    n, k = P.shape
    Ps = np.sort(P, axis=0)
    edges = np.linspace(0, n, bins + 1).round().astype(int)
    floor = np.zeros(k)
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        if hi > lo:
            spread = np.sqrt((Ps[lo:hi] * (1 - Ps[lo:hi])).sum(axis=0)) / (hi - lo)
            floor += (hi - lo) / n * spread * np.sqrt(2 / np.pi)
    return floor


def excess_calibration_error(Y, P, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Per country: ECE minus its noise floor (about 0 for a calibrated model, whatever the songs)."""
    return expected_calibration_error(Y, P, bins) - calibration_noise_floor(P, bins)


def pooled_calibration_error(Y, P, bins: int = DEFAULT_BINS) -> tuple[float, float]:
    """(ECE, its excess over twice its noise floor) of every (song, country) prediction taken together,
    in equal-mass bins of all of them: what no single country's few hits can show, a bias they all share.

    The floor counts each song once: a song's 72 labels move together (a hit charts in many countries),
    so they are not 72 independent draws. Per bin, the spread of its mean residual is the song-clustered
    (sandwich) one, sqrt(sum over songs of (the song's residuals in the bin, summed)^2) / songs-countries
    in the bin, and E|N(0, s)| = s sqrt(2 / pi). Counted as independent draws, the floor of a few hundred
    test songs was half the error sampling alone gives, and calibrated models were refused. The excess is
    over twice the floor: the floor is sampling's mean, and one sample of a few hundred songs, all
    leaning the same way, reaches twice it (a calibrated model on 300 songs: ECE up to 2.7 floors)."""
    Y, P = np.asarray(Y, dtype=np.float64), np.asarray(P, dtype=np.float64)
    n, k = P.shape
    flat = P.ravel()
    order = np.argsort(flat, kind="stable")
    edges = np.linspace(0, flat.size, bins + 1).round().astype(int)
    which = np.empty(flat.size, dtype=np.int64)
    which[order] = np.searchsorted(edges, np.arange(flat.size), side="right") - 1
    song = np.repeat(np.arange(n), k)
    residual = Y.ravel() - flat
    ece = floor = 0.0
    for b in range(bins):
        inside = which == b
        m = int(inside.sum())
        if m == 0:
            continue
        ece += m / flat.size * abs(residual[inside].mean())
        per_song = np.bincount(song[inside], residual[inside], minlength=n)
        floor += m / flat.size * np.sqrt((per_song ** 2).sum()) / m * np.sqrt(2 / np.pi)
    return float(ece), float(ece - 2 * floor)


@dataclass(frozen=True)
class Reliability:
    """A reliability curve per country: (bins, countries) arrays."""

    mean_predicted: np.ndarray
    observed_rate: np.ndarray
    songs: np.ndarray


def reliability(Y, P, bins: int = DEFAULT_BINS) -> Reliability:
    return Reliability(*_binned(Y, P, bins))


def _logit(P: np.ndarray) -> np.ndarray:
    P = np.clip(P, _EPS, 1 - _EPS)
    return np.log(P) - np.log1p(-P)


def mean_log_loss(Y, P) -> float:
    P = np.clip(np.asarray(P, dtype=np.float64), _EPS, 1 - _EPS)
    Y = np.asarray(Y, dtype=bool)
    return float(-np.where(Y, np.log(P), np.log1p(-P)).mean())


class CountryCalibration(BaseEstimator):
    """A monotone map per country from a model's probability to a calibrated one.

    method "platt": sigmoid(a * logit(p) + b), a and b per country (Newton, all countries at once);
    "isotonic": a non-decreasing step function per country (sklearn's isotonic regression);
    "none": the identity."""

    def __init__(self, method: str = "none"):
        self.method = method

    def fit(self, P, Y) -> CountryCalibration:
        if self.method not in METHODS:
            raise ValueError(f"CountryCalibration.method={self.method!r}: expected one of {list(METHODS)}")
        P = np.asarray(P, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if P.shape != Y.shape or P.ndim != 2 or len(P) == 0:
            raise ValueError(f"CountryCalibration.fit: P {P.shape} and Y {Y.shape} must be the same (songs, countries)")
        if self.method == "per_country":
            losses = cross_fitted_log_loss(P, Y, SINGLE)  # (methods, countries)
            best = losses.argmin(axis=0)
            # a calibration must pay for itself in each country too
            keep_none = losses[0] <= losses[best, np.arange(P.shape[1])] + _MIN_GAIN
            self.country_methods_ = [SINGLE[0] if keep_none[j] else SINGLE[best[j]] for j in range(P.shape[1])]
            self.parts_ = {m: CountryCalibration(m).fit(P, Y) for m in set(self.country_methods_) - {"none"}}
        if self.method == "platt":
            self.a_, self.b_ = _fit_platt(_logit(P), Y)
        elif self.method in POOLED:
            self.a_, self.b_ = np.ones(P.shape[1]), np.zeros(P.shape[1])
            for cols in _pools(self.method, P.shape[1]):  # one (a, b) for all the columns of a pool
                (a,), (b,) = _fit_platt(_logit(P[:, cols]).reshape(-1, 1), Y[:, cols].reshape(-1, 1))
                self.a_[cols], self.b_[cols] = a, b
        elif self.method == "isotonic":
            self.x_, self.y_ = [], []
            for j in range(P.shape[1]):
                iso = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip").fit(P[:, j], Y[:, j])
                self.x_.append(iso.X_thresholds_)
                self.y_.append(iso.y_thresholds_)
        self.n_countries_ = P.shape[1]
        return self

    def transform(self, P) -> np.ndarray:
        P = np.asarray(P, dtype=np.float64)
        if self.method == "none":
            return P
        if self.method == "per_country":
            out = P.copy()
            for m, part in self.parts_.items():
                cols = [j for j, c in enumerate(self.country_methods_) if c == m]
                out[:, cols] = part.transform(P)[:, cols]
            return out
        if self.method == "platt" or self.method in POOLED:
            return _sigmoid(self.a_ * _logit(P) + self.b_)
        return np.column_stack([np.interp(P[:, j], self.x_[j], self.y_[j]) for j in range(P.shape[1])])


def _pools(method: str, k: int) -> list[np.ndarray]:
    """The column groups a pooled method fits one map to: all of them, or each region's countries."""
    if method == "temperature":
        return [np.arange(k)]
    if k != len(COUNTRIES):
        raise ValueError(f"calibration 'region' needs the {len(COUNTRIES)} countries' columns, got {k}")
    regions = np.array([REGION_OF[c] for c in COUNTRIES])
    return [np.flatnonzero(regions == r) for r in dict.fromkeys(regions)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for any x


def _platt_loss(Z: np.ndarray, Y: np.ndarray, a: np.ndarray, b: np.ndarray, ridge: float) -> np.ndarray:
    x = a * Z + b
    # log(1 + e^x) - y x, computed stably, plus the ridge
    return (np.logaddexp(0.0, x) - Y * x).sum(axis=0) + 0.5 * ridge * ((a - 1) ** 2 + b ** 2)


def _fit_platt(Z: np.ndarray, Y: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """a, b per column minimising the log loss of sigmoid(a z + b): damped Newton, all columns at once
    (a tiny ridge towards the identity keeps it defined for a column of one class)."""
    k = Z.shape[1]
    a, b = np.ones(k), np.zeros(k)
    ridge = 1e-6 * len(Z)
    loss = _platt_loss(Z, Y, a, b, ridge)
    for _ in range(iterations):
        p = _sigmoid(a * Z + b)
        r, w = p - Y, p * (1 - p)
        ga, gb = (r * Z).sum(axis=0) + ridge * (a - 1), r.sum(axis=0) + ridge * b
        haa, hab, hbb = (w * Z * Z).sum(axis=0) + ridge, (w * Z).sum(axis=0), w.sum(axis=0) + ridge
        det = haa * hbb - hab * hab
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step = np.ones(k)
        for _ in range(30):  # halve the step where it would not lower the loss
            new = _platt_loss(Z, Y, a - step * da, b - step * db, ridge)
            worse = new > loss + 1e-12
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        a, b, loss = a - step * da, b - step * db, np.minimum(new, loss)
        if max(np.abs(step * da).max(), np.abs(step * db).max()) < 1e-9:
            break
    return a, b


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration kept for a model, and the cross-fitted validation log loss of each method."""

    method: str
    calibration: CountryCalibration
    val_log_loss: dict[str, float] = field(default_factory=dict)


_MIN_GAIN = 1e-4  # log loss a calibration must gain over none to be kept


def cross_fitted_log_loss(P, Y, methods: tuple[str, ...] = METHODS, seed: int = 0) -> np.ndarray:
    """(methods, countries): the log loss per country of each method fitted on one half of the songs
    and applied to the other, both ways (two folds, fixed by `seed`)."""
    P, Y = np.asarray(P, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    fold = np.random.default_rng(seed).permutation(len(P)) % 2 == 0
    out = np.empty((len(methods), P.shape[1]))
    for i, method in enumerate(methods):
        Q = np.empty_like(P)
        for part in (fold, ~fold):
            Q[~part] = CountryCalibration(method).fit(P[part], Y[part]).transform(P[~part])
        Q = np.clip(Q, _EPS, 1 - _EPS)  # as mean_log_loss
        out[i] = -(Y * np.log(Q) + (1 - Y) * np.log1p(-Q)).mean(axis=0)
    return out


def choose_calibration(P_val, Y_val, seed: int = 0, min_gain: float = _MIN_GAIN) -> CalibrationChoice:
    """The method with the lowest two-fold cross-fitted validation mean log loss (over the countries);
    "none" unless another beats it by `min_gain` (a calibration must pay for itself)."""
    P, Y = np.asarray(P_val, dtype=np.float64), np.asarray(Y_val, dtype=np.float64)
    methods = METHODS if P.shape[1] == len(COUNTRIES) else tuple(m for m in METHODS if m != "region")
    losses = cross_fitted_log_loss(P, Y, methods, seed)
    scores = {m: float(losses[i].mean()) for i, m in enumerate(methods)}
    best = min(methods, key=lambda m: scores[m])
    method = best if scores[best] < scores["none"] - min_gain else "none"
    return CalibrationChoice(method, CountryCalibration(method).fit(P, Y), scores)


class Calibrated(BaseEstimator):
    """A fitted model followed by its calibration: predict_proba(X) = calibration(model(X))."""

    def __init__(self, model=None, calibration: CountryCalibration | None = None):
        self.model = model
        self.calibration = calibration

    def fit(self, X, Y=None) -> Calibrated:  # both parts are fitted when composed: nothing to learn here
        return self

    def __sklearn_is_fitted__(self) -> bool:  # what sklearn's Pipeline asks before predicting
        return self.model is not None

    @property
    def countries_(self) -> tuple[str, ...]:
        """The output order: the model's (a map per column keeps it)."""
        return (self.model[-1] if hasattr(self.model, "steps") else self.model).countries_

    def predict_proba(self, X) -> np.ndarray:
        P = self.model.predict_proba(X)
        return P if self.calibration is None else self.calibration.transform(P)
