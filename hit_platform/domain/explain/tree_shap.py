"""Exact interventional TreeSHAP for CountryTrees, read from scikit-learn's own tree nodes.

A CountryTrees model sums, per country c, the values of the leaves a song's row (14 features, the
country and its region) reaches in every tree. With the country held fixed, a leaf's path is, per
song feature j, an interval (lo_j, hi_j] (HistGradientBoosting goes left when value <= threshold),
and its country splits either admit c or not. For a song x and a background song z, let A be the
features where only x is inside the leaf's interval and Bz those where only z is; a feature where
neither is kills the leaf. The leaf's part of the hybrid's score is then the game
g(S) = v [A subset of S] [Bz disjoint from S], whose Shapley values are exact and closed:
v (|A|-1)! |Bz|! / (|A|+|Bz|)! for i in A, -v |A|! (|Bz|-1)! / (|A|+|Bz|)! for i in Bz.
Summed over leaves, background songs and trees, they are the model's interventional Shapley values
(the value function is linear in the leaves).

The background's inside/outside table (B, leaves, features) is computed once per background; per
song only the song's table is new, and the per-country sum is one (72 x leaves) @ (leaves x 14)
product. Missing values never reach here (explain refuses NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np
from scipy import sparse

from hit_platform.domain.models.quickscorer import _categorical_goes_left, _node_layout
from hit_platform.domain.models.trees import OUTPUT_CATEGORIES, CountryTrees


def _weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(WA, WB) indexed [|A|, |Bz|]: the Shapley weight of a player in A, and of one in Bz."""
    WA, WB = np.zeros((n + 1, n + 1)), np.zeros((n + 1, n + 1))
    for a in range(n + 1):
        for b in range(n + 1 - a):
            if a >= 1:
                WA[a, b] = factorial(a - 1) * factorial(b) / factorial(a + b)
            if b >= 1:
                WB[a, b] = factorial(a) * factorial(b - 1) / factorial(a + b)
    return WA, WB


@dataclass(frozen=True)
class Leaves:
    """Every leaf of the forest: its value, its interval on each song feature, the countries it admits."""

    lo: np.ndarray          # (L, d) exclusive lower bound
    hi: np.ndarray          # (L, d) inclusive upper bound
    country_value: np.ndarray  # (72, L): the leaf's value where the country reaches it, else 0
    baseline: float


def leaves_of(model: CountryTrees) -> Leaves:
    """The leaves of a fitted CountryTrees, from its HistGradientBoostingClassifier's nodes."""
    hgb = model.hgb_
    d = model.n_features_in_
    column_of, codes = _node_layout(hgb, d, OUTPUT_CATEGORIES)
    known_cats, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
    k = len(OUTPUT_CATEGORIES)
    los, his, reach, values = [], [], [], []
    for (predictor,) in hgb._predictors:
        nodes = predictor.nodes
        stack = [(0, np.full(d, -np.inf), np.full(d, np.inf), np.ones(k, dtype=bool))]
        while stack:
            i, lo, hi, admits = stack.pop()
            rec = nodes[i]
            if rec["is_leaf"]:
                los.append(lo), his.append(hi), reach.append(admits), values.append(float(rec["value"]))
                continue
            f = int(column_of[int(rec["feature_idx"])])
            left, right = int(rec["left"]), int(rec["right"])
            if f < d:
                t = float(rec["num_threshold"])
                left_hi, right_lo = hi.copy(), lo.copy()
                left_hi[f] = min(hi[f], t)
                right_lo[f] = max(lo[f], t)
                stack.append((right, right_lo, hi, admits))
                stack.append((left, lo, left_hi, admits))
            else:
                goes_left = _categorical_goes_left(rec, predictor.raw_left_cat_bitsets, known_cats, f_idx_map,
                                                   codes[:, f - d])
                stack.append((right, lo, hi, admits & ~goes_left))
                stack.append((left, lo, hi, admits & goes_left))
    value = np.array(values)
    return Leaves(lo=np.array(los), hi=np.array(his),
                  country_value=np.ascontiguousarray((np.array(reach) * value[:, None]).T),
                  baseline=float(np.asarray(hgb._baseline_prediction).ravel()[0]))


