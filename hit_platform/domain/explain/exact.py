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
_BLOCK_ELEMENTS = 4096   # per block of a table and its scratch: 32 kB each, in a core's cache


@lru_cache(maxsize=16)
def masks(d: int) -> np.ndarray:
    """(2^d, d) bool: row S holds the bits of S (feature j from x when bit j is set)."""
    S = np.arange(1 << d)
    return ((S[:, None] >> np.arange(d)) & 1).astype(bool)


@lru_cache(maxsize=16)
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
    every coalition enumerated (outputs are linear in the hidden layer, so the outputs' values are
    these times W2).

    v is the mean of the games v_b of each background song, and phi is linear in the game: phi =
    mean_b phi(v_b). A feature j where x_j == z_bj is a null player of v_b (the hybrid does not
    depend on it), and the Shapley values of the other players of a game equal those of the game
    reduced to them: so v_b is enumerated over its 2^d_b coalitions of the features where x and z_b
    differ only (the demo world's songs share mode, time signature, explicitness ... with about two
    of a background song's 14 features: a quarter of the 2^14), and background songs that differ
    from x in the same features share one table and one Shapley product."""
    d, H = W1.shape
    pre0 = Z @ W1 + b1                                     # (B, H)
    differs = x[None, :] != Z                              # (B, d)
    phi = np.zeros((d, H))
    patterns, group = np.unique(differs, axis=0, return_inverse=True)
    group = group.ravel()
    for g, players in enumerate(patterns):
        n = int(players.sum())
        if n:   # a background song equal to x adds nothing to any phi
            rows = group == g
            total = _tanh_tables(x[players], Z[rows][:, players], W1[players], pre0[rows])
            phi[players] += shapley_matrix(n).T @ total
    # v_b(S) = 1 - 2 total_b(S); the constant 1 adds nothing to any phi
    phi *= -2.0 / len(Z)
    return np.tanh(pre0).mean(axis=0), phi


def _tanh_tables(x: np.ndarray, Z: np.ndarray, W1: np.ndarray, pre0: np.ndarray) -> np.ndarray:
    """(2^d, H): sum over the background songs of (1 - tanh(pre_b(S))) / 2 for every coalition S of
    the d features given, pre_b(S) = pre0_b + sum_{j in S} W1_j (x_j - z_bj).

    pre_b(S) splits into a low-bits part p and a high-bits part q over 2^7 coalitions each, and
    tanh(p + q) = 1 - 2 F / (F + E) with F = exp(-2p), E = exp(2q): two exponentials per 2^7 rows
    instead of a tanh per 2^14, and the 2^14 x H values per background song cost an add and a
    divide. Absolute error a few 1e-16 per value; where a part would overflow the exponential, the
    table is plain tanh."""
    d, H = W1.shape
    lo, hi = min(_HALF, d), d - min(_HALF, d)
    Mlo, Mhi = masks(lo).astype(np.float64), masks(hi).astype(np.float64)
    delta = (x[None, :] - Z)[:, :, None] * W1[None]      # (B, d, H)
    p = pre0[:, None, :] + Mlo @ delta[:, :lo]             # (B, 2^lo, H)
    q = Mhi @ delta[:, lo:]                                # (B, 2^hi, H)
    if np.abs(p).max() * 2 >= _EXP_LIMIT or np.abs(q).max() * 2 >= _EXP_LIMIT:
        total = np.zeros((1 << hi, 1 << lo, H))
        for b in range(len(Z)):
            total += (1.0 - np.tanh(p[b][None, :, :] + q[b][:, None, :])) / 2.0
        return total.reshape(1 << d, H)
    F, E = np.exp(-2.0 * p), np.exp(2.0 * q)
    total = np.empty((1 << hi, 1 << lo, H))
    # blocks of high-bit rows small enough to stay in a core's cache, every background song's values
    # added into one block before the next (the table itself is 0.5-4 MB)
    rows = max(1, min(1 << hi, _BLOCK_ELEMENTS // ((1 << lo) * H)))
    tmp = np.empty((rows, 1 << lo, H))
    for r in range(0, 1 << hi, rows):
        out = total[r:r + rows]
        t = tmp[:len(out)]
        for b in range(len(Z)):
            acc = out if b == 0 else t
            np.add(F[b][None, :, :], E[b, r:r + rows, None, :], out=acc)
            np.divide(F[b][None, :, :], acc, out=acc)      # (1 - tanh) / 2
            if b:
                out += t
    return total.reshape(1 << d, H)


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
