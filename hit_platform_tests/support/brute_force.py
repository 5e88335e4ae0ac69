"""Shapley values by brute force, written apart from hit_platform.domain.explain (which it checks).

Every one of the 2^14 coalitions' hybrid rows (the song's features in the coalition, a background
song's elsewhere) scored by the pipeline's own served `predict_proba` (each distinct row once, in
chunks), v(S) their mean over the
background songs, then the textbook formula phi_i = sum_S |S|! (d - |S| - 1)! / d! (v(S + i) - v(S)).
Used by hit_platform_tests/domain/test_attributions.py and bench/bench_explain_exactness.py.
"""

from __future__ import annotations

from math import factorial

import numpy as np
import pandas as pd

from hit_platform.domain.features import FEATURE_COLUMNS

ROWS_PER_CHUNK = 1 << 17  # hybrid rows scored or averaged at once: bounds the (rows x 72) arrays


def served_on_scale(pipeline, X: pd.DataFrame, on_log_odds) -> np.ndarray:
    """The served probabilities of songs X, as log-odds in the countries where `on_log_odds` (72 bools)."""
    P = pipeline.predict_proba(X)
    return np.where(np.asarray(on_log_odds, dtype=bool), np.log(P) - np.log1p(-P), P)


def brute_force(pipeline, x: np.ndarray, Z: np.ndarray, on_log_odds, sizes=None,
                rows_per_chunk: int = ROWS_PER_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(base (k,), phi (k, d)) of song x (d,) against background songs Z (B, d), country c's value function
    averaging over the first sizes[c] background songs (all B when sizes is None)."""
    d, B = len(x), len(Z)
    coalitions = np.arange(2 ** d)
    member = (coalitions[:, None] >> np.arange(d)) & 1 == 1
    rows = np.where(member[:, None, :], x, Z[None, :, :]).reshape(-1, d)
    # Identical rows (a song sharing features with a background song) are scored once. A row is identified
    # by its background song and the positions where it differs from x: each holds x's value or z_b's.
    key = np.repeat(np.arange(B)[None, :], len(coalitions), axis=0).ravel() << d | \
        ((rows != x) << np.arange(d)).sum(axis=1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    unique = rows[first]
    del rows, key
    scored = np.concatenate([
        served_on_scale(pipeline, pd.DataFrame(unique[lo:lo + rows_per_chunk], columns=FEATURE_COLUMNS), on_log_odds)
        for lo in range(0, len(unique), rows_per_chunk)])
    inverse = inverse.reshape(len(coalitions), B)
    sizes = np.full(scored.shape[1], B) if sizes is None else np.asarray(sizes)
    v = np.zeros((len(coalitions), scored.shape[1]))
    step = max(1, rows_per_chunk // B)
    for lo in range(0, len(coalitions), step):
        values = scored[inverse[lo:lo + step]]  # (coalitions, B, k)
        for s in np.unique(sizes):
            v[lo:lo + step, sizes == s] = values[:, :s, sizes == s].mean(axis=1)
    phi = np.zeros((v.shape[1], d))
    for i in range(d):
        without = coalitions[~member[:, i]]
        size = member[without].sum(axis=1)
        weight = np.array([factorial(s) * factorial(d - s - 1) / factorial(d) for s in size])
        phi[:, i] = (weight[:, None] * (v[without | (1 << i)] - v[without])).sum(axis=0)
    return v[0], phi
