"""The dashboard: one self-contained HTML page (inline PNG plots, no server) read from the lake.

Model quality over versions (ml.evaluations), the champion's per-country ROC AUC,
the challenger against the champion on the songs it shadowed (ops.shadow_log),
its label-free performance estimate against the realized values (ops.performance_estimates),
drift (features at each data version and served songs), serving latency over time
(ops.inference_log), the latest monitor results and the latest alerts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb
import numpy as np

from hit_platform.adapters.reports import plots
from hit_platform.adapters import model_events
from hit_platform.adapters.alerts import list_alerts
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import evaluations
from hit_platform.domain.promotion import ShadowComparison

plt = plots.plt


@dataclass
class Dashboard:
    html: str
    summary_md: str
    sections: list[str] = field(default_factory=list)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plots.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(rows: list[tuple], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4f}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else str(v)


def _quality(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[str, dict]:
    judged = evaluations(con)
    if not judged:
        return "<p>No model has been evaluated yet.</p>", {}
    ev = [(e.evaluated_at, e.candidate_version, e.candidate_family, e.candidate_mean_roc_auc, e.baseline_mean_roc_auc,
           e.champion_mean_roc_auc, e.oracle_mean_roc_auc, e.candidate_mean_log_loss, e.promote, e.per_country_roc_auc)
          for e in judged]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    xs = np.arange(len(ev))
    for j, (label, style) in enumerate([("candidate", "o-"), ("baseline", "s:"), ("champion before", "^--"),
                                        ("oracle", "k_")], start=3):
        ax.plot(xs, [r[j] if r[j] is not None else np.nan for r in ev], style, label=label)
    ax.set_xticks(xs, [f"v{r[1]}" + ("" if r[8] else " (refused)") for r in ev], rotation=45, fontsize=8)
    ax.set_ylabel("test mean ROC AUC")
    ax.set_title("Model quality over versions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    parts = [_png(fig)]
    promoted = [r for r in ev if r[8]]
    latest = promoted[-1] if promoted else ev[-1]
    per_country = json.loads(latest[9]) if latest[9] else {}
    parts.append(_png(plots.auc_bars(per_country, f"Per-country test ROC AUC, version {latest[1]}")))
    parts.append(_table([(r[0], r[1], r[2], r[3], r[4], r[6], r[7], "promoted" if r[8] else "refused")
                         for r in reversed(ev[-10:])],
                        ("evaluated", "version", "family", "mean AUC", "baseline AUC", "oracle AUC",
                         "log loss", "decision")))
    return "".join(parts), {"version": latest[1], "auc": latest[3], "oracle": latest[6]}


def _drift(con: duckdb.DuckDBPyConnection, lake: Lake) -> str:
    if not lake.table_exists(con, "ops", "monitor_metrics"):
        return "<p>No monitor has run yet.</p>"
    rows = con.execute("""SELECT monitor, metric, value FROM ops.monitor_metrics
                          WHERE monitor IN ('served_feature_drift', 'prediction_drift') AND metric LIKE 'psi_%'
                          QUALIFY checked_at = max(checked_at) OVER (PARTITION BY monitor)""").fetchall()
    history = con.execute("""SELECT checked_at, monitor, value, threshold FROM ops.monitor_metrics
                             WHERE metric = 'max_psi' ORDER BY checked_at""").fetchall()
    parts = []
    feats = sorted(((m[4:], v) for mon, m, v in rows if mon == "served_feature_drift"), key=lambda t: -t[1])
    if feats:
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.bar([f for f, _ in feats], [v for _, v in feats], color="#ddaa33")
        ax.set_ylabel("PSI vs training")
        ax.set_title("Served songs: feature drift (latest check)")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
        fig.tight_layout()
        parts.append(_png(fig))
    if history:
        fig, ax = plt.subplots(figsize=(9, 3))
        for mon in sorted({h[1] for h in history}):
            pts = [h for h in history if h[1] == mon]
            ax.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=mon)
        ax.axhline(history[-1][3] or 0.25, color="r", linewidth=0.8, linestyle="--", label="threshold")
        ax.set_ylabel("largest PSI")
        ax.set_title("Drift over time")
        ax.legend(fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        parts.append(_png(fig))
    return "".join(parts) or "<p>No drift measured yet (too few served songs).</p>"


def _latency(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[str, dict]:
    if not lake.table_exists(con, "ops", "inference_log"):
        return "<p>Nothing served yet.</p>", {}
    rows = con.execute("""
        WITH r AS (SELECT request_id, min(received_at) AS first_at, any_value(latency_ms) AS ms, any_value(status) AS st
                   FROM ops.inference_log GROUP BY request_id)
        SELECT time_bucket(INTERVAL 1 MINUTE, first_at) AS minute, count(*),
               quantile_cont(ms, 0.5) FILTER (WHERE st = 200), quantile_cont(ms, 0.99) FILTER (WHERE st = 200),
               count(*) FILTER (WHERE st >= 500)
        FROM r GROUP BY 1 ORDER BY 1 DESC LIMIT 240""").fetchall()[::-1]
    if not rows:
        return "<p>Nothing served yet.</p>", {}
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot([r[0] for r in rows], [r[2] if r[2] is not None else np.nan for r in rows], "o-", label="p50")
    ax.plot([r[0] for r in rows], [r[3] if r[3] is not None else np.nan for r in rows], "o-", label="p99")
    ax.set_ylabel("latency in the replica, ms")
    ax.set_title("Serving latency per minute")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    total = sum(r[1] for r in rows)
    return _png(fig), {"requests": total, "errors": sum(r[4] for r in rows)}


def _estimates(con: duckdb.DuckDBPyConnection, lake: Lake, countries: int = 5) -> str:
    """Estimated (no labels) against realized ROC AUC over time, for the countries worst in the newest
    estimate, and the newest estimate's ten worst countries."""
    if not lake.table_exists(con, "ops", "performance_estimates"):
        return "<p>No performance estimate yet.</p>"
    newest = con.execute("""SELECT estimated_at, source, model_version FROM ops.performance_estimates
                            ORDER BY estimated_at DESC, source DESC LIMIT 1""").fetchall()
    if not newest:
        return "<p>No performance estimate yet.</p>"
    at, source, version = newest[0]
    worst = con.execute("""SELECT country, estimate, lower, upper, reference, estimate - reference AS change,
                                  realized, realized_songs, songs
                           FROM ops.performance_estimates
                           WHERE estimated_at = ? AND source = ? AND metric = 'roc_auc'
                           ORDER BY change LIMIT 10""", [at, source]).fetchall()
    shown = [r[0] for r in worst[:countries]]
    history = con.execute("""SELECT country, estimated_at, estimate, lower, upper, realized, reference
                             FROM ops.performance_estimates
                             WHERE source = ? AND metric = 'roc_auc' AND country IN (SELECT unnest(?))
                             ORDER BY estimated_at""", [source, shown]).fetchall()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for i, c in enumerate(shown):
        pts = [h for h in history if h[0] == c]
        color = f"C{i}"
        xs = [p[1] for p in pts]
        ax.plot(xs, [p[2] for p in pts], "o-", color=color, label=f"{c} estimated")
        # no interval (NULL) where too few hits are expected to bound the estimate: a gap in the band
        band = [[np.nan if v is None else v for v in (p[3], p[4])] for p in pts]
        ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=color, alpha=0.15)
        real = [(p[1], p[5]) for p in pts if p[5] is not None and np.isfinite(p[5])]
        if real:
            ax.plot([r[0] for r in real], [r[1] for r in real], "x", color=color, markersize=9,
                    label=f"{c} realized")
        ax.axhline(pts[-1][6], color=color, linewidth=0.6, linestyle=":")
    ax.set_ylabel("ROC AUC")
    ax.set_title(f"Estimated (line, 90% band) vs realized (x) ROC AUC, {source} songs; dotted: test AUC")
    ax.legend(fontsize=7, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    note = (f"<p>Newest estimate: model version {html.escape(str(version))}, {worst[0][8] if worst else 0} "
            f"{html.escape(source)} songs, {at:%Y-%m-%d %H:%M:%S} UTC. The estimate sees a shift of the songs, not "
            f"a change of taste: the realized value (once labels arrive) does.</p>")
    return note + _png(fig) + _table(
        [(c, e, f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "none: too few hits expected",
          ref, ch, real, n) for c, e, lo, hi, ref, ch, real, n, _ in worst],
        ("country", "estimated AUC", "90% interval", "test AUC", "change", "realized AUC", "realized songs"))


def _shadow(cmp: ShadowComparison | None) -> str:
    """The newest challenger against its champion on the songs it shadowed (ops.shadow_log)."""
    if cmp is None:
        return "<p>No challenger has shadowed the champion (HIT_PROMOTION_MODE=shadow).</p>"
    pair = (cmp.champion_version, cmp.challenger_version)
    if not cmp.songs:
        return f"<p>Challenger {html.escape(pair[1])} has no answered songs to compare with yet.</p>"
    diffs = [cmp.mean_abs_diff[c] for c in sorted(cmp.mean_abs_diff)]
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.bar(range(len(diffs)), diffs)
    ax.set_xticks(range(len(diffs)), sorted(cmp.mean_abs_diff), rotation=90, fontsize=6)
    ax.set_ylabel("mean |challenger - champion|")
    ax.set_title(f"Challenger {pair[1]} vs champion {pair[0]} on {cmp.songs} shadowed songs")
    fig.tight_layout()
    labels = (f" On {cmp.labelled_songs} of them with labels, mean ROC AUC: champion {_fmt(cmp.champion_roc_auc)}, "
              f"challenger {_fmt(cmp.challenger_roc_auc)}." if cmp.champion_roc_auc is not None else
              " No shadowed song has labels yet.")
    worst = sorted(cmp.mean_abs_diff, key=cmp.mean_abs_diff.get, reverse=True)[:10]
    note = (f"<p>{cmp.songs} songs in {cmp.requests} requests, {cmp.first_at:%Y-%m-%d %H:%M} to "
            f"{cmp.last_at:%Y-%m-%d %H:%M} UTC. Top-5 overlap {cmp.top5_overlap:.3f}.{labels} "
            f"ml/shadow_evaluation:shadow_gate judges these against HIT_SHADOW_*.</p>")
    return note + _png(fig) + _table(
        [(c, cmp.mean_abs_diff[c], cmp.prediction_psi[c], cmp.top5_agreement[c]) for c in worst],
        ("country", "mean |difference|", "prediction PSI", "top-5 agreement"))


def _monitors(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[str, list]:
    if not lake.table_exists(con, "ops", "monitor_metrics"):
        return "", []
    rows = con.execute("""SELECT monitor, checked_at, model_version, value > 0
                          FROM ops.monitor_metrics WHERE metric = 'breached'
                          QUALIFY checked_at = max(checked_at) OVER (PARTITION BY monitor)
                          ORDER BY monitor""").fetchall()
    return _table([(m, t, v, "BREACHED" if b else "ok") for m, t, v, b in rows],
                  ("monitor", "checked", "model version", "state")), rows


def render(lake: Lake, shadow: ShadowComparison | None = None) -> Dashboard:
    """The page and its summary; `shadow`: the newest challenger against its champion
    (`steps.shadow_comparison.newest`), None when no challenger has shadowed one."""
    with lake.connection(read_only=True) as con:
        quality, q = _quality(con, lake)
        drift = _drift(con, lake)
        latency, lat = _latency(con, lake)
        estimated = _estimates(con, lake)
        monitors, mon = _monitors(con, lake)
        snapshot = lake.snapshot_id(con)
    alerts = list_alerts(lake, limit=30)
    events = model_events.history(lake, limit=20)
    shadowed = _shadow(shadow)
    now = datetime.now(timezone.utc)
    sections = ["Model quality", "Model events", "Shadow", "Performance estimate", "Drift", "Serving", "Monitors",
                "Alerts"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>hit_platform dashboard</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} img{{max-width:100%}}</style></head><body>
<h1>hit_platform dashboard</h1>
<p>Built {now:%Y-%m-%d %H:%M:%S} UTC from lake snapshot {snapshot}. Champion: version {q.get('version', 'none')},
test mean ROC AUC {_fmt(q.get('auc'))} (oracle {_fmt(q.get('oracle'))}).</p>
<h2>Model quality</h2>{quality}
<h2>Model events</h2>{_table([(e.event_at, e.kind, e.from_version or 'none', e.to_version, e.who, e.reason[:200])
                              for e in events], ('when', 'event', 'from', 'to', 'who', 'why'))
                      if events else '<p>The champion alias has not moved yet.</p>'}
<h2>Shadow</h2>{shadowed}
<h2>Performance estimate</h2>{estimated}
<h2>Drift</h2>{drift}
<h2>Serving</h2>{latency}
<h2>Monitors</h2>{monitors or '<p>No monitor has run yet.</p>'}
<h2>Alerts</h2>{_table([(a['raised_at'], a['kind'], a['severity'], a['where'], a['what'][:200]) for a in alerts],
                        ('raised', 'kind', 'severity', 'where', 'what')) if alerts else '<p>No alerts.</p>'}
</body></html>"""
    breached = [m for m, _, _, b in mon if b]
    summary = (f"**Champion** v{q.get('version', '—')}: test mean ROC AUC {_fmt(q.get('auc'))} "
               f"(oracle {_fmt(q.get('oracle'))})  \n"
               f"**Served** {lat.get('requests', 0)} requests ({lat.get('errors', 0)} errors) in the shown window  \n"
               f"**Monitors** {len(mon)} checked, breached: {', '.join(breached) or 'none'}  \n"
               f"**Alerts** {len(alerts)} latest" + (f", newest: {alerts[0]['kind']} at {alerts[0]['where']}: "
                                                   f"{alerts[0]['what'][:120]}" if alerts else ""))
    return Dashboard(page, summary, sections)
