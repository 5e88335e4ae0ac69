"""Gradient-boosted trees over song x country rows: one model for all 72 countries.

Each song becomes 72 rows, its 14 features plus the country and the
country's region as categorical columns, labelled with whether it charted
there. One HistGradientBoostingClassifier learns what all countries share
(most of the taste), what a region shares (a preferred tempo, say) and what a
single country adds, splitting on country/region only where it pays. Far
more data per split than 72 separate models, and one model to serve.

Boosting stops early on a held-out part of the TRAIN songs (whole songs, so
no song is on both sides), never on the validation split, which stays for
choosing hyper-parameters. The fitted ensemble is compiled
(`quickscorer.compile_hgb`) so that scoring a song's 72 rows costs a few
numpy operations instead of scikit-learn's Python loop over trees.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from hit_platform.domain.countries import COUNTRIES, REGION_OF, REGIONS
from hit_platform.domain.models.estimators import MultiLabelModel, clip_proba
from hit_platform.domain.models.frame import label_matrix
from hit_platform.domain.models.quickscorer import MAX_LEAVES, compile_hgb

_REGION_INDEX = {r: i for i, r in enumerate(REGIONS)}
# Categorical columns of each output row: (country index, region index), in COUNTRIES order.
OUTPUT_CATEGORIES = np.array([[j, _REGION_INDEX[REGION_OF[c]]] for j, c in enumerate(COUNTRIES)],
                             dtype=np.float64)


def stack_rows(X: np.ndarray) -> np.ndarray:
    """(n * 72, d + 2) song x country rows, song-major: row i*72 + j is song i in COUNTRIES[j]."""
    n, k = len(X), len(OUTPUT_CATEGORIES)
    return np.hstack([np.repeat(X, k, axis=0), np.tile(OUTPUT_CATEGORIES, (n, 1))])


class CountryTrees(MultiLabelModel):
    """HistGradientBoostingClassifier on stacked song x country rows, compiled for prediction.

    holdout: share of the training songs held out for early stopping (0 =
    no early stopping: exactly max_iter rounds). The HGB itself is kept as
    `hgb_` for inspection; predictions come from the compiled `forest_`.

    n_threads: OpenMP threads for fitting. The fit is the same for any value
    (tested); the default is 1 because HGB synchronises its threads many times
    per tree, and on a busy 2-core machine two threads measured 3x slower than
    one (and at best ~1.5x faster on an idle one)."""

    def __init__(self, learning_rate: float = 0.3, max_leaf_nodes: int = 7, min_samples_leaf: int = 40,
                 l2_regularization: float = 0.0, max_iter: int = 1000, holdout: float = 0.15,
                 n_iter_no_change: int = 20, max_bins: int = 255, random_state: int = 0,
                 n_threads: int = 1):
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_iter = max_iter
        self.holdout = holdout
        self.n_iter_no_change = n_iter_no_change
        self.max_bins = max_bins
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X, Y) -> CountryTrees:
        X = np.asarray(X, dtype=np.float64)
        Y = label_matrix(Y, len(X), where="CountryTrees")
        if Y.shape[1] != len(COUNTRIES):
            raise ValueError(f"CountryTrees: expected {len(COUNTRIES)} label columns, got {Y.shape[1]}")
        if not 2 <= self.max_leaf_nodes <= MAX_LEAVES:
            raise ValueError(f"CountryTrees: max_leaf_nodes must be in 2..{MAX_LEAVES}, got {self.max_leaf_nodes}")
        self.n_features_in_ = X.shape[1]
        n_cat = OUTPUT_CATEGORIES.shape[1]
        hgb = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate, max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            max_bins=self.max_bins, categorical_features=list(range(X.shape[1], X.shape[1] + n_cat)),
            early_stopping=self.holdout > 0, scoring="loss", n_iter_no_change=self.n_iter_no_change,
            random_state=self.random_state)
        held = self._held_out_songs(len(X))
        with threadpool_limits(limits=int(self.n_threads), user_api="openmp"):
            if held.any():
                hgb.fit(stack_rows(X[~held]), Y[~held].ravel(),
                        X_val=stack_rows(X[held]), y_val=Y[held].ravel())
            else:
                hgb.fit(stack_rows(X), Y.ravel())
        self.hgb_ = hgb
        self.n_iter_ = int(hgb.n_iter_)
        self.forest_ = compile_hgb(hgb, OUTPUT_CATEGORIES)
        return self

    def _held_out_songs(self, n: int) -> np.ndarray:
        held = np.zeros(n, dtype=bool)
        if self.holdout > 0:
            if not 0 < self.holdout < 1:
                raise ValueError(f"CountryTrees: holdout must be in [0, 1), got {self.holdout}")
            n_held = min(n - 1, max(1, round(self.holdout * n)))
            held[np.random.default_rng(self.random_state).permutation(n)[:n_held]] = True
        return held

    def decision_function(self, X) -> np.ndarray:
        return self.forest_.raw_scores(self._check_X(X))

    def predict_proba(self, X) -> np.ndarray:
        return clip_proba(expit(self.decision_function(X)))
