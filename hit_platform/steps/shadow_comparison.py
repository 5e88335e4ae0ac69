"""The challenger against the champion on the same live songs: what `ml/shadow_evaluation` and its
`shadow_gate` judge.

Every pair is one song the champion answered (`ops.inference_log`) and the challenger scored off the
response path (`ops.shadow_log`), joined on (request_id, item). Agreement needs no labels: per
country the mean |challenger - champion| probability, the PSI of the challenger's probabilities
against the champion's (in tenths of probability, see PSI_GRIDS), and how often the country's place in the top 5 agrees; per song the share
of the champion's top-5 countries the challenger also ranks top 5. Once labels arrive for enough of
the shadowed songs (those outside the train split), both models' ROC AUC on those very songs.
What the figures must be for the challenger to be promoted is `domain/promotion.py`'s `ShadowComparison.judge`.
"""

from __future__ import annotations

import duckdb
import numpy as np

from hit_platform.adapters.lake.tables import _q, table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.drift import psi
from hit_platform.domain.models import evaluate
from hit_platform.domain.promotion import ShadowComparison
from hit_platform.steps.performance_estimates import served_labels

TOP = 5
# PSI of probabilities in tenths of [0, 1], the smaller of two grids offset by half a tenth. Quantile
# bins of a country whose probabilities sit in a narrow peak are a few millionths wide, and a single
# grid has an edge through some peak (a country answered ~0.0999 by one model and ~0.1002 by the
# other): a harmless shift would read as a huge PSI. A shift under 0.05 crosses at most one grid's edge.
PSI_GRIDS = (np.linspace(0.0, 1.0, 11), np.concatenate([[0.0], np.linspace(0.05, 0.95, 10), [1.0]]))


def prediction_psi(champion: np.ndarray, challenger: np.ndarray) -> float:
    return min(psi(champion, challenger, edges=grid) for grid in PSI_GRIDS)


def _top(P: np.ndarray) -> np.ndarray:
    """(n, 72) booleans: each song's TOP most likely countries."""
    idx = np.argpartition(-P, TOP - 1, axis=1)[:, :TOP]
    mask = np.zeros(P.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def latest_pair(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """(champion, challenger) of the newest shadow score, or None."""
    if not table_exists(con, "ops", "shadow_log"):
        return None
    row = con.execute("SELECT champion_model_version, shadow_model_version FROM ops.shadow_log "
                      "ORDER BY received_at DESC LIMIT 1").fetchall()
    return tuple(row[0]) if row else None


def shadowed_songs(con: duckdb.DuckDBPyConnection, champion: str, challenger: str) -> int:
    """How many songs the challenger has scored beside this champion (0 without a shadow log)."""
    if not table_exists(con, "ops", "shadow_log"):
        return 0
    return con.execute("SELECT count(*) FROM ops.shadow_log WHERE champion_model_version = ? "
                       "AND shadow_model_version = ?", [champion, challenger]).fetchall()[0][0]


def compare(con: duckdb.DuckDBPyConnection, champion: str, challenger: str, *,
            min_labelled: int = 1) -> ShadowComparison:
    """The comparison of the two versions on every song the challenger shadowed beside this champion."""
    out = ShadowComparison(str(champion), str(challenger))
    cols = ", ".join(f"l.probabilities.{_q(c)}, s.probabilities.{_q(c)}" for c in COUNTRIES)
    if not (table_exists(con, "ops", "shadow_log") and table_exists(con, "ops", "inference_log")):
        return out
    rows = con.execute(f"""
        SELECT s.request_id, s.spotify_id, s.received_at, {cols}
        FROM ops.shadow_log s JOIN ops.inference_log l USING (request_id, item)
        WHERE s.champion_model_version = ? AND s.shadow_model_version = ? AND l.status = 200
          AND l.model_version = s.champion_model_version
        ORDER BY s.received_at, s.request_id, s.item""", [out.champion_version, out.challenger_version]
                       ).fetchnumpy()
    if len(rows["request_id"]) == 0:
        return out
    both = np.column_stack([np.asarray(rows[k], dtype=np.float64) for k in list(rows)[3:]])
    A, B = both[:, 0::2], both[:, 1::2]  # champion, challenger: (n, 72) each
    ids = np.asarray(rows["spotify_id"], dtype=object)
    out.songs, out.requests = len(A), len(set(rows["request_id"]))
    out.first_at, out.last_at = rows["received_at"][0], rows["received_at"][-1]
    diff = np.abs(B - A).mean(axis=0)
    top_a, top_b = _top(A), _top(B)
    agree = (top_a == top_b).mean(axis=0)
    out.mean_abs_diff = {c: float(d) for c, d in zip(COUNTRIES, diff)}
    out.top5_agreement = {c: float(a) for c, a in zip(COUNTRIES, agree)}
    out.prediction_psi = {c: prediction_psi(A[:, j], B[:, j]) for j, c in enumerate(COUNTRIES)}
    out.top5_overlap = float((top_a & top_b).sum(axis=1).mean() / TOP)
    # labels: one pair per song (its first shadowed answer), songs outside the train split
    has_id = np.array([i is not None for i in ids])
    _, first = np.unique(ids[has_id], return_index=True)
    keep = np.flatnonzero(has_id)[first]
    if len(keep) and table_exists(con, "core", "song_labels"):
        labels = served_labels(con, list(ids[keep]))
        known = keep[np.isin(ids[keep], labels.index.to_numpy())]
        out.labelled_songs = len(known)
        if len(known) >= max(2, min_labelled):
            Y = labels.loc[ids[known], list(COUNTRIES)].fillna(False).to_numpy(bool)
            out.champion_roc_auc = float(evaluate(Y, A[known])["mean_roc_auc"])
            out.challenger_roc_auc = float(evaluate(Y, B[known])["mean_roc_auc"])
    return out


def newest(con: duckdb.DuckDBPyConnection) -> ShadowComparison | None:
    """The newest challenger against its champion (`latest_pair`), or None when none has shadowed one."""
    pair = latest_pair(con)
    return compare(con, *pair) if pair else None
