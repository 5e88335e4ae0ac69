"""Drift statistics: how far one sample of a feature has moved from another."""

import numpy as np


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10, edges: np.ndarray | None = None) -> float:
    """Population stability index of `actual` against `expected` (quantile bins of expected, or the
    given bin `edges`)."""
    expected = expected[~np.isnan(expected)]
    actual = actual[~np.isnan(actual)]
    if len(expected) == 0 or len(actual) == 0:
        return float("inf")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)) if edges is None else edges)
    if len(edges) < 2:  # a constant feature: compare the share equal to that constant
        same_e, same_a = 1.0, float(np.mean(actual == edges[0]))
        e, a = np.array([same_e, 1e-6]), np.array([max(same_a, 1e-6), max(1 - same_a, 1e-6)])
    else:
        edges[0], edges[-1] = -np.inf, np.inf
        e = np.histogram(expected, edges)[0] / len(expected)
        a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))
