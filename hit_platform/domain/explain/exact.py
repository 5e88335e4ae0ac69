"""Exact interventional Shapley values by closed form (linear) and by enumerating coalitions (MLP, any map).

All functions take one song's preprocessed or raw features x (d,) and a background Z (B, d) and
return (base (k,), phi (d, k)) for k outputs, with v(S) = mean_b f(x on S, z_b elsewhere):
base = v(empty), sum(phi) = v(all) - v(empty).

A coalition S is an integer whose bit j says that feature j comes from x. With the weights
w(s) = s! (d - 1 - s)! / d!, phi_i = sum over S with i of w(|S| - 1) v(S) - sum over S without i of
w(|S|) v(S): one (2^d, d) matrix, `shapley_matrix`, turns the 2^d values of v into the d values.
"""

from __future__ import annotations

from functools import lru_cache
from math import factorial

import numpy as np

# Features split into a low and a high half of the coalition bits: tables of 2^7 rows per half.
_HALF = 7
# exp(2p) of a pre-activation part stays finite and non-zero for |2p| below this; beyond it, plain tanh.
_EXP_LIMIT = 700.0
_BLOCK_ELEMENTS = 1 << 15


@lru_cache(maxsize=4)
def masks(d: int) -> np.ndarray:
    """(2^d, d) bool: row S holds the bits of S (feature j from x when bit j is set)."""
    S = np.arange(1 << d)
    return ((S[:, None] >> np.arange(d)) & 1).astype(bool)


@lru_cache(maxsize=4)
def shapley_matrix(d: int) -> np.ndarray:
    """(2^d, d): phi = shapley_matrix(d).T @ v for the 2^d values v of a game on d players."""
    M = masks(d)
    size = M.sum(axis=1)
    w = np.array([factorial(s) * factorial(d - 1 - s) / factorial(d) for s in range(d)] + [0.0])
    # exact rationals rounded once: w(s) = 1 / (d * C(d-1, s))
    with_i = w[np.maximum(size - 1, 0)]
    without_i = w[np.minimum(size, d - 1)]
    out = np.where(M, with_i[:, None], -without_i[:, None])
    out[-1, :] = w[d - 1]   # the full coalition: every i is in it
    return np.ascontiguousarray(out)


def hybrids(x: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """(2^d, B, d) rows: x on the coalition's features, the background song elsewhere."""
    M = masks(len(x))
    return np.where(M[:, None, :], x[None, None, :], Z[None, :, :])


def linear(x: np.ndarray, Z: np.ndarray, weights: np.ndarray, intercepts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) = x @ weights + intercepts: phi_j = weights_j (x_j - mean_b z_bj), base = f(mean_b z_b)."""
    mean_z = Z.mean(axis=0)
    return mean_z @ weights + intercepts, (x - mean_z)[:, None] * weights


def enumerate_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base, phi) of the game whose 2^d values (2^d, k) are given."""
    d = int(np.log2(len(values)))
    return values[0].copy(), shapley_matrix(d).T @ values


def mlp_hidden(x: np.ndarray, Z: np.ndarray, W1: np.ndarray, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base (H,), phi (d, H)) of the hidden layer's mean activations v_h(S) = mean_b tanh(pre_bh(S)),
    every one of the 2^d coalitions enumerated (outputs are linear in the hidden layer, so the
    outputs' values are these times W2).

    pre_b(S) = z_b W1 + b1 + sum_{j in S} W1_j (x_j - z_bj) splits into a low-bits part p and a
    high-bits part q over 2^7 coalitions each, and tanh(p + q) = 1 - 2 F / (F + E) with F = exp(-2p),
    E = exp(2q): two exponentials per 2^7 rows instead of a tanh per 2^14, and the 2^14 x H values
    per background song cost an add and a divide. Absolute error a few 1e-16 per value; where a part
    would overflow the exponential, the song's values are plain tanh."""
    d, H = W1.shape
    lo, hi = min(_HALF, d), d - min(_HALF, d)
    Mlo, Mhi = masks(lo).astype(np.float64), masks(hi).astype(np.float64)
    pre0 = Z @ W1 + b1                                     # (B, H)
    total = np.zeros((1 << hi, 1 << lo, H))
    # blocks of high-bit rows small enough to stay in a core's cache (4x faster than whole tables)
    rows = max(1, min(1 << hi, _BLOCK_ELEMENTS // ((1 << lo) * H)))
    tmp = np.empty((rows, 1 << lo, H))
    for b in range(len(Z)):
        delta = (x - Z[b])[:, None] * W1                   # (d, H)
        p = pre0[b] + Mlo @ delta[:lo]                     # (2^lo, H)
        q = Mhi @ delta[lo:]                               # (2^hi, H)
        if np.abs(p).max() * 2 < _EXP_LIMIT and np.abs(q).max() * 2 < _EXP_LIMIT:
            F, E = np.exp(-2.0 * p), np.exp(2.0 * q)
            for r in range(0, 1 << hi, rows):
                t = tmp[:min(rows, (1 << hi) - r)]
                np.add(F[None, :, :], E[r:r + rows, None, :], out=t)
                np.divide(F[None, :, :], t, out=t)        # (1 - tanh) / 2
                total[r:r + rows] += t
        else:
            total += (1.0 - np.tanh(p[None, :, :] + q[:, None, :])) / 2.0
    # v(S) = 1 - 2 total(S) / B; the constant 1 adds nothing to any phi
    values = total.reshape(1 << d, H)
    phi = shapley_matrix(d).T @ values * (-2.0 / len(Z))
    base = np.tanh(pre0).mean(axis=0)
    return base, phi


def linear_hybrids(x: np.ndarray, z: np.ndarray, weights: np.ndarray, intercepts: np.ndarray,
                   used: np.ndarray) -> np.ndarray:
    """(2^u, k): x @ weights + intercepts of every coalition (of the `used` features) hybrid of x and one
    background song z; the other features take z's values."""
    return (z @ weights + intercepts) + masks(len(used)).astype(np.float64) @ ((x - z)[used, None] * weights[used])


def mlp_hybrids(x: np.ndarray, z: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray,
                b2: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(2^u, k): the MLP's output for every coalition (of the `used` features) hybrid of x and one z."""
    pre = (z @ W1 + b1) + masks(len(used)).astype(np.float64) @ ((x - z)[used, None] * W1[used])
    return np.tanh(pre) @ W2 + b2
