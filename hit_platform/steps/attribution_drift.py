"""Attribution drift: does the served model still rely on the features it relied on for its batch?

A feature whose pipeline broke upstream (stuck at a constant, sent in the wrong units) can leave the
served probabilities looking ordinary while the model's reasons change: the stuck feature stops
explaining anything, another takes its place. So per country c, the importance of feature j is the mean
|attribution| over songs, and its share s_cj = I_cj / sum_j I_cj (the country's importance profile,
whatever the scale or the country's base rate). The served profile (exact attributions of a bounded
sample of the newest songs the version served in the window, from their logged features) is compared
with the batch's (`ml.batch_explanations`, same version) by the total variation distance
TV_c = 1/2 sum_j |s_cj(served) - s_cj(batch)|: the share of the country's reliance that moved to other
features, 0 (same reasons) to 1 (none in common). A share shift of one feature alone would miss a
reliance spread over several features; a rank measure over 14 features jumps with ties among the
unimportant ones. Breached when the median TV over the 72 countries exceeds
`HIT_MONITOR_MAX_ATTRIBUTION_SHIFT` (0.06): a broken feature moves every country that uses it, while one
country's profile over a few hundred songs is noisy (its worst TV is reported, not judged). Measured on
a trees model of the tests' world (tests/defs/test_attribution_drift.py), 150 served songs against 200
batch songs: other songs of the same world 0.018-0.032; the driving feature (tempo) stuck at one value
0.08-0.15, danceability stuck 0.13, loudness sent as amplitude instead of dB 0.07, duration in seconds
0.045, a feature the model hardly uses (valence) stuck 0.03 (rightly quiet: nothing the model relies on
moved). The feature whose share moved most (mean over countries of |share change|) is named.

Not judged (never a crash): no served songs or fewer than `min_rows` with every feature in the window,
no batch explanations of the version (or fewer than `min_rows` songs), or a version with no declared
background (said, with how to get one).
"""

from __future__ import annotations

import numpy as np

import duckdb

from hit_platform.adapters.lake.tables import table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import Explainer
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.settings import MonitorThresholds
from hit_platform.steps.monitors import MonitorResult

NAME = "attribution_drift"


def served_sample(con: duckdb.DuckDBPyConnection, t: MonitorThresholds, model_version: str) -> np.ndarray:
    """(n, 14): the features of the newest `t.attribution_sample` songs answered 200 by this version in the
    window, every feature present (a stable order: newest first, then request and item)."""
    if not table_exists(con, "ops", "inference_log"):
        return np.empty((0, len(FEATURE_COLUMNS)))
    complete = " AND ".join(f"{c} IS NOT NULL" for c in FEATURE_COLUMNS)
    rows = con.execute(f"""
        SELECT {', '.join(FEATURE_COLUMNS)} FROM ops.inference_log
        WHERE status = 200 AND item IS NOT NULL AND model_version = ? AND {complete}
          AND received_at >= now() - INTERVAL {float(t.window_hours) * 3600:.0f} SECOND
        ORDER BY received_at DESC, request_id, item LIMIT {int(t.attribution_sample)}""", [model_version]).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURE_COLUMNS))


def batch_importance(con: duckdb.DuckDBPyConnection, model_version: str) -> tuple[np.ndarray | None, int]:
    """((72, 14) mean |attribution| of the version's batch explanations, or None; the songs they cover)."""
    if not table_exists(con, "ml", "batch_explanations"):
        return None, 0
    songs = con.execute("SELECT count(DISTINCT spotify_id) FROM ml.batch_explanations WHERE model_version = ?",
                        [model_version]).fetchall()[0][0]
    if not songs:
        return None, 0
    found = con.execute("""SELECT country, feature, avg(abs(attribution)) FROM ml.batch_explanations
                           WHERE model_version = ? GROUP BY ALL""", [model_version]).fetchall()
    out = np.zeros((len(COUNTRIES), len(FEATURE_COLUMNS)))
    c_index, f_index = {c: i for i, c in enumerate(COUNTRIES)}, {f: j for j, f in enumerate(FEATURE_COLUMNS)}
    for country, feature, value in found:
        out[c_index[country], f_index[feature]] = value
    return out, int(songs)


def shares(importance: np.ndarray) -> np.ndarray:
    """Each country's importance profile: its features' shares of its total mean |attribution| (a country
    whose attributions are all 0 gets equal shares: it relies on nothing in particular)."""
    total = importance.sum(axis=1, keepdims=True)
    return np.where(total > 0, importance / np.where(total > 0, total, 1), 1.0 / importance.shape[1])


def not_judged(model_version: str | None, why: str, **metrics: float) -> MonitorResult:
    return MonitorResult(NAME, model_version, False, f"{why}: not judged", dict(metrics))


def attribution_drift(t: MonitorThresholds, model_version: str, served: np.ndarray, explainer: Explainer,
                      batch: np.ndarray, batch_songs: int) -> MonitorResult:
    """Judge the served sample's importance profiles against the batch's (see the module docstring)."""
    a = explainer.explain(served)
    served_shares, batch_shares = shares(np.abs(a.phi).mean(axis=0)), shares(batch)
    tv = 0.5 * np.abs(served_shares - batch_shares).sum(axis=1)  # (72,)
    median, worst = float(np.median(tv)), int(np.argmax(tv))
    moved = np.abs(served_shares - batch_shares).mean(axis=0)  # each feature's share moved, mean over countries
    feature = int(np.argmax(moved))
    name = FEATURE_COLUMNS[feature]
    breached = median > t.max_attribution_shift
    said = (f"{name}'s share of a country's attributions moved most: by {moved[feature]:.3f} on average (mean share "
            f"{batch_shares[:, feature].mean():.3f} in the batch, {served_shares[:, feature].mean():.3f} served)")
    summary = (f"the model relies on different features when serving: median importance shift {median:.3f} > "
               f"{t.max_attribution_shift} over 72 countries; {said}; a feature's pipeline may have broken upstream"
               if breached else f"median importance shift {median:.3f} within {t.max_attribution_shift} "
                                f"(worst {COUNTRIES[worst]} {tv[worst]:.3f}); largest move: {said}")
    return MonitorResult(NAME, model_version, breached, summary + f" ({len(served)} served songs, {batch_songs} "
                         f"batch songs)",
                         {"served_songs": len(served), "batch_songs": batch_songs, "median_importance_shift": median,
                          "max_importance_shift": float(tv[worst])},
                         {"median_importance_shift": t.max_attribution_shift},
                         {**{f"share_moved_{f}": float(moved[j]) for j, f in enumerate(FEATURE_COLUMNS)},
                          **{f"importance_shift_{c}": float(tv[i]) for i, c in enumerate(COUNTRIES)}})
