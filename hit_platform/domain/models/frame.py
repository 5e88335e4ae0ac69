"""The first steps of every model pipeline: a checked feature matrix out of a DataFrame.

`FeatureFrame` is where a pipeline meets the outside world (training frames,
batch frames, the serving API's one-row frames), so it is the one place that
checks the columns and says clearly what is wrong. After it, every step works
on a float64 numpy matrix whose columns are `FEATURE_COLUMNS` in order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS

N_FEATURES = len(FEATURE_COLUMNS)
N_COUNTRIES = len(COUNTRIES)
_FEATURE_LIST = list(FEATURE_COLUMNS)
_FEATURE_SET = frozenset(FEATURE_COLUMNS)

# Speechiness (most songs near 0.05, a long tail of rap) and the track length
# are log-normal-like: their log suits a linear score or a neural net better.
# (instrumentalness and liveness were tried too: worse in validation, since a
# log spreads their mass of near-zero values.) Trees do not need it.
SKEWED_FEATURES: tuple[str, ...] = ("speechiness", "duration_ms")


def feature_matrix(X: pd.DataFrame) -> np.ndarray:
    """(n, 14) float64 matrix of a DataFrame whose columns are exactly FEATURE_COLUMNS (any order).

    Raises TypeError for a non-DataFrame and ValueError naming the missing,
    unexpected, duplicated or non-numeric columns."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"song features must be a pandas DataFrame with columns {_FEATURE_LIST}, "
                        f"got {type(X).__name__}")
    columns = list(X.columns)
    if columns != _FEATURE_LIST:  # the fast path (the usual case) skips the set arithmetic
        _check_columns(columns)
        X = X[_FEATURE_LIST]
    try:
        values = X.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = [c for c in _FEATURE_LIST if not _is_numeric(X[c])]
        raise ValueError(f"song features: columns {bad} are not numeric "
                         f"(dtypes {[str(X[c].dtype) for c in bad]})") from None
    if np.isinf(values).any():
        bad = [c for c, flag in zip(_FEATURE_LIST, np.isinf(values).any(axis=0)) if flag]
        raise ValueError(f"song features: columns {bad} contain infinite values")
    return values


def _check_columns(columns: list) -> None:
    names = [str(c) for c in columns]
    missing = [c for c in FEATURE_COLUMNS if c not in names]
    extra = [c for c in names if c not in _FEATURE_SET]
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if missing or extra or duplicated:
        problems = [f"{label} {cols}" for label, cols in
                    (("missing columns", missing), ("unexpected columns", extra),
                     ("duplicated columns", duplicated)) if cols]
        raise ValueError(f"song features: {'; '.join(problems)}; expected exactly {_FEATURE_LIST}")


def _is_numeric(column: pd.Series) -> bool:
    try:
        pd.to_numeric(column, errors="raise")
    except (TypeError, ValueError):
        return False
    return True


def label_matrix(Y, n_rows: int | None = None, *, where: str = "labels") -> np.ndarray:
    """(n, 72) bool matrix of labels in COUNTRIES order; ValueError if the shape or values are wrong."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] != N_COUNTRIES:
        raise ValueError(f"{where}: expected shape (n_songs, {N_COUNTRIES}) in COUNTRIES order, got {Y.shape}")
    if n_rows is not None and Y.shape[0] != n_rows:
        raise ValueError(f"{where}: {Y.shape[0]} rows of labels for {n_rows} rows of features")
    if Y.dtype != bool:
        if not np.isin(Y, (0, 1)).all():
            raise ValueError(f"{where}: labels must be 0/1 or bool")
        Y = Y.astype(bool)
    return Y


class FeatureFrame(TransformerMixin, BaseEstimator):
    """DataFrame with exactly FEATURE_COLUMNS -> float64 matrix in that order.

    impute: replace missing values (NaN/None) by the training median of the
    column (for models that cannot take NaN); trees leave them to the model,
    which learns where missing values go.
    """

    def __init__(self, impute: bool = True):
        self.impute = impute

    def fit(self, X: pd.DataFrame, y=None) -> FeatureFrame:
        values = feature_matrix(X)
        if len(values) == 0:
            raise ValueError("song features: cannot fit on an empty frame")
        with np.errstate(all="ignore"):
            medians = np.nanmedian(np.where(np.isnan(values).all(axis=0), 0.0, values), axis=0)
        self.medians_ = medians  # an all-missing column imputes 0
        self.n_features_in_ = N_FEATURES
        self.feature_names_out_ = np.array(_FEATURE_LIST, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.transform_matrix(feature_matrix(X))

    def transform_matrix(self, values: np.ndarray) -> np.ndarray:
        """`transform` of a float64 matrix already in FEATURE_COLUMNS order (serving builds one per request,
        and a DataFrame around it would cost more than the model)."""
        if self.impute:
            missing = np.isnan(values)
            if missing.any():
                values = np.where(missing, self.medians_, values)
        return values

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(_FEATURE_LIST, dtype=object)


class LogFeatures(TransformerMixin, BaseEstimator):
    """log(x + offset) of the named columns of a FEATURE_COLUMNS matrix; the others pass through."""

    def __init__(self, columns: tuple[str, ...] = SKEWED_FEATURES, offset: float = 1e-3):
        self.columns = columns
        self.offset = offset

    def fit(self, X: np.ndarray, y=None) -> LogFeatures:
        unknown = [c for c in self.columns if c not in _FEATURE_SET]
        if unknown:
            raise ValueError(f"LogFeatures: unknown columns {unknown}; choose from {_FEATURE_LIST}")
        self.index_ = np.array([FEATURE_COLUMNS.index(c) for c in self.columns], dtype=np.intp)
        self.n_features_in_ = N_FEATURES
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.array(X, dtype=np.float64, copy=True)
        X[:, self.index_] = np.log(np.maximum(X[:, self.index_], 0.0) + self.offset)
        return X

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([f"log_{c}" if c in self.columns else c for c in FEATURE_COLUMNS], dtype=object)
