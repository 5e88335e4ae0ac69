"""How the serving model does before the labels arrive: the label-free estimate per country
(`domain/performance_estimate.py`) of the songs it answered, stored in `ops.performance_estimates`,
and, once those songs' labels are in the lake, the realized value beside each estimate.

Two populations are estimated:
- `served`: the songs the model answered 200 in the monitoring window (`ops.inference_log`), one
  row per spotify_id (its latest answer), plus every item sent without an id;
- `batch`: the model's latest batch predictions (`ml.batch_predictions`), songs outside its train
  split.

A country counts as degraded when its estimated ROC AUC, up to the top of its interval, is more
than `max_estimated_auc_drop` below the ROC AUC the model had on its test split, among countries
whose probabilities add up to at least `min_expected_positives` hits (fewer expected hits: the
estimate is too uncertain to judge). More than `max_degraded_countries` degraded countries is a
breach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd

from hit_platform.adapters.lake.tables import PERFORMANCE_ESTIMATES_DDL, PROB_COLUMNS, _q, table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.models import evaluate
from hit_platform.domain.models.calibration import expected_calibration_error
from hit_platform.domain.performance_estimate import ModelError, estimate, model_error
from hit_platform.settings import MonitorThresholds
from hit_platform.steps.monitors import MonitorResult

TABLE = "ops.performance_estimates"
METRICS = ("roc_auc", "log_loss")
SOURCES = ("served", "batch")
REALIZE_DAYS = 60  # estimates older than this are not realized again
# an estimate is realized when first judged, then again as its window turns each of these ages: labels mature
# over weeks, and monitors every 15 minutes estimate 96 windows a day, so realizing every window of the last
# 60 days on every run would redo thousands of them each time; this way each window is realized five times
REALIZE_AGES = tuple(timedelta(days=d) for d in (1, 7, 28, 56))


@dataclass(frozen=True)
class Reference:
    """What the model did where labels were known (its test split), per country, in COUNTRIES order."""

    roc_auc: np.ndarray
    log_loss: np.ndarray
    calibration_error: np.ndarray
    auc_model_error: ModelError | None = None  # `performance_estimate.model_error` on the test split

    @classmethod
    def from_test(cls, Y: np.ndarray, P: np.ndarray) -> Reference:
        m = evaluate(Y, P)
        return cls(np.array([m["roc_auc"][c] for c in COUNTRIES]), np.array([m["log_loss"][c] for c in COUNTRIES]),
                   expected_calibration_error(Y, P), model_error(Y, P))


@dataclass(frozen=True)
class Population:
    """The songs one estimate is about: ids (None for an item sent without one) and probabilities."""

    source: str
    window_start: datetime
    window_end: datetime
    spotify_ids: np.ndarray
    P: np.ndarray  # (songs, 72)

    def __len__(self) -> int:
        return len(self.P)


@dataclass
class EstimateResult:
    model_version: str | None
    source: str
    breached: bool
    summary: str
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # ops.performance_estimates rows
    degraded: list[str] = field(default_factory=list)
    max_degraded: int = 0

    def monitor_result(self) -> MonitorResult:
        """The figures `ops.monitor_metrics` keeps of every monitor (the per-country rows have their own table)."""
        metrics = {"songs": float(self.rows["songs"].iloc[0]) if not self.rows.empty else 0.0}
        if not self.rows.empty:
            auc = self.rows[self.rows["metric"] == "roc_auc"]
            metrics |= {"degraded_countries": float(len(self.degraded)),
                        "mean_estimated_roc_auc": float(np.nanmean(auc["estimate"])),
                        "mean_test_roc_auc": float(np.nanmean(auc["reference"]))}
        return MonitorResult(f"performance_estimate_{self.source}", self.model_version, self.breached, self.summary,
                             metrics, {"degraded_countries": float(self.max_degraded)} if not self.rows.empty else {})

    def worst(self, n: int = 10) -> pd.DataFrame:
        """The n countries with the largest estimated ROC AUC drop below their test AUC."""
        if self.rows.empty:
            return self.rows
        auc = self.rows[self.rows["metric"] == "roc_auc"].copy()
        auc["drop"] = auc["reference"] - auc["estimate"]
        return auc.sort_values("drop", ascending=False).head(n)[
            ["country", "estimate", "lower", "upper", "reference", "drop"]]


def _probabilities(prefix: str = "") -> str:
    return ", ".join(f"{prefix}{p}" for p in PROB_COLUMNS)


def served_population(con: duckdb.DuckDBPyConnection, model_version: str, start: datetime,
                      end: datetime) -> Population:
    """Songs answered 200 by `model_version` with `start <= received_at <= end`: the latest answer per spotify_id,
    and every item without one; songs of the train split left out, as from the batch. A model's probabilities
    on the songs it was fitted to are sharper than on others (their labels are in them), so its realized AUC
    there runs above any estimate: on the year soak, half the served songs were training songs, and the
    realized AUC ran 0.063 over the estimate on them against 0.010 on the others."""
    if not table_exists(con, "ops", "inference_log"):
        return Population("served", start, end, np.array([], dtype=object), np.empty((0, len(COUNTRIES))))
    probs = ", ".join(f'probabilities.{_q(c)} AS {p}' for c, p in zip(COUNTRIES, PROB_COLUMNS))
    train = ("AND (spotify_id IS NULL OR spotify_id NOT IN (SELECT spotify_id FROM ml.splits WHERE split = 'train'))"
             if table_exists(con, "ml", "splits") else "")
    df = con.execute(f"""
        SELECT spotify_id, {probs} FROM ops.inference_log
        WHERE status = 200 AND item IS NOT NULL AND model_version = ? AND received_at BETWEEN ? AND ? {train}
        QUALIFY spotify_id IS NULL
             OR row_number() OVER (PARTITION BY spotify_id ORDER BY received_at DESC, request_id, item) = 1
        ORDER BY spotify_id NULLS LAST, request_id, item""", [model_version, start, end]).df()
    return Population("served", start, end, df["spotify_id"].to_numpy(object), df[PROB_COLUMNS].to_numpy(float))


def batch_population(con: duckdb.DuckDBPyConnection, model_version: str,
                     predicted_at: datetime | None = None) -> Population | None:
    """The batch `model_version` predicted at `predicted_at` (default: its latest), songs outside the train split;
    None when it made no batch."""
    if not table_exists(con, "ml", "batch_predictions"):
        return None
    if predicted_at is None:
        predicted_at = con.execute("SELECT max(predicted_at) FROM ml.batch_predictions WHERE model_version = ?",
                                   [model_version]).fetchall()[0][0]
        if predicted_at is None:
            return None
    splits = table_exists(con, "ml", "splits")
    df = con.execute(f"""
        SELECT b.spotify_id, {_probabilities('b.')} FROM ml.batch_predictions b
        {'LEFT JOIN ml.splits s USING (spotify_id)' if splits else ''}
        WHERE b.model_version = ? AND b.predicted_at = ? {"AND coalesce(s.split, 'new') <> 'train'" if splits else ''}
        ORDER BY b.spotify_id""", [model_version, predicted_at]).df()
    return Population("batch", predicted_at, predicted_at, df["spotify_id"].to_numpy(object),
                      df[PROB_COLUMNS].to_numpy(float))


def estimate_population(pop: Population, model_version: str, ref: Reference, t: MonitorThresholds,
                        run_id: str | None = None, now: datetime | None = None) -> EstimateResult:
    """The estimate of every country and metric for one population, and whether it breaches."""
    n = len(pop)
    where = f"{pop.source} songs" + (f" of the last {t.window_hours:g} h" if pop.source == "served" else "")
    if n < t.min_rows:
        return EstimateResult(model_version, pop.source, False,
                              f"{n} {where}: fewer than {t.min_rows}, not estimated")
    e = estimate(pop.P, calibration_error=ref.calibration_error, auc_model_error=ref.auc_model_error)
    now = now or datetime.now(timezone.utc)
    frames = []
    for metric, (est, lo, hi), reference in (
            ("roc_auc", (e.roc_auc, e.roc_auc_lower, e.roc_auc_upper), ref.roc_auc),
            ("log_loss", (e.log_loss, e.log_loss_lower, e.log_loss_upper), ref.log_loss)):
        frames.append(pd.DataFrame({"country": COUNTRIES, "metric": metric, "estimate": est, "lower": lo,
                                    "upper": hi, "reference": reference}))
    rows = pd.concat(frames, ignore_index=True)
    rows.insert(0, "window_end", pop.window_end)
    rows.insert(0, "window_start", pop.window_start)
    rows.insert(0, "source", pop.source)
    rows.insert(0, "model_version", model_version)
    rows.insert(0, "estimated_at", now)
    rows["songs"] = n
    rows["dagster_run_id"] = run_id
    judged = e.expected_positives >= t.min_expected_positives
    drop = ref.roc_auc - e.roc_auc
    # degraded: the whole interval lies beyond the drop, so the sampling noise of a few hundred songs
    # and the model's own calibration error cannot explain it
    sure_drop = ref.roc_auc - e.roc_auc_upper
    degraded = [c for c, j, d in zip(COUNTRIES, judged, sure_drop)
                if j and np.isfinite(d) and d > t.max_estimated_auc_drop]
    breached = len(degraded) > t.max_degraded_countries
    worst = int(np.nanargmax(np.where(judged, drop, np.nan))) if judged.any() else None
    head = (f"estimated ROC AUC (its whole interval) more than {t.max_estimated_auc_drop} below test in "
            f"{len(degraded)} countries ({', '.join(degraded[:8])}{', ...' if len(degraded) > 8 else ''}), more "
            f"than {t.max_degraded_countries}" if breached else
            f"estimated ROC AUC (its whole interval) more than {t.max_estimated_auc_drop} below test in "
            f"{len(degraded)} countries, at most {t.max_degraded_countries}")
    if worst is not None:
        head += (f"; worst {COUNTRIES[worst]}: {e.roc_auc[worst]:.3f} [{e.roc_auc_lower[worst]:.3f}, "
                 f"{e.roc_auc_upper[worst]:.3f}] vs test {ref.roc_auc[worst]:.3f}")
    summary = (f"{head}; mean estimated ROC AUC {np.nanmean(e.roc_auc):.4f} vs test {np.nanmean(ref.roc_auc):.4f} "
               f"over {n} {where} ({int(judged.sum())} countries judged)")
    return EstimateResult(model_version, pop.source, breached, summary, rows, degraded, t.max_degraded_countries)


def append(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> None:
    """Append estimate rows (inside a transaction the caller holds: `Lake.write`)."""
    con.execute(PERFORMANCE_ESTIMATES_DDL)
    con.register("estimate_rows", rows)
    try:
        con.execute(f"""INSERT INTO {TABLE} BY NAME
            SELECT * EXCLUDE (estimated_at, window_start, window_end),
                   estimated_at::TIMESTAMPTZ AS estimated_at, window_start::TIMESTAMPTZ AS window_start,
                   window_end::TIMESTAMPTZ AS window_end FROM estimate_rows""")
    finally:
        con.unregister("estimate_rows")


def served_labels(con: duckdb.DuckDBPyConnection, ids: list[str]) -> pd.DataFrame:
    """Per-country labels of the songs among `ids` the lake has labels for, outside the train split."""
    pivot = ", ".join(f"bool_or(l.label) FILTER (WHERE l.country = '{c}') AS {_q(c)}" for c in COUNTRIES)
    splits = table_exists(con, "ml", "splits")
    return con.execute(f"""
        SELECT l.spotify_id, {pivot} FROM core.song_labels l
        {'LEFT JOIN ml.splits s USING (spotify_id)' if splits else ''}
        WHERE l.spotify_id IN (SELECT unnest($ids)) {"AND coalesce(s.split, 'new') <> 'train'" if splits else ''}
        GROUP BY l.spotify_id""", {"ids": ids}).df().set_index("spotify_id")


def _served_windows(con: duckdb.DuckDBPyConnection, windows: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(spotify_ids, probabilities) of the songs with an id that each (model_version, start, end) window answered
    200, the latest answer per song (as `served_population`), all windows in one query over the log."""
    if not windows or not table_exists(con, "ops", "inference_log"):
        return [(np.array([], dtype=object), np.empty((0, len(COUNTRIES)))) for _ in windows]
    probs = ", ".join(f'l.probabilities.{_q(c)} AS {p}' for c, p in zip(COUNTRIES, PROB_COLUMNS))
    con.register("realize_windows", pd.DataFrame({
        "i": range(len(windows)), "model_version": [w[0] for w in windows],
        "window_start": pd.to_datetime([w[1] for w in windows], utc=True),
        "window_end": pd.to_datetime([w[2] for w in windows], utc=True)}))
    try:
        df = con.execute(f"""
            SELECT w.i, l.spotify_id, {probs} FROM ops.inference_log l
            JOIN realize_windows w ON l.model_version = w.model_version
             AND l.received_at BETWEEN w.window_start AND w.window_end
            WHERE l.status = 200 AND l.item IS NOT NULL AND l.spotify_id IS NOT NULL
              AND l.received_at BETWEEN (SELECT min(window_start) FROM realize_windows)
                                    AND (SELECT max(window_end) FROM realize_windows)
            QUALIFY row_number() OVER (PARTITION BY w.i, l.spotify_id
                                       ORDER BY l.received_at DESC, l.request_id, l.item) = 1
            ORDER BY w.i, l.spotify_id""").df()
    finally:
        con.unregister("realize_windows")
    out = []
    for i in range(len(windows)):
        part = df[df["i"] == i]
        out.append((part["spotify_id"].to_numpy(object), part[PROB_COLUMNS].to_numpy(float)))
    return out


