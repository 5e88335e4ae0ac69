"""Feature screening: a model that leaves out the features that carry no signal.

Where few of the 14 features decide the charts (the zoo's `sparse` world), a model that spreads itself
over all of them fits noise, and its explanations give the ignored features a share they do not have.
`FeatureScreen` is a pipeline step that acts on one feature at a time: it keeps the features whose
values tell the countries' labels apart more than chance would, and sets the others to 0. A constant
cannot be split on or weighted, so no model after it uses them, and their attributions are exactly 0
(the explainers treat a feature equal in a song and its background as a null player).

The signal of a feature, from the training songs: its values cut into quantile bins (missing values a bin
of their own), and for each country the chi-square statistic of hits against songs per bin divided by
its degrees of freedom; about 1 for a feature unrelated to the labels, whatever the number of songs. A
bump, a step or a slope all count (the bins make it nonlinear); an effect only through an interaction
with another feature does not, which is why screening is a hyper-parameter chosen on validation
(`screen`: 0 = off), not a rule. `signal_` keeps the figure of every feature for inspection.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hit_platform.domain.models.frame import label_matrix

SCREEN_BINS = 16
SCREEN_PARAM = "screen"  # a grid point's FeatureScreen min_signal (absent or 0: no screening)


def screen_step(params: dict) -> tuple[list, dict]:
    """How a family's builder takes a grid point's screen: ([("screen", FeatureScreen)] or [], the point's
    other parameters)."""
    level = float(params.get(SCREEN_PARAM) or 0.0)
    rest = {k: v for k, v in params.items() if k != SCREEN_PARAM}
    return ([("screen", FeatureScreen(min_signal=level))] if level > 0 else []), rest


class FeatureScreen(TransformerMixin, BaseEstimator):
    """Keep the features that tell the countries' labels apart beyond what the features kept before them
    already tell (at least the strongest one); the others become the constant 0.

    Forward selection: the feature with the largest signal above `min_signal` is kept, each country's labels
    are fitted on the bins of the kept features (least squares, additive), and the others' signal is measured
    again on what is left, until none passes. A feature that only echoes a kept one (a proxy: energy beside
    danceability) loses its signal once that one is kept; a backward pass then drops a kept feature that the
    others, kept after it, leave without signal of its own. `signal_`: each feature's signal on its own;
    `conditional_`: on what the kept features left when the forward selection stopped.

    Place it where 0 is a plain value of every feature: after StandardScaler (the mean), or on raw features
    for the trees (a constant is never split on)."""

    def __init__(self, min_signal: float = 2.0, bins: int = SCREEN_BINS):
        self.min_signal = min_signal
        self.bins = bins

    def fit(self, X, Y=None) -> FeatureScreen:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"FeatureScreen: expected a 2-D feature matrix of 2 or more songs, got {X.shape}")
        if Y is None:
            raise ValueError("FeatureScreen: needs the labels to screen by (fit(X, Y))")
        if not float(self.min_signal) > 0 or int(self.bins) < 2:
            raise ValueError(f"FeatureScreen: min_signal must be > 0 and bins >= 2, got {self.min_signal}, "
                             f"{self.bins}")
        Y = label_matrix(Y, len(X), where="FeatureScreen").astype(np.float64)
        rate = Y.mean(axis=0)
        Y = Y[:, (rate > 0) & (rate < 1)]  # a country with one class says nothing about any feature
        bins = [_bins(X[:, j], int(self.bins)) for j in range(X.shape[1])]
        keep = np.zeros(X.shape[1], dtype=bool)
        # one BLAS thread: the same sums in the same order on any machine, so a refit keeps the same features
        with threadpool_limits(limits=1, user_api="blas"):
            signal = _signals(bins, Y - Y.mean(axis=0))
            self.signal_ = signal
            while not keep.all():
                best = int(np.argmax(np.where(keep, -np.inf, signal)))
                if keep.any() and not signal[best] > float(self.min_signal):
                    break
                keep[best] = True
                signal = _signals(bins, _residuals(Y, [bins[j] for j in np.flatnonzero(keep)]))
            self.conditional_ = np.where(keep, np.nan, signal)
            while keep.sum() > 1:  # backward: a feature kept early that the later ones make a proxy goes
                kept = np.flatnonzero(keep)
                alone = [_signals([bins[j]], _residuals(Y, [bins[i] for i in kept if i != j]))[0] for j in kept]
                if min(alone) > float(self.min_signal):
                    break
                keep[kept[int(np.argmin(alone))]] = False
        self.keep_ = keep
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "keep_")
        X = np.array(X, dtype=np.float64)  # a copy: the caller's matrix stays as it was
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"FeatureScreen: expected {self.n_features_in_} feature columns, got {X.shape}")
        X[:, ~self.keep_] = 0.0
        return X


def _bins(x: np.ndarray, bins: int) -> np.ndarray:
    """(n, used bins) one-hot of x's quantile bins, missing values a bin of their own (one column: constant)."""
    known = ~np.isnan(x)
    edges = np.unique(np.quantile(x[known], np.linspace(0.0, 1.0, bins + 1)[1:-1])) if known.any() else np.empty(0)
    where = np.where(known, np.searchsorted(edges, np.where(known, x, 0.0), side="right"), len(edges) + 1)
    onehot = np.eye(len(edges) + 2)[where]
    return onehot[:, onehot.any(axis=0)]


def _signals(bins: list[np.ndarray], R: np.ndarray) -> np.ndarray:
    """Per feature: the mean over the countries (columns of R, labels less what is already explained) of
    sum over bins of (residual sum)^2 / (songs x residual variance), per degree of freedom. With R the labels
    less their rate it is the chi-square of hits per bin; about 1 for a feature that explains none of R."""
    var = np.maximum((R ** 2).mean(axis=0), 1e-12)
    out = np.zeros(len(bins))
    for j, onehot in enumerate(bins):
        if onehot.shape[1] < 2 or not R.shape[1]:
            continue  # a constant feature tells nothing
        songs = onehot.sum(axis=0)
        sums = onehot.T @ R
        out[j] = float(((sums ** 2 / (songs[:, None] * var)).sum(axis=0) / (onehot.shape[1] - 1)).mean())
    return out


def _residuals(Y: np.ndarray, kept: list[np.ndarray]) -> np.ndarray:
    """Y less its least-squares fit on an intercept and the bins of the kept features (additive)."""
    D = np.hstack([np.ones((len(Y), 1))] + [onehot[:, 1:] for onehot in kept])
    G = D.T @ D
    beta = np.linalg.solve(G + 1e-8 * np.trace(G) / len(G) * np.eye(len(G)), D.T @ Y)
    return Y - D @ beta
