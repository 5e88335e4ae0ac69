"""How a model does on songs whose labels are not known yet, from its own calibrated probabilities.

Confidence-based performance estimation (CBPE, as NannyML names it), per country
and for all 72 countries at once. If the model is calibrated, a song's label in
a country is a coin that lands "hit" with the predicted probability p. So the
expected metric over those coins is an estimate of the metric the labels will
give:

- ROC AUC: the expected share of (hit, non-hit) pairs the model orders right,
  E[sum over pairs p_i (1 - p_j) [s_i > s_j]] / E[#hits x #non-hits], ties
  counting half;
- log loss: the mean binary entropy of p.

The interval of each estimate has two parts:
- sampling: labels drawn from p many times, the realized metric's central
  `level` range (what the truth would scatter by if the model were calibrated);
- the model's own error. For ROC AUC: where labels were known (the test split),
  how far each country's realized AUC fell from its estimate beyond what
  sampling explains (`model_error`, one spread for all countries, a method of
  moments: mean of (realized - estimate)^2 minus mean sampling variance). It
  is what a calibration that holds on average but not in a country's tails
  does to an AUC (a score too sharp or too flat there), which no shift of the
  probabilities' level shows: the ECE moves (below) barely move an AUC, and
  intervals of sampling alone covered the truth in 80% of countries on 3,000
  songs of a world whose model erred so (bench_monitoring, section 5). It is
  added to the sampling half-widths in quadrature (z of `level` times it).
  Its mean part, the offset every country shares, moves the estimate itself:
  a model whose scores are flatter than the truth (underconfident) expects
  less AUC than it gets in every country, and the test split measures by how
  much (`ModelError.bias`; on the soak's served songs the uncorrected
  estimate ran 0.04 low and covered the truth in 79% of countries).
  For log loss, and for ROC AUC without a model error: the same estimate with
  every probability moved by the country's calibration error (its ECE), up
  and down; the interval stretches by however much that moves it.

A shift of the songs' features is what it sees; a change of taste (the same
features now charting elsewhere) it cannot see, because the probabilities do
not change: that is the delayed-label monitor's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

_EPS = 1e-12


def estimated_roc_auc(P: np.ndarray) -> np.ndarray:
    """(countries,) expected ROC AUC if the labels were drawn from P (n_songs, countries)."""
    return expected_roc_auc(P, P)


def expected_roc_auc(scores: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """(countries,) expected ROC AUC of `scores` if the labels were drawn from Q (both n_songs x countries):
    with Q a model's own probabilities, what it expects (`estimated_roc_auc`); with Q the truth, what it
    will get on average."""
    scores, Q = np.asarray(scores, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    out = np.empty(scores.shape[1])
    for j in range(scores.shape[1]):
        order = np.argsort(scores[:, j], kind="stable")
        s, p = scores[order, j], Q[order, j]
        neg = 1.0 - p
        below = np.concatenate([[0.0], np.cumsum(neg)])  # below[i] = sum of (1 - p) over the first i songs
        left = np.searchsorted(s, s, side="left")
        right = np.searchsorted(s, s, side="right")
        tied = below[right] - below[left] - neg  # the other songs with the same score
        ordered = (p * (below[left] + 0.5 * tied)).sum()
        pairs = p.sum() * neg.sum() - (p * neg).sum()
        out[j] = ordered / pairs if pairs > _EPS else np.nan
    return out


def estimated_log_loss(P: np.ndarray) -> np.ndarray:
    """(countries,) expected log loss if the labels were drawn from P: the mean binary entropy."""
    P = np.clip(np.asarray(P, dtype=np.float64), 1e-15, 1 - 1e-15)
    return -(P * np.log(P) + (1 - P) * np.log1p(-P)).mean(axis=0)


def _realized(P: np.ndarray, draws: int, seed: int, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(draws, countries) ROC AUC and log loss of labels drawn from P, scored against P."""
    rng = np.random.default_rng(seed)
    n, k = P.shape
    ranks = np.column_stack([rankdata(P[:, j]) for j in range(k)])  # the scores never change: rank once
    Pc = np.clip(P, 1e-15, 1 - 1e-15)
    log_p, log_q = np.log(Pc), np.log1p(-Pc)
    aucs, losses = [], []
    for lo in range(0, draws, chunk):
        Y = rng.random((min(chunk, draws - lo), n, k)) < P
        pos = Y.sum(axis=1)
        rank_sum = np.einsum("dnk,nk->dk", Y, ranks)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append((rank_sum - pos * (pos + 1) / 2) / (pos * (n - pos)))
        losses.append(-np.where(Y, log_p, log_q).mean(axis=1))
    return np.concatenate(aucs), np.concatenate(losses)


@dataclass(frozen=True)
class Estimate:
    """Per country (arrays of length countries): estimate and interval of ROC AUC and log loss."""

    roc_auc: np.ndarray
    roc_auc_lower: np.ndarray
    roc_auc_upper: np.ndarray
    log_loss: np.ndarray
    log_loss_lower: np.ndarray
    log_loss_upper: np.ndarray
    songs: int
    expected_positives: np.ndarray


