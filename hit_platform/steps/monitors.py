"""Monitors of the deployed model, computed from the lake.

- served feature drift: PSI of each feature of the songs served (ops.inference_log)
  against the serving model's training split;
- prediction drift: PSI of each country's served probabilities against the
  model's own predictions on its validation split;
- delayed-label evaluation: predictions made earlier (batch or served) scored
  against the labels the later charts revealed, next to the test AUC the model
  was promoted with;
- serving health: request rate, error rate, p50/p99 latency from the inference
  log, and the serving process's CPU and memory.

Each monitor returns a `MonitorResult`; `record` appends its figures to
`ops.monitor_metrics` (one row per metric, so analysts can plot any history).
Thresholds live in `MonitorThresholds` (env `HIT_MONITOR_<FIELD>`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb
import numpy as np
import psutil

from hit_platform.adapters.lake.tables import METRICS_DDL, table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.steps.datasets import at_version
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.drift import psi
from hit_platform.settings import MonitorThresholds
from hit_platform.domain.models import evaluate
from hit_platform.domain.region_drop import region_drops


@dataclass
class MonitorResult:
    monitor: str
    model_version: str | None
    breached: bool
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)  # name -> value
    thresholds: dict[str, float] = field(default_factory=dict)  # name -> threshold (breach when above)
    detail: dict[str, float] = field(default_factory=dict)  # e.g. PSI per feature, stored too
    regions_breached: list[str] = field(default_factory=list)  # the delayed-label monitor's regions, by name

    def metadata(self) -> dict:
        return {"breached": self.breached, "summary": self.summary, "model_version": self.model_version or "none",
                **{k: _finite(v) for k, v in self.metrics.items()},
                **{f"threshold_{k}": v for k, v in self.thresholds.items()}}


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def _window(t: MonitorThresholds) -> str:
    return f"received_at >= now() - INTERVAL {float(t.window_hours) * 3600:.0f} SECOND"


def _log_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(con, "ops", "inference_log")


def served_songs(con: duckdb.DuckDBPyConnection, t: MonitorThresholds,
                 model_version: str | None) -> dict[str, np.ndarray]:
    """Features and probabilities of the songs answered 200 in the window (by this model version)."""
    if not _log_exists(con):
        return {}
    cols = ", ".join(FEATURE_COLUMNS) + ", " + ", ".join(f'probabilities."{c}" AS "p_{c}"' for c in COUNTRIES)
    where = f"status = 200 AND item IS NOT NULL AND {_window(t)}"
    params = []
    if model_version is not None:
        where += " AND model_version = ?"
        params.append(model_version)
    return con.execute(f"SELECT {cols} FROM ops.inference_log WHERE {where}", params).fetchnumpy()


def served_feature_drift(con: duckdb.DuckDBPyConnection, t: MonitorThresholds,
                         model_version: str | None, training_snapshot: int | None) -> MonitorResult:
    served = served_songs(con, t, model_version)
    n = len(served[FEATURE_COLUMNS[0]]) if served else 0
    name = "served_feature_drift"
    if n < t.min_rows or training_snapshot is None:
        return MonitorResult(name, model_version, False, f"{n} songs served in the last {t.window_hours:g} h: "
                             f"fewer than {t.min_rows}, not judged", {"served_songs": n})
    train = con.execute(f"""SELECT {', '.join(f'f.{c}' for c in FEATURE_COLUMNS)}
        FROM {at_version('ml.features', training_snapshot)} f
        JOIN {at_version('ml.splits', training_snapshot)} s USING (spotify_id)
        WHERE s.split = 'train'""").fetchnumpy()
    scores = {c: psi(np.asarray(train[c], float), np.asarray(served[c], float)) for c in FEATURE_COLUMNS}
    worst = max(scores, key=scores.get)
    breached = scores[worst] > t.max_served_psi
    summary = (f"served {worst} drifted from training: PSI {scores[worst]:.3f} > {t.max_served_psi}" if breached
               else f"largest PSI {scores[worst]:.3f} ({worst}) within {t.max_served_psi}") + f" over {n} songs"
    return MonitorResult(name, model_version, breached, summary,
                         {"served_songs": n, "max_psi": scores[worst]}, {"max_psi": t.max_served_psi},
                         {f"psi_{c}": v for c, v in scores.items()})


def prediction_drift(con: duckdb.DuckDBPyConnection, t: MonitorThresholds, model_version: str | None,
                     reference: np.ndarray | None) -> MonitorResult:
    """`reference`: the model's probabilities on its validation split, (n, 72)."""
    served = served_songs(con, t, model_version)
    n = len(served[f"p_{COUNTRIES[0]}"]) if served else 0
    name = "prediction_drift"
    if n < t.min_rows or reference is None:
        return MonitorResult(name, model_version, False, f"{n} songs served in the last {t.window_hours:g} h: "
                             f"fewer than {t.min_rows}, not judged", {"served_songs": n})
    scores = {c: psi(reference[:, i], np.asarray(served[f"p_{c}"], float)) for i, c in enumerate(COUNTRIES)}
    worst = max(scores, key=scores.get)
    served_mean = float(np.mean([np.mean(served[f"p_{c}"]) for c in COUNTRIES]))
    breached = scores[worst] > t.max_prediction_psi
    summary = (f"served probabilities for {worst} drifted: PSI {scores[worst]:.3f} > {t.max_prediction_psi}"
               if breached else f"largest PSI {scores[worst]:.3f} ({worst}) within {t.max_prediction_psi}")
    return MonitorResult(name, model_version, breached, summary + f" over {n} songs",
                         {"served_songs": n, "max_psi": scores[worst], "mean_psi": float(np.mean(list(scores.values()))),
                          "served_mean_probability": served_mean, "reference_mean_probability": float(reference.mean())},
                         {"max_psi": t.max_prediction_psi}, {f"psi_{c}": v for c, v in scores.items()})


