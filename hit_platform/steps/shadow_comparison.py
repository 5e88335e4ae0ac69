"""The challenger against the champion on the same live songs: what `ml/shadow_evaluation` and its
`shadow_gate` judge.

Every pair is one song the champion answered (`ops.inference_log`) and the challenger scored off the
response path (`ops.shadow_log`), joined on (request_id, item). A song is its features, counted and
weighted once however often a client sent it; its labels are those of the lake's own song with those
features (`ml.features`), never of a spotify_id the client chose. Agreement needs no labels: per
country the mean |challenger - champion| probability, the PSI of the challenger's probabilities
against the champion's (in tenths of probability, see PSI_GRIDS), and how often the country's place in the top 5 agrees; per song the share
of the champion's top-5 countries the challenger also ranks top 5. Once labels arrive for enough of
the shadowed songs (those outside the train split), both models' ROC AUC on those very songs.
What the figures must be for the challenger to be promoted is `domain/promotion.py`'s `ShadowComparison.judge`.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np

from hit_platform.adapters.lake.tables import SHADOW_EVALUATIONS_DDL, _q, table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
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


def _pairs_sql(what: str) -> str:
    """The shadowed pairs of one (champion, challenger) version pair ($champion, $challenger): a challenger
    score (`s`) joined to the champion's answer it scored (`l`), which carries the song's features."""
    return f"""SELECT {what} FROM ops.shadow_log s JOIN ops.inference_log l USING (request_id, item)
        WHERE s.champion_model_version = $champion AND s.shadow_model_version = $challenger AND l.status = 200
          AND l.model_version = s.champion_model_version"""


# A song is what the model sees: its features, not a spotify_id the client may choose or repeat.
SONG = ", ".join(f"l.{_q(c)}" for c in FEATURE_COLUMNS)


def shadowed_songs(con: duckdb.DuckDBPyConnection, champion: str, challenger: str) -> int:
    """How many distinct songs (by their features) the challenger has scored beside this champion (0 without a
    shadow log): a client repeating one song many times shadows one song."""
    if not (table_exists(con, "ops", "shadow_log") and table_exists(con, "ops", "inference_log")):
        return 0
    return con.execute(f"SELECT count(*) FROM ({_pairs_sql('DISTINCT ' + SONG)})",
                       {"champion": str(champion), "challenger": str(challenger)}).fetchall()[0][0]


def _lake_songs(con: duckdb.DuckDBPyConnection) -> str | None:
    """The lake's own songs by their features (ml.features), those one song alone has: labels join on them."""
    if not table_exists(con, "ml", "features"):
        return None
    cols = ", ".join(_q(c) for c in FEATURE_COLUMNS)
    return f"SELECT {cols}, any_value(spotify_id) AS lake_song FROM ml.features GROUP BY ALL HAVING count(*) = 1"


