"""The dashboard's sections, each read from the lake: its HTML (a plot, a table, or what it lacks and
why) and the time of the newest row it shows. `dashboard.render` puts them on one page."""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import evaluations
from hit_platform.adapters.reports import plots
from hit_platform.domain.countries import REGIONS
from hit_platform.domain.promotion import ShadowComparison

plt = plots.plt


def utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def empty(why: str) -> str:
    """What a section says when it has nothing to show, and why."""
    return f"<p class=\"empty\">{html.escape(why)}</p>"


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plots.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def table(rows: list[tuple], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def fmt(v) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4f}"
    if isinstance(v, datetime):
        return utc(v).strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else str(v)


def quality(con: duckdb.DuckDBPyConnection, lake: Lake, champion: str | None = None) -> tuple[str, dict]:
    """`champion`: the version the champion alias was last moved to (ops.model_events), if any: its
    evaluation is the one shown, else the newest promoted one."""
    judged = evaluations(con)
    if not judged:
        return empty("No model has been evaluated yet."), {}
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
    parts = [png(fig)]
    promoted = [r for r in ev if r[8]]
    latest = next((r for r in reversed(ev) if champion is not None and str(r[1]) == str(champion)), None) \
        or (promoted[-1] if promoted else ev[-1])
    per_country = json.loads(latest[9]) if latest[9] else {}
    parts.append(png(plots.auc_bars(per_country, f"Per-country test ROC AUC, version {latest[1]}")))
    parts.append(table([(r[0], r[1], r[2], r[3], r[4], r[6], r[7], "promoted" if r[8] else "refused")
                        for r in reversed(ev[-10:])],
                       ("evaluated", "version", "family", "mean AUC", "baseline AUC", "oracle AUC",
                        "log loss", "decision")))
    return "".join(parts), {"version": latest[1], "auc": latest[3], "oracle": latest[6], "promoted": latest[8],
                            "newest": max(r[0] for r in ev)}


def drift(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[str, datetime | None]:
    if not lake.table_exists(con, "ops", "monitor_metrics"):
        return empty("No monitor has run yet."), None
    rows = con.execute("""SELECT monitor, metric, value, checked_at FROM ops.monitor_metrics
                          WHERE monitor IN ('served_feature_drift', 'prediction_drift') AND metric LIKE 'psi_%'
                          QUALIFY checked_at = max(checked_at) OVER (PARTITION BY monitor)""").fetchall()
    history = con.execute("""SELECT checked_at, monitor, value, threshold FROM ops.monitor_metrics
                             WHERE metric = 'max_psi' ORDER BY checked_at""").fetchall()
    parts = []
    feats = sorted(((m[4:], v) for mon, m, v, _ in rows if mon == "served_feature_drift"), key=lambda t: -t[1])
    if feats:
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.bar([f for f, _ in feats], [v for _, v in feats], color="#ddaa33")
        ax.set_ylabel("PSI vs training")
        ax.set_title("Served songs: feature drift (latest check)")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
        fig.tight_layout()
        parts.append(png(fig))
    if history:
        fig, ax = plt.subplots(figsize=(9, 3))
        for mon in sorted({h[1] for h in history}):
            pts = [h for h in history if h[1] == mon]
            ax.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=mon)
        ax.axhline(history[-1][3] or 0.25, color="r", linewidth=0.8, linestyle="--", label="threshold")
        one = plots.time_axis(ax, [h[0] for h in history], "one check so far")
        ax.set_ylabel("largest PSI")
        ax.set_title("Drift over time")
        ax.legend(fontsize=8)
        fig.tight_layout()
        parts.append((f"<p>Drift over time: {one}.</p>" if one else "") + png(fig))
    newest = max([r[3] for r in rows] + [h[0] for h in history], default=None)
    return "".join(parts) or empty("No drift measured yet (too few served songs)."), newest


