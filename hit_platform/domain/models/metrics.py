"""Per-country quality of (n_songs, n_countries) probability matrices, vectorised over countries.

    m = evaluate(Y_true, P)

gives, for each country, ROC AUC, PR AUC (average precision, as
`sklearn.metrics.average_precision_score` defines it), log loss and Brier
score, and their means over countries. A country whose labels are all one
class in Y_true has no AUC (NaN): it is listed in `countries_skipped` and left
out of every mean, so the four means are always over the same countries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.models.calibration import (calibration_noise_floor, expected_calibration_error,
                                                    pooled_calibration_error)

METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "log_loss", "brier")
# Probabilities are clipped this far from 0 and 1 before the log (sklearn's log_loss does the same).
_LOG_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class CountryMetrics:
    """One country's row of an `evaluate` result (see `country_metrics`)."""

    country: str
    n_songs: int
    n_positive: int
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float


def evaluate(Y_true, P, countries: Sequence[str] = COUNTRIES) -> dict:
    """Quality of predictions P against labels Y_true, both (n_songs, len(countries)).

    Returns a dict with
      "roc_auc", "pr_auc", "log_loss", "brier": {country: float}
      "mean_roc_auc", "mean_pr_auc", "mean_log_loss", "mean_brier": float, over evaluated countries
      "countries_skipped": [countries with a single class in Y_true (AUCs NaN, not in the means)]
      "n_songs": int, "positives": {country: int}
    """
    Y, P = _check(Y_true, P, countries)
    n, k = Y.shape
    n_pos = Y.sum(axis=0)
    n_neg = n - n_pos
    both = (n_pos > 0) & (n_neg > 0)

    Pc = np.clip(P, _LOG_EPS, 1 - _LOG_EPS)
    log_loss = -np.where(Y, np.log(Pc), np.log1p(-Pc)).mean(axis=0)
    brier = ((P - Y) ** 2).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        roc_auc = np.where(both, _roc_auc(Y, P, n_pos, n_neg), np.nan)
        pr_auc = np.where(both, _average_precision(Y, P, n_pos), np.nan)

    per = {"roc_auc": roc_auc, "pr_auc": pr_auc, "log_loss": log_loss, "brier": brier}
    out: dict = {name: dict(zip(countries, map(float, values))) for name, values in per.items()}
    for name, values in per.items():
        out[f"mean_{name}"] = float(values[both].mean()) if both.any() else float("nan")
    ece = expected_calibration_error(Y, P)
    excess = ece - calibration_noise_floor(P)
    for name, values in (("ece", ece), ("ece_excess", excess)):
        out[name] = dict(zip(countries, map(float, values)))
        out[f"mean_{name}"] = float(values[both].mean()) if both.any() else float("nan")
    out["pooled_ece"], out["pooled_ece_excess"] = pooled_calibration_error(Y, P)
    out["countries_skipped"] = [c for c, ok in zip(countries, both) if not ok]
    out["n_songs"] = int(n)
    out["positives"] = dict(zip(countries, map(int, n_pos)))
    return out


def country_metrics(m: dict) -> list[CountryMetrics]:
    """The per-country rows of an `evaluate` result, in its country order."""
    return [CountryMetrics(country=c, n_songs=m["n_songs"], n_positive=m["positives"][c],
                           **{name: m[name][c] for name in METRICS}) for c in m["roc_auc"]]


def _check(Y_true, P, countries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y_true)
    P = np.asarray(P, dtype=np.float64)
    k = len(countries)
    if Y.ndim != 2 or Y.shape[1] != k:
        raise ValueError(f"evaluate: Y_true must be (n_songs, {k}), got {Y.shape}")
    if P.shape != Y.shape:
        raise ValueError(f"evaluate: P has shape {P.shape} but Y_true has {Y.shape}")
    if len(Y) == 0:
        raise ValueError("evaluate: no songs")
    if Y.dtype != bool:
        if not np.isin(Y, (0, 1)).all():
            raise ValueError("evaluate: Y_true must be bool or 0/1")
        Y = Y.astype(bool)
    if not np.isfinite(P).all():
        bad = [countries[j] for j in np.flatnonzero(~np.isfinite(P).all(axis=0))]
        raise ValueError(f"evaluate: P has NaN or infinite values for countries {bad}")
    if P.min() < 0 or P.max() > 1:
        raise ValueError(f"evaluate: probabilities must lie in [0, 1], got [{P.min()}, {P.max()}]")
    return Y, P


def _roc_auc(Y: np.ndarray, P: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney U over all countries at once: tied scores get average ranks, which is exactly
    the trapezoidal area under the ROC curve that sklearn computes."""
    ranks = rankdata(P, axis=0)
    return ((ranks * Y).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _average_precision(Y: np.ndarray, P: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds, for all countries at once.

    Sorting by descending score, each positive adds 1/n_pos of recall at the
    precision of the end of its group of tied scores (the threshold it is
    first counted at), so AP = mean over positives of that precision."""
    n = len(Y)
    order = np.argsort(-P, axis=0, kind="stable")
    scores = np.take_along_axis(P, order, axis=0)
    hits = np.take_along_axis(Y, order, axis=0)
    tp = np.cumsum(hits, axis=0)
    precision = tp / np.arange(1, n + 1)[:, None]
    # Last row of each tied group; every row reads the precision at its group's end.
    group_end = np.ones_like(hits)
    group_end[:-1] = scores[:-1] != scores[1:]
    end_index = np.where(group_end, np.arange(n)[:, None], n)
    end_index = np.minimum.accumulate(end_index[::-1], axis=0)[::-1]
    precision_at_end = np.take_along_axis(precision, end_index, axis=0)
    return (precision_at_end * hits).sum(axis=0) / n_pos