def compare(con: duckdb.DuckDBPyConnection, champion: str, challenger: str, *,
            min_labelled: int = 1) -> ShadowComparison:
    """The comparison of the two versions on every distinct song the challenger shadowed beside this champion,
    each song once (its first shadowed answer), however often it was sent."""
    out = ShadowComparison(str(champion), str(challenger))
    if not (table_exists(con, "ops", "shadow_log") and table_exists(con, "ops", "inference_log")):
        return out
    params = {"champion": out.champion_version, "challenger": out.challenger_version}
    out.answers, out.requests = con.execute(
        f"SELECT count(*), count(DISTINCT request_id) FROM ({_pairs_sql('s.request_id')})", params).fetchall()[0]
    probs = ", ".join(f"l.probabilities.{_q(c)} AS a_{i}, s.probabilities.{_q(c)} AS b_{i}"
                      for i, c in enumerate(COUNTRIES))
    lake_songs = _lake_songs(con)
    join = (f"LEFT JOIN ({lake_songs}) m ON " + " AND ".join(f"m.{_q(c)} = p.{_q(c)}" for c in FEATURE_COLUMNS)
            if lake_songs else "")
    rows = con.execute(f"""
        WITH p AS ({_pairs_sql(f"s.request_id, s.item, s.received_at, {SONG}, {probs}")}
                   QUALIFY row_number() OVER (PARTITION BY {SONG} ORDER BY s.received_at, s.request_id, s.item) = 1)
        SELECT p.*, {'m.lake_song' if lake_songs else 'CAST(NULL AS VARCHAR) AS lake_song'} FROM p {join}
        ORDER BY p.received_at, p.request_id, p.item""", params).fetchnumpy()
    if len(rows["request_id"]) == 0:
        return out
    A = np.column_stack([np.asarray(rows[f"a_{i}"], dtype=np.float64) for i in range(len(COUNTRIES))])
    B = np.column_stack([np.asarray(rows[f"b_{i}"], dtype=np.float64) for i in range(len(COUNTRIES))])
    out.songs = len(A)
    out.first_at, out.last_at = rows["received_at"][0], rows["received_at"][-1]
    diff = np.abs(B - A).mean(axis=0)
    top_a, top_b = _top(A), _top(B)
    agree = (top_a == top_b).mean(axis=0)
    out.mean_abs_diff = {c: float(d) for c, d in zip(COUNTRIES, diff)}
    out.top5_agreement = {c: float(a) for c, a in zip(COUNTRIES, agree)}
    out.prediction_psi = {c: prediction_psi(A[:, j], B[:, j]) for j, c in enumerate(COUNTRIES)}
    out.top5_overlap = float((top_a & top_b).sum(axis=1).mean() / TOP)
    # labels: of the lake's own song with these very features (not a spotify_id the client sent), outside the
    # train split
    ids = np.array(np.ma.asarray(rows["lake_song"]).tolist(), dtype=object)  # a NULL (no such lake song) -> None
    keep = np.flatnonzero(np.array([i is not None for i in ids], dtype=bool))
    if len(keep) and table_exists(con, "core", "song_labels"):
        labels = served_labels(con, list(ids[keep]))
        known = keep[np.isin(ids[keep], labels.index.to_numpy())]
        out.labelled_songs = len(known)
        if len(known) >= max(2, min_labelled):
            Y = labels.loc[ids[known], list(COUNTRIES)].fillna(False).to_numpy(bool)
            out.champion_roc_auc = float(evaluate(Y, A[known])["mean_roc_auc"])
            out.challenger_roc_auc = float(evaluate(Y, B[known])["mean_roc_auc"])
    return out


def record(con: duckdb.DuckDBPyConnection, cmp: ShadowComparison | None, champion: str | None, promote: bool,
           decision: str, run_id: str, at: datetime) -> None:
    """One row of ml.shadow_evaluations: the judgement as the run `run_id` computed it (`cmp` None: there was no
    challenger to judge). Inside a transaction the caller holds (`Lake.write`)."""
    con.execute(SHADOW_EVALUATIONS_DDL)
    c = cmp or ShadowComparison(str(champion) if champion else None, None)
    worst = (lambda d: max(d.values()) if d else None)
    con.execute("INSERT INTO ml.shadow_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [at, run_id, c.champion_version, c.challenger_version, c.songs, c.answers, c.requests,
                 c.labelled_songs, worst(c.mean_abs_diff), None if c.top5_overlap != c.top5_overlap else c.top5_overlap,
                 worst(c.prediction_psi), c.champion_roc_auc, c.challenger_roc_auc, promote, decision])


def recorded(con: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    """The newest ml.shadow_evaluations row Dagster run `run_id` wrote, as a dict (None: it wrote none). A
    judgement with no challenger reads as challenger_version "none", as its metadata says."""
    if not run_id or not table_exists(con, "ml", "shadow_evaluations"):
        return None
    df = con.execute("SELECT * FROM ml.shadow_evaluations WHERE dagster_run_id = ? ORDER BY evaluated_at DESC "
                     "LIMIT 1", [run_id]).df()
    if df.empty:
        return None
    row = {k: (None if v != v else v) for k, v in df.iloc[0].to_dict().items()}  # NaN (a NULL) -> None
    return row | {"challenger_version": row["challenger_version"] or "none",
                  "champion_version": row["champion_version"] or "none", "promote": bool(row["promote"])}


def newest(con: duckdb.DuckDBPyConnection) -> ShadowComparison | None:
    """The newest challenger against its champion (`latest_pair`), or None when none has shadowed one."""
    pair = latest_pair(con)
    return compare(con, *pair) if pair else None