class TreeExplainer:
    """Interventional Shapley values of a CountryTrees model against one background (B, d)."""

    def __init__(self, model: CountryTrees, Z: np.ndarray):
        self.leaves = leaves_of(model)
        d = self.leaves.lo.shape[1]
        # a feature no leaf bounds is inside every interval for every song: it never enters A or Bz
        self.used = np.flatnonzero(np.isfinite(self.leaves.lo).any(axis=0) | np.isfinite(self.leaves.hi).any(axis=0))
        self.d = d
        self.lo, self.hi = self.leaves.lo[:, self.used], self.leaves.hi[:, self.used]
        self.WA, self.WB = _weights(len(self.used))
        Zu = Z[:, self.used]
        self.z_in = (Zu[:, None, :] > self.lo) & (Zu[:, None, :] <= self.hi)   # (B, L, u)
        self.B = len(Z)
        # the (leaf, feature) pairs a path bounds, leaf by leaf
        self.pair_leaf, self.pair_feature = np.nonzero(np.isfinite(self.leaves.lo) | np.isfinite(self.leaves.hi))
        self.pair_lo = self.leaves.lo[self.pair_leaf, self.pair_feature]
        self.pair_hi = self.leaves.hi[self.pair_leaf, self.pair_feature]
        self.pair_z_in = (Z[:, self.pair_feature] > self.pair_lo) & (Z[:, self.pair_feature] <= self.pair_hi)
        n_pairs, n_leaves = len(self.pair_leaf), len(self.leaves.lo)
        self.pair_leaf_matrix = sparse.csr_matrix((np.ones(n_pairs), (np.arange(n_pairs), self.pair_leaf)),
                                                  shape=(n_pairs, n_leaves))
        # v(empty) per country: the mean over the background of the leaves each song reaches
        reached = self.z_in.all(axis=2).mean(axis=0)                          # (L,)
        self.base = self.leaves.baseline + self.leaves.country_value @ reached

    def explain_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(base (72,), phi (d, 72)) for one song x (d,).

        Works on the (leaf, feature) pairs a path bounds (a leaf bounds a few features; the others are
        inside for every song and never enter A or Bz): (B, pairs) tables, summed per leaf by a
        sparse (pairs, leaves) product."""
        x_in = (x[self.pair_feature] > self.pair_lo) & (x[self.pair_feature] <= self.pair_hi)   # (P,)
        only_x = (x_in & ~self.pair_z_in).astype(np.float64)                                   # (B, P)
        only_z = (self.pair_z_in & ~x_in).astype(np.float64)
        neither = (~x_in & ~self.pair_z_in).astype(np.float64)
        a = np.rint(self.pair_leaf_matrix.T @ only_x.T).astype(np.intp).T                      # (B, L)
        bz = np.rint(self.pair_leaf_matrix.T @ only_z.T).astype(np.intp).T
        dead = (self.pair_leaf_matrix.T @ neither.T).T > 0
        ca = np.where(dead, 0.0, self.WA[a, bz])[:, self.pair_leaf]                            # (B, P)
        cb = np.where(dead, 0.0, self.WB[a, bz])[:, self.pair_leaf]
        contribution = np.einsum("bp,bp->p", ca, only_x) - np.einsum("bp,bp->p", cb, only_z)
        per_leaf = np.zeros((len(self.leaves.lo), self.d))
        per_leaf[self.pair_leaf, self.pair_feature] = contribution
        return self.base.copy(), (self.leaves.country_value @ per_leaf).T / self.B

    def hybrid_values(self, x: np.ndarray, b: int, players: np.ndarray) -> np.ndarray:
        """(2^p, 72): the model's score of every coalition's hybrid of x and background song b, coalitions
        of the `players` (which must hold every feature the trees split on where x and z_b differ; bit i
        is players[i]).

        A leaf holds for the hybrid of S exactly when A is in S and Bz is not: [A <= S] prod_{j in Bz}
        (1 - [j in S]) = sum over T <= Bz of (-1)^|T| [A + T <= S]. So each leaf puts +-value on the
        sets A + T, and one subset-sum (zeta) transform over the 2^d coalitions adds them up."""
        xu = x[self.used]
        x_in = (xu > self.lo) & (xu <= self.hi)
        z_in = self.z_in[b]
        alive = (x_in | z_in).all(axis=1)
        # a feature left out of the players must be one where x equals z_b: in neither A nor Bz, bit 0
        position = {int(f): i for i, f in enumerate(players)}
        bit = np.array([1 << position[int(f)] if int(f) in position else 0 for f in self.used], dtype=np.int64)
        a_bits = ((x_in & ~z_in)[alive] * bit).sum(axis=1)
        z_bits = ((z_in & ~x_in)[alive] * bit).sum(axis=1)
        vals = self.leaves.country_value[:, alive].T                       # (m, 72)
        for j in range(len(players)):                                      # expand T over each Bz bit
            has = (z_bits >> j) & 1 == 1
            if has.any():
                a_bits = np.concatenate([a_bits, a_bits[has] | (1 << j)])
                vals = np.concatenate([vals, -vals[has]])
                z_bits = np.concatenate([z_bits, z_bits[has]]) & ~(1 << j)
        table = np.zeros((1 << len(players), vals.shape[1]))
        order = np.argsort(a_bits, kind="stable")
        keys, starts = np.unique(a_bits[order], return_index=True)
        table[keys] = np.add.reduceat(vals[order], starts, axis=0)
        for j in range(len(players)):                                      # zeta: sum over subsets
            view = table.reshape(-1, 2, 1 << j, table.shape[1])
            view[:, 1] += view[:, 0]
        return table + self.leaves.baseline