def latency(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[str, dict]:
    if not lake.table_exists(con, "ops", "inference_log"):
        return empty("Nothing served yet."), {}
    rows = con.execute("""
        WITH r AS (SELECT request_id, min(received_at) AS first_at, any_value(latency_ms) AS ms, any_value(status) AS st
                   FROM ops.inference_log GROUP BY request_id)
        SELECT time_bucket(INTERVAL 1 MINUTE, first_at) AS minute, count(*),
               quantile_cont(ms, 0.5) FILTER (WHERE st = 200), quantile_cont(ms, 0.99) FILTER (WHERE st = 200),
               count(*) FILTER (WHERE st >= 500), max(first_at)
        FROM r GROUP BY 1 ORDER BY 1 DESC LIMIT 240""").fetchall()[::-1]
    if not rows:
        return empty("Nothing served yet."), {}
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot([r[0] for r in rows], [r[2] if r[2] is not None else np.nan for r in rows], "o-", label="p50")
    ax.plot([r[0] for r in rows], [r[3] if r[3] is not None else np.nan for r in rows], "o-", label="p99")
    one = plots.time_axis(ax, [r[0] for r in rows], "one minute of traffic so far", window=timedelta(minutes=5))
    ax.set_ylabel("latency in the replica, ms")
    ax.set_title("Serving latency per minute")
    ax.legend(fontsize=8)
    fig.tight_layout()
    total, errors = sum(r[1] for r in rows), sum(r[4] for r in rows)
    note = (f"<p>{total} requests ({errors} answered 5xx), " + (f"all in one minute: {one}.</p>" if one else
            f"in the {len(rows)} newest minutes with traffic.</p>"))
    return note + png(fig), {"requests": total, "errors": errors, "newest": max(r[5] for r in rows)}


def estimates(con: duckdb.DuckDBPyConnection, lake: Lake, countries: int = 5) -> tuple[str, datetime | None]:
    """Estimated (no labels) against realized ROC AUC over time, for the countries worst in the newest
    estimate, and the newest estimate's ten worst countries."""
    if not lake.table_exists(con, "ops", "performance_estimates"):
        return empty("No performance estimate yet."), None
    newest = con.execute("""SELECT estimated_at, source, model_version FROM ops.performance_estimates
                            ORDER BY estimated_at DESC, source DESC LIMIT 1""").fetchall()
    if not newest:
        return empty("No performance estimate yet."), None
    at, source, version = newest[0]
    worst = con.execute("""SELECT country, estimate, lower, upper, reference, estimate - reference AS change,
                                  realized, realized_songs, songs
                           FROM ops.performance_estimates
                           WHERE estimated_at = ? AND source = ? AND metric = 'roc_auc'
                           ORDER BY change LIMIT 10""", [at, source]).fetchall()
    if not worst:
        return empty(f"The newest estimate ({source} songs, model version {version}) has no ROC AUC."), at
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
    one = plots.time_axis(ax, [h[1] for h in history], "one estimate so far")
    ax.set_ylabel("ROC AUC")
    ax.set_title(f"Estimated (line, 90% band) vs realized (x) ROC AUC, {source} songs; dotted: test AUC")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    note = (f"<p>Newest estimate: model version {html.escape(str(version))}, {worst[0][8]} "
            f"{html.escape(source)} songs, {utc(at):%Y-%m-%d %H:%M:%S} UTC{' (' + one + ')' if one else ''}. "
            f"The estimate sees a shift of the songs, not a change of taste: the realized value (once labels "
            f"arrive) does.</p>")
    return note + png(fig) + table(
        [(c, e, f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "none: too few hits expected",
          ref, ch, real, n) for c, e, lo, hi, ref, ch, real, n, _ in worst],
        ("country", "estimated AUC", "90% interval", "test AUC", "change", "realized AUC", "realized songs")), at


def shadow(cmp: ShadowComparison | None) -> str:
    """The newest challenger against its champion on the songs it shadowed (ops.shadow_log)."""
    if cmp is None:
        return empty("No challenger has shadowed the champion (HIT_PROMOTION_MODE=shadow).")
    pair = (cmp.champion_version, cmp.challenger_version)
    if not cmp.songs:
        return empty(f"Challenger {pair[1]} has no answered songs to compare with yet.")
    diffs = [cmp.mean_abs_diff[c] for c in sorted(cmp.mean_abs_diff)]
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.bar(range(len(diffs)), diffs)
    ax.set_xticks(range(len(diffs)), sorted(cmp.mean_abs_diff), rotation=90, fontsize=6)
    ax.set_ylabel("mean |challenger - champion|")
    ax.set_title(f"Challenger {pair[1]} vs champion {pair[0]} on {cmp.songs} shadowed songs")
    fig.tight_layout()
    labels = (f" On {cmp.labelled_songs} of them with labels, mean ROC AUC: champion {fmt(cmp.champion_roc_auc)}, "
              f"challenger {fmt(cmp.challenger_roc_auc)}." if cmp.champion_roc_auc is not None else
              " No shadowed song has labels yet.")
    worst = sorted(cmp.mean_abs_diff, key=cmp.mean_abs_diff.get, reverse=True)[:10]
    note = (f"<p>{cmp.songs} songs in {cmp.requests} requests, {utc(cmp.first_at):%Y-%m-%d %H:%M} to "
            f"{utc(cmp.last_at):%Y-%m-%d %H:%M} UTC. Top-5 overlap {cmp.top5_overlap:.3f}.{labels} "
            f"ml/shadow_evaluation:shadow_gate judges these against HIT_SHADOW_*.</p>")
    return note + png(fig) + table(
        [(c, cmp.mean_abs_diff[c], cmp.prediction_psi[c], cmp.top5_agreement[c]) for c in worst],
        ("country", "mean |difference|", "prediction PSI", "top-5 agreement"))


def importance(version: str | None, importance_of, challenger: str | None = None) -> tuple[str, datetime | None]:
    """The global importance per country logged with the champion's MLflow run (`model_importance`): a
    features x countries heatmap, and the largest features' shares overall and per region, beside the
    challenger's when one shadows it. `importance_of(version)` reads one (`load_importance`); a version
    without one, or a store that cannot be read, gets a line saying why instead of the plot."""
    if version is None:
        return empty("No champion to explain yet."), None
    if importance_of is None:
        return empty("Not asked: this rendering was given no MLflow store to read importances from."), None
    try:
        imp = importance_of(version)
    except Exception as exc:  # noqa: BLE001 (the page says why: a version without one must not break it)
        return empty(f"No global importance for version {version}: {exc}"), None
    theirs, why_not = None, ""
    if challenger is not None and str(challenger) != str(version):
        try:
            theirs = importance_of(challenger).feature_shares()
        except Exception as exc:  # noqa: BLE001
            why_not = f" Challenger {challenger}: no global importance ({exc})."
    note = (f"<p>Version {html.escape(str(version))} ({html.escape(imp.family)}): mean |exact attribution| per "
            f"country and feature over {imp.songs} validation songs, against its declared background. Each cell "
            f"is the feature's share of the country's total, so countries on different scales "
            f"({html.escape(', '.join(sorted(set(imp.scales))))}) compare. Top feature: "
            f"{html.escape(imp.top_feature() or 'none (the model uses no feature)')}.{html.escape(why_not)}</p>")
    fig = plots.importance_heatmap(imp, f"Global importance per country, version {version} ({imp.family})")
    ours, shares = imp.feature_shares(), imp.shares()
    regions = {r: [imp.countries.index(c) for c in cs] for r, cs in REGIONS.items()}
    rows = [(f, ours[f], *([theirs[f]] if theirs else []),
             *(float(np.mean(shares[idx, imp.features.index(f)])) for idx in regions.values()))
            for f in sorted(ours, key=lambda f: -np.nan_to_num(ours[f], nan=-1))[:6]]
    header = ("feature", f"share, v{version}", *([f"share, challenger v{challenger}"] if theirs else []), *regions)
    return (note + png(fig) + "<p>The six largest features' shares, overall and per region:</p>"
            + table(rows, header)), imp.computed_at


def monitors(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[str, list]:
    if not lake.table_exists(con, "ops", "monitor_metrics"):
        return empty("No monitor has run yet."), []
    rows = con.execute("""SELECT monitor, checked_at, model_version, value > 0
                          FROM ops.monitor_metrics WHERE metric = 'breached'
                          QUALIFY checked_at = max(checked_at) OVER (PARTITION BY monitor)
                          ORDER BY monitor""").fetchall()
    if not rows:
        return empty("No monitor has judged yet."), []
    return table([(m, t, v, "BREACHED" if b else "ok") for m, t, v, b in rows],
                 ("monitor", "checked", "model version", "state")), rows