def delayed_label_evaluation(con: duckdb.DuckDBPyConnection, t: MonitorThresholds,
                             model_version: str, promoted_auc: float | None,
                             promoted_by_country: dict[str, float] | None = None,
                             test_songs: int | None = None) -> MonitorResult:
    """Songs this model version predicted (ml.batch_predictions, and served requests carrying a
    spotify_id) that are not in the train split, scored on the labels in the lake now. A batch
    predicted at snapshot s also counts the positives revealed since s (negative then, positive now).

    Judged on the 72-country mean (against `promoted_auc`) and, given the per-country test AUC it was
    promoted with (`promoted_by_country`, on `test_songs` songs), on each region's mean as well
    (`domain.region_drop`): a breached region is named in the summary and in `regions_breached`. The regions
    are judged a second time on the new releases, songs first charted in the last `label_recent_days` before
    the lake's newest chart day (when they are at least `min_rows` and not all of them): a region's new
    releases charting by another taste are a few hundred songs among the thousands of a version's batches,
    and would wait months to move the whole mean."""
    name = "delayed_label_evaluation"
    probs = ", ".join(f'p_{c}' for c in COUNTRIES)
    sources = []
    if table_exists(con, "ml", "batch_predictions"):
        sources.append(f"""SELECT spotify_id, predicted_at, lake_snapshot_id, {probs}
                           FROM ml.batch_predictions WHERE model_version = $v""")
    served = ", ".join(f'probabilities."{c}"' for c in COUNTRIES)
    if _log_exists(con):
        sources.append(f"""SELECT spotify_id, received_at, NULL::BIGINT, {served} FROM ops.inference_log
                           WHERE model_version = $v AND status = 200 AND spotify_id IS NOT NULL""")
    if table_exists(con, "ops", "inference_log_first_served"):  # served songs whose raw log rows expired
        sources.append(f"""SELECT spotify_id, received_at, NULL::BIGINT, {served} FROM ops.inference_log_first_served
                           WHERE model_version = $v""")
    if not sources or not table_exists(con, "core", "song_labels"):
        return MonitorResult(name, model_version, False, "no predictions or labels yet", {"songs": 0})
    pivot = ", ".join(f"bool_or(l.label) FILTER (WHERE l.country = '{c}') AS \"y_{c}\"" for c in COUNTRIES)
    # no splits table (a lake whose splits were never built): no song is known to be a training song
    splits_join = ("LEFT JOIN ml.splits s USING (spotify_id) WHERE coalesce(s.split, 'new') <> 'train'"
                   if table_exists(con, "ml", "splits") else "")
    # new releases: songs whose first chart is within the last label_recent_days of the lake's newest chart day
    new_join, new_col = ("", "false") if not table_exists(con, "core", "songs") else (
        """LEFT JOIN (SELECT spotify_id, true AS is_new FROM core.songs WHERE first_chart_date >=
                     (SELECT max(last_chart_date) FROM core.songs) - to_seconds($recent)) n USING (spotify_id)""",
        "coalesce(any_value(n.is_new), false)")
    df = con.execute(f"""
        WITH preds AS (SELECT * FROM ({' UNION ALL '.join(sources)}) AS p(spotify_id, predicted_ts, snap, {probs})
                       QUALIFY row_number() OVER (PARTITION BY spotify_id ORDER BY predicted_ts) = 1)
        SELECT p.spotify_id, any_value(p.snap) AS snap, {', '.join(f'any_value(p.p_{c}) AS p_{c}' for c in COUNTRIES)},
               {pivot}, {new_col} AS recent
        FROM preds p
        JOIN core.song_labels l USING (spotify_id)
        {new_join}
        {splits_join}
        GROUP BY p.spotify_id ORDER BY p.spotify_id""",
        {"v": model_version, **({"recent": int(t.label_recent_days * 86400)} if new_join else {})}).df()
    n = len(df)
    if n < t.min_rows:
        return MonitorResult(name, model_version, False, f"{n} predicted songs with labels outside the train "
                             f"split: fewer than {t.min_rows}, not judged", {"songs": n})
    revealed = 0
    for snap in df["snap"].dropna().unique():
        revealed += con.execute(f"""
            SELECT count(*) FROM core.song_labels now
            JOIN {at_version('core.song_labels', int(snap))} b USING (spotify_id, country)
            WHERE now.label AND NOT b.label AND spotify_id IN (SELECT unnest($ids))""",
                                {"ids": df.loc[df["snap"] == snap, "spotify_id"].tolist()}).fetchall()[0][0]
    Y, P = df[[f"y_{c}" for c in COUNTRIES]].to_numpy(bool), df[[f"p_{c}" for c in COUNTRIES]].to_numpy(float)
    m = evaluate(Y, P)
    drop = (promoted_auc - m["mean_roc_auc"]) if promoted_auc is not None else float("nan")
    regions = region_drops(promoted_by_country or {}, m["roc_auc"], m["positives"], n, test_songs,
                           t.max_region_auc_drop)
    worse = [r for r in regions if r.breached]
    recent = df["recent"].fillna(False).to_numpy(bool) if t.label_recent_days > 0 else np.zeros(n, bool)
    recent_regions = []
    if t.min_rows <= recent.sum() < n:
        mr = evaluate(Y[recent], P[recent])
        recent_regions = region_drops(promoted_by_country or {}, mr["roc_auc"], mr["positives"], int(recent.sum()),
                                      test_songs, t.max_region_auc_drop)
    named = {r.region for r in worse}
    worse_recent = [r for r in recent_regions if r.breached and r.region not in named]
    breached = bool(np.isfinite(drop) and drop > t.max_auc_drop) or bool(worse) or bool(worse_recent)
    summary = (f"mean ROC AUC on revealed labels {m['mean_roc_auc']:.4f}"
               + (f", {drop:+.4f} below the {promoted_auc:.4f} it was promoted with" if promoted_auc else "")
               + f" ({n} songs, {revealed} positives revealed since prediction)")
    if worse_recent:
        summary = ("; ".join(r.describe() for r in worse_recent) + f", more than {t.max_region_auc_drop}, on the "
                   f"{int(recent.sum())} songs first charted in the last {t.label_recent_days:g} days; " + summary)
    if worse:
        summary = "; ".join(r.describe() for r in worse) + f", more than {t.max_region_auc_drop}; " + summary
    elif regions and not worse_recent:
        top = max(regions, key=lambda r: r.drop)
        summary += f"; largest region drop {top.region} {top.drop:+.4f} (at least {top.drop_lower:+.4f})"
    return MonitorResult(name, model_version, breached, summary,
                         {"songs": n, "revealed_positives": revealed, "mean_roc_auc": m["mean_roc_auc"],
                          "mean_log_loss": m["mean_log_loss"], "promoted_mean_roc_auc": promoted_auc or float("nan"),
                          "auc_drop": drop,
                          **{f"region_auc_drop_{r.region}": r.drop for r in regions},
                          **{f"region_auc_drop_lower_{r.region}": r.drop_lower for r in regions},
                          "recent_songs": int(recent.sum()),
                          **{f"region_auc_drop_recent_{r.region}": r.drop for r in recent_regions},
                          **{f"region_auc_drop_lower_recent_{r.region}": r.drop_lower for r in recent_regions}},
                         {"auc_drop": t.max_auc_drop,
                          **{f"region_auc_drop_lower_{r.region}": t.max_region_auc_drop for r in regions},
                          **{f"region_auc_drop_lower_recent_{r.region}": t.max_region_auc_drop
                             for r in recent_regions}},
                         {f"roc_auc_{c}": v for c, v in m["roc_auc"].items()},
                         regions_breached=[r.region for r in worse + worse_recent])