def realize(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> int:
    """Write, beside each estimate of the last REALIZE_DAYS days never realized or whose window has turned one
    of REALIZE_AGES since it was, the value the labels in the lake now give on the same songs (those with a
    spotify_id and labels, outside the train split); returns rows updated. Inside a transaction the caller holds
    (`Lake.write`): the labels it reads are those it writes beside.

    The served windows' songs are read in one query and the labels of all their songs in another, so a
    daily monitor's cost does not grow with the windows it realizes again (bench/bench_year.py: one query
    pair per window made ops/delayed_label_evaluation 2.5x slower within a simulated week)."""
    now = now or datetime.now(timezone.utc)
    if not (table_exists(con, "ops", "performance_estimates") and table_exists(con, "core", "song_labels")):
        return 0
    groups = [(v, source, start, end) for v, source, start, end, last in con.execute(
        f"""SELECT model_version, source, window_start, window_end, max(realized_at) FROM {TABLE}
            WHERE estimated_at >= ? GROUP BY ALL ORDER BY ALL""", [now - timedelta(days=REALIZE_DAYS)]).fetchall()
        if last is None or any(last < end + age <= now for age in REALIZE_AGES)]
    served = [(v, start, end) for v, source, start, end in groups if source == "served"]
    populations = dict(zip(served, _served_windows(con, served)))
    windows = []
    for version, source, start, end in groups:
        if source == "served":
            ids, P = populations[(version, start, end)]
        else:
            pop = batch_population(con, version, end)
            if pop is None:
                continue
            has_id = np.array([i is not None for i in pop.spotify_ids], dtype=bool)
            ids, P = pop.spotify_ids[has_id], pop.P[has_id]
        if len(ids) >= 2:
            windows.append((version, source, start, end, ids, P))
    labels = served_labels(con, sorted({i for w in windows for i in w[4]})) if windows else pd.DataFrame()
    frames = []
    for version, source, start, end, ids, P in windows:
        known = np.isin(ids, labels.index.to_numpy())
        if known.sum() < 2:
            continue
        Y = labels.loc[ids[known], list(COUNTRIES)].fillna(False).to_numpy(bool)
        m = evaluate(Y, P[known])
        for metric in METRICS:
            frames.append(pd.DataFrame({
                "model_version": version, "source": source, "window_start": start, "window_end": end,
                "country": COUNTRIES, "metric": metric,
                "realized": [m[metric][c] for c in COUNTRIES], "realized_songs": int(known.sum())}))
    if not frames:
        return 0
    realized = pd.concat(frames, ignore_index=True)
    con.register("realized_rows", realized)
    try:
        return con.execute(f"""
            UPDATE {TABLE} e SET realized = r.realized, realized_songs = r.realized_songs, realized_at = ?
            FROM realized_rows r
            WHERE e.model_version = r.model_version AND e.source = r.source AND e.country = r.country
              AND e.metric = r.metric AND e.window_start = r.window_start::TIMESTAMPTZ
              AND e.window_end = r.window_end::TIMESTAMPTZ""", [now]).fetchall()[0][0]
    finally:
        con.unregister("realized_rows")


def latest(con: duckdb.DuckDBPyConnection, source: str | None = None, metric: str = "roc_auc") -> pd.DataFrame:
    """The most recent estimate per country (of `source`; default: the newest, `served` first on a tie),
    worst first: the largest fall of ROC AUC, or rise of log loss, from the test split's value."""
    if not table_exists(con, "ops", "performance_estimates"):
        return pd.DataFrame()
    where, params = ("AND source = ?", [source]) if source else ("", [])
    newest = con.execute(f"SELECT estimated_at, source FROM {TABLE} WHERE metric = ? {where} "
                         "ORDER BY estimated_at DESC, source DESC LIMIT 1", [metric, *params]).fetchall()
    if not newest:
        return pd.DataFrame()
    df = con.execute(f"SELECT * FROM {TABLE} WHERE estimated_at = ? AND source = ? AND metric = ?",
                     [*newest[0], metric]).df()
    sign = 1 if metric == "roc_auc" else -1
    df["change"] = sign * (df["estimate"] - df["reference"])
    return df.sort_values("change").reset_index(drop=True)
