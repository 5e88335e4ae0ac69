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
    """Keep the features whose mean chi-square per degree of freedom over the countries exceeds `min_signal`
    (at least the strongest one); the others become the constant 0.

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
        varied = (rate > 0) & (rate < 1)  # a country with one class says nothing about any feature
        self.signal_ = np.array([_signal(X[:, j], Y[:, varied], rate[varied], int(self.bins))
                                 for j in range(X.shape[1])])
        keep = self.signal_ > float(self.min_signal)
        keep[int(np.argmax(self.signal_))] = True
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


def _signal(x: np.ndarray, Y: np.ndarray, rate: np.ndarray, bins: int) -> float:
    """Mean over the countries (columns of Y) of the chi-square per degree of freedom of hits per bin of x."""
    if not len(rate):
        return 0.0
    known = ~np.isnan(x)
    if known.sum() < 2:
        return 0.0
    edges = np.unique(np.quantile(x[known], np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    where = np.where(known, np.searchsorted(edges, np.where(known, x, 0.0), side="right"), len(edges) + 1)
    songs = np.bincount(where, minlength=len(edges) + 2).astype(np.float64)
    used = songs > 0
    if used.sum() < 2:
        return 0.0  # a constant feature
    hits = np.eye(len(songs))[where].T @ Y  # (bins, countries): one product, not a scatter per song
    expected = songs[used, None] * rate[None, :]
    chi2 = ((hits[used] - expected) ** 2 / (expected * (1.0 - rate[None, :]))).sum(axis=0)
    return float((chi2 / (used.sum() - 1)).mean())