def process_tree_usage(pid: int | None, sample_s: float = 0.5) -> tuple[float, float]:
    """CPU (percent of one core, summed over the process and its children) and resident MiB."""
    if pid is None:
        return float("nan"), float("nan")
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan"), float("nan")
    alive = []
    for p in procs:
        try:
            p.cpu_percent(None)
            alive.append(p)
        except psutil.Error:
            pass
    time.sleep(sample_s)
    cpu = mem = 0.0
    for p in alive:
        try:
            cpu += p.cpu_percent(None)
            mem += p.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return cpu, mem


def serving_health(con: duckdb.DuckDBPyConnection, t: MonitorThresholds, model_version: str | None,
                   running: bool, pid: int | None) -> MonitorResult:
    name = "serving_health"
    stats = dict(requests=0, per_minute=0.0, error_rate=0.0, refused_rate=0.0, p50=float("nan"), p99=float("nan"))
    if _log_exists(con):
        row = con.execute(f"""
            WITH r AS (SELECT request_id, any_value(status) AS status, any_value(latency_ms) AS latency_ms,
                              min(received_at) AS first_at
                       FROM ops.inference_log WHERE {_window(t)} GROUP BY request_id)
            SELECT count(*), count(*) FILTER (WHERE status >= 500), count(*) FILTER (WHERE status BETWEEN 400 AND 499),
                   quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 200),
                   quantile_cont(latency_ms, 0.99) FILTER (WHERE status = 200),
                   epoch(max(first_at) - min(first_at)) FROM r""").fetchall()[0]
        total, errors, refused, p50, p99, span_s = row
        if total:
            stats.update(requests=total, error_rate=errors / total, refused_rate=refused / total,
                         p50=p50 if p50 is not None else float("nan"), p99=p99 if p99 is not None else float("nan"),
                         per_minute=total / max(span_s or 0, 60.0) * 60)
    cpu, mem = process_tree_usage(pid if running else None)
    problems = []
    if not running:
        problems.append("the serving process is not running")
    if stats["error_rate"] > t.max_error_rate:
        problems.append(f"error rate {stats['error_rate']:.2%} > {t.max_error_rate:.2%}")
    if np.isfinite(stats["p99"]) and stats["p99"] > t.max_p99_ms:
        problems.append(f"p99 latency {stats['p99']:.1f} ms > {t.max_p99_ms:g} ms")
    if np.isfinite(mem) and mem > t.max_memory_mb:
        problems.append(f"memory {mem:.0f} MiB > {t.max_memory_mb:g} MiB")
    summary = "; ".join(problems) if problems else (
        f"{stats['requests']} requests in the last {t.window_hours:g} h, error rate {stats['error_rate']:.2%}, "
        f"p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms, CPU {cpu:.0f}%, {mem:.0f} MiB")
    return MonitorResult(name, model_version, bool(problems), summary,
                         {"requests": stats["requests"], "requests_per_minute": stats["per_minute"],
                          "error_rate": stats["error_rate"], "refused_rate": stats["refused_rate"],
                          "p50_ms": stats["p50"], "p99_ms": stats["p99"], "cpu_percent": cpu, "memory_mb": mem,
                          "running": float(running)},
                         {"error_rate": t.max_error_rate, "p99_ms": t.max_p99_ms, "memory_mb": t.max_memory_mb})


def record(con: duckdb.DuckDBPyConnection, result: MonitorResult, run_id: str | None) -> None:
    """Append the result's metrics (and detail) to ops.monitor_metrics (inside a transaction the caller
    holds: `Lake.write`)."""
    now = datetime.now(timezone.utc)
    rows = [(now, result.monitor, result.model_version, k, _finite(v), result.thresholds.get(k),
             bool(k in result.thresholds and _finite(v) is not None and v > result.thresholds[k]), run_id)
            for k, v in {**result.metrics, **result.detail}.items()]
    rows.append((now, result.monitor, result.model_version, "breached", float(result.breached), None,
                 result.breached, run_id))
    con.execute(METRICS_DDL)
    con.executemany("INSERT INTO ops.monitor_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