@dataclass(frozen=True)
class ModelError:
    """How a model's realized ROC AUC departs from its label-free estimate where labels are known: the
    offset all countries share (`bias`, realized - estimate) and the spread around it that sampling does not
    explain (`spread`)."""

    bias: float = 0.0
    spread: float = 0.0


def model_error(Y, P, draws: int = 200, seed: int = 0) -> ModelError:
    """The model's error in its own ROC AUC estimate, from songs whose labels Y are known and their
    probabilities P (the test split), pooled over the countries with both classes: bias = mean(realized -
    estimate); spread = sqrt(max(0, mean((realized - estimate - bias)^2) - mean(sampling variance)))."""
    from hit_platform.domain.models.metrics import evaluate

    Y, P = np.asarray(Y, dtype=bool), np.asarray(P, dtype=np.float64)
    real = np.array(list(evaluate(Y, P, countries=[str(j) for j in range(P.shape[1])])["roc_auc"].values()))
    sampled, _ = _realized(P, draws, seed)
    with np.errstate(invalid="ignore"):
        var = np.nanvar(sampled, axis=0)
    d = real - estimated_roc_auc(P)
    ok = np.isfinite(d) & np.isfinite(var)
    if not ok.any():
        return ModelError()
    bias = float(np.mean(d[ok]))
    return ModelError(bias, float(np.sqrt(max(0.0, float(np.mean((d[ok] - bias) ** 2 - var[ok]))))))


def estimate(P, calibration_error=None, level: float = 0.9, draws: int = 200, seed: int = 0,
             auc_model_error: ModelError | None = None) -> Estimate:
    """ROC AUC and log loss per country of a model whose probabilities on unlabeled songs are P
    (n_songs, countries), with intervals at `level` (see the module's docstring).

    calibration_error: (countries,) the model's ECE where labels were known (0 = trust P as it is);
    auc_model_error: `model_error` where labels were known: its bias moves the ROC AUC estimate and its
    interval, its spread widens the interval (None: the ECE moves widen the AUC instead)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or len(P) < 2:
        raise ValueError(f"estimate: P must be (songs >= 2, countries), got {P.shape}")
    if not np.isfinite(P).all() or P.min() < 0 or P.max() > 1:
        raise ValueError("estimate: probabilities must be finite and within [0, 1]")
    auc, loss = estimated_roc_auc(P), estimated_log_loss(P)
    real_auc, real_loss = _realized(P, draws, seed)
    tail = (1 - level) / 2 * 100
    with np.errstate(invalid="ignore"):
        auc_lo, auc_hi = np.nanpercentile(real_auc, [tail, 100 - tail], axis=0)
    loss_lo, loss_hi = np.percentile(real_loss, [tail, 100 - tail], axis=0)
    # the sampling interval is around the realized mean; re-centre it on the estimate
    auc_lo, auc_hi = auc - (np.nanmean(real_auc, axis=0) - auc_lo), auc + (auc_hi - np.nanmean(real_auc, axis=0))
    loss_lo, loss_hi = loss - (real_loss.mean(axis=0) - loss_lo), loss + (loss_hi - real_loss.mean(axis=0))
    if calibration_error is not None:
        e = np.broadcast_to(np.asarray(calibration_error, dtype=np.float64), (P.shape[1],))
        scale = e / np.maximum(P.mean(axis=0), _EPS)  # the error as a share of the country's mean prediction
        moved = [np.clip(P * (1 + sign * scale), 0.0, 1.0) for sign in (-1, 1)]
        auc_moves = np.stack([estimated_roc_auc(m) - auc for m in moved])
        loss_moves = np.stack([estimated_log_loss(m) - loss for m in moved])
        if auc_model_error is None:
            auc_lo = auc_lo + np.minimum(auc_moves.min(axis=0), 0)
            auc_hi = auc_hi + np.maximum(auc_moves.max(axis=0), 0)
        loss_lo = loss_lo + np.minimum(loss_moves.min(axis=0), 0)
        loss_hi = loss_hi + np.maximum(loss_moves.max(axis=0), 0)
    if auc_model_error is not None:
        wide = (norm.ppf(0.5 + level / 2) * auc_model_error.spread) ** 2
        auc_lo, auc_hi = auc - np.sqrt((auc - auc_lo) ** 2 + wide), auc + np.sqrt((auc_hi - auc) ** 2 + wide)
        auc, auc_lo, auc_hi = (np.clip(a + auc_model_error.bias, 0, 1) for a in (auc, auc_lo, auc_hi))
    return Estimate(auc, np.clip(auc_lo, 0, 1), np.clip(auc_hi, 0, 1), loss, np.maximum(loss_lo, 0), loss_hi,
                    len(P), P.sum(axis=0))
