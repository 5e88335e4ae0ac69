"""Quality gates: plain functions over the lake that say pass or fail, and why.

Each returns a `GateResult` whose metadata (counts, rates, thresholds, worst
offenders) explains a failure without reading logs; `defs/gate_checks.py` turns them
into Dagster asset checks. SQL does the counting, so they run at lake scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
from pandera.errors import SchemaError, SchemaErrors

from hit_platform.domain.countries import COUNTRIES, GLOBAL_CHART
from hit_platform.domain.drift import psi
from hit_platform.domain.features import FEATURE_COLUMNS, SPLITS
from hit_platform.settings import GateThresholds
from hit_platform.domain.schema import CHART_KEYS, CHART_ROWS_SCHEMA, DUMP_COLUMNS

PANDERA_SAMPLE_ROWS = 50_000


@dataclass
class GateResult:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def _table(rows: list[tuple], header: tuple[str, ...]) -> str:
    """A small markdown table for the UI."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# -- raw chart rows ----------------------------------------------------------

def schema_gate(con: duckdb.DuckDBPyConnection, table: str = "raw.chart_rows") -> GateResult:
    """Columns and types as the schema says; a seeded sample validated by the pandera model."""
    actual = {r[0]: r[1] for r in _rows(con, f"DESCRIBE {table}")}
    problems = []
    for c in DUMP_COLUMNS:
        if c.name not in actual:
            problems.append(f"missing column {c.name}")
        elif actual[c.name] != c.sql_type:
            problems.append(f"{c.name} is {actual[c.name]}, expected {c.sql_type}")
    if problems:
        return GateResult(False, "; ".join(problems), {"problems": len(problems)})
    cols = ", ".join(c.name for c in DUMP_COLUMNS)
    sample = con.execute(f"SELECT {cols} FROM {table} USING SAMPLE reservoir({PANDERA_SAMPLE_ROWS} ROWS) "
                         "REPEATABLE (42)").df()
    try:
        CHART_ROWS_SCHEMA.validate(sample, lazy=True)
    except (SchemaErrors, SchemaError) as exc:  # the data fails the schema; anything else is a bug: it raises
        cases = exc.failure_cases
        counted = cases is not None and hasattr(cases, "__len__") and not isinstance(cases, str)
        n_cases = len(cases) if counted else 1  # one error without a table of cases (e.g. a column)
        worst = cases.head(10).to_string() if hasattr(cases, "head") else str(exc)[:1000]
        return GateResult(False, f"pandera schema {CHART_ROWS_SCHEMA.name} failed on the sample",
                          {"sample_rows": len(sample), "failure_cases": n_cases, "worst": worst})
    return GateResult(True, f"{len(DUMP_COLUMNS)} columns with the schema's types; pandera passed on a "
                      f"{len(sample):,}-row sample", {"sample_rows": len(sample)})


def keys_gate(con: duckdb.DuckDBPyConnection, table: str = "raw.chart_rows") -> GateResult:
    """Both keys of a chart day unique; no exact duplicate rows."""
    meta: dict = {}
    failures = []
    for key in CHART_KEYS:
        cols = ", ".join(key)
        dups = _rows(con, f"SELECT {cols}, count(*) AS n FROM {table} GROUP BY ALL HAVING n > 1 "
                          f"ORDER BY n DESC, {cols} LIMIT 5")
        n = _rows(con, f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {cols} HAVING count(*) > 1)")[0][0]
        name = "_".join(key)
        meta[f"duplicate_keys_{name}"] = n
        if n:
            failures.append(f"{n} duplicated ({cols}) keys")
            meta[f"worst_{name}"] = _table(dups, (*key, "rows"))
    cols = ", ".join(c.name for c in DUMP_COLUMNS)
    exact = _rows(con, f"SELECT count(*) - count(DISTINCT ({cols})) FROM {table}")[0][0]
    meta["exact_duplicate_rows"] = exact
    if exact:
        failures.append(f"{exact} exact duplicate rows")
    return GateResult(not failures, "; ".join(failures) or "both chart keys unique, no duplicate rows", meta)


def ranges_gate(con: duckdb.DuckDBPyConnection, table: str = "raw.chart_rows") -> GateResult:
    """Every numeric value within its schema range."""
    bounded = [c for c in DUMP_COLUMNS if c.min is not None or c.max is not None]
    exprs = []
    for c in bounded:
        cond = " OR ".join(x for x in (f"{c.name} < {c.min}" if c.min is not None else "",
                                       f"{c.name} > {c.max}" if c.max is not None else "") if x)
        exprs.append(f"count(*) FILTER (WHERE {cond} OR isnan({c.name}::DOUBLE))")
    counts = _rows(con, f"SELECT {', '.join(exprs)} FROM {table}")[0]
    bad = {c.name: n for c, n in zip(bounded, counts) if n}
    meta = {f"out_of_range_{k}": v for k, v in bad.items()}
    meta["columns_checked"] = len(bounded)
    if bad:
        worst = []
        for name in list(bad)[:5]:
            c = next(x for x in bounded if x.name == name)
            vals = _rows(con, f"SELECT {name}, count(*) FROM {table} WHERE {name} < {c.min if c.min is not None else '-inf'} "
                              f"OR {name} > {c.max if c.max is not None else 'inf'} OR isnan({name}::DOUBLE) "
                              f"GROUP BY 1 ORDER BY 2 DESC LIMIT 3")
            worst += [(name, v, n, f"[{c.min}, {c.max}]") for v, n in vals]
        meta["worst"] = _table(worst, ("column", "value", "rows", "range"))
        return GateResult(False, "values out of range: " + ", ".join(f"{k} ({v} rows)" for k, v in bad.items()), meta)
    return GateResult(True, f"all {len(bounded)} bounded columns within range", meta)


def missing_values_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds,
                        table: str = "raw.chart_rows") -> GateResult:
    """Null rate per column against its threshold (0 for required columns)."""
    exprs = ", ".join(f"avg(({c.name} IS NULL)::INTEGER)" for c in DUMP_COLUMNS)
    n, *rates = _rows(con, f"SELECT count(*), {exprs} FROM {table}")[0]
    meta: dict = {"rows": n}
    failures = []
    for c, rate in zip(DUMP_COLUMNS, rates):
        rate = float(rate or 0.0)
        limit = 0.0 if c.required else t.max_missing_rate.get(c.name, 0.0)
        if rate:
            meta[f"missing_rate_{c.name}"] = round(rate, 6)
        if rate > limit:
            failures.append((c.name, f"{rate:.4%}", f"{limit:.2%}"))
    if failures:
        meta["failures"] = _table(failures, ("column", "missing rate", "threshold"))
        return GateResult(False, "missing-value rate above threshold: "
                          + ", ".join(f"{c} {r} > {lim}" for c, r, lim in failures), meta)
    return GateResult(True, "every column's missing-value rate within its threshold", meta)


def unknown_countries_gate(con: duckdb.DuckDBPyConnection, table: str = "raw.chart_rows") -> GateResult:
    known = ", ".join(f"'{c}'" for c in (*COUNTRIES, GLOBAL_CHART))
    bad = _rows(con, f"SELECT country, count(*) FROM {table} WHERE country NOT IN ({known}) "
                     "GROUP BY 1 ORDER BY 2 DESC")
    charts = _rows(con, f"SELECT count(DISTINCT country) FROM {table}")[0][0]
    meta = {"charts_present": charts, "unknown_codes": len(bad)}
    if bad:
        meta["worst"] = _table(bad[:10], ("country", "rows"))
        return GateResult(False, "unknown country codes: " + ", ".join(f"{c!r} ({n} rows)" for c, n in bad[:10]),
                          meta)
    return GateResult(True, f"{charts} charts, all known (72 countries + global)", meta)


def chart_days_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds,
                    table: str = "raw.chart_rows") -> GateResult:
    """Share of (snapshot_date, country) charts that do not hold ranks 1..50 exactly once."""
    rows = _rows(con, f"""
        SELECT snapshot_date, country, count(*) AS n, count(DISTINCT daily_rank) AS ranks,
               min(daily_rank) AS lo, max(daily_rank) AS hi
        FROM {table} GROUP BY ALL
        HAVING NOT (n = 50 AND ranks = 50 AND lo = 1 AND hi = 50)
        ORDER BY abs(n - 50) DESC, snapshot_date, country""")
    total = _rows(con, f"SELECT count(*) FROM (SELECT DISTINCT snapshot_date, country FROM {table})")[0][0]
    rate = len(rows) / total if total else 1.0
    meta = {"chart_days": total, "incomplete_chart_days": len(rows), "incomplete_rate": round(rate, 6),
            "threshold": t.max_incomplete_chart_day_rate}
    if rows:
        meta["worst"] = _table([(str(d), c or "(global)", n, ranks) for d, c, n, ranks, _, _ in rows[:10]],
                               ("snapshot_date", "country", "rows", "distinct ranks"))
    if total == 0:
        return GateResult(False, "no chart days at all", meta)
    if rate > t.max_incomplete_chart_day_rate:
        return GateResult(False, f"{len(rows)} of {total} chart days ({rate:.2%}) do not hold ranks 1..50 once "
                          f"(threshold {t.max_incomplete_chart_day_rate:.2%})", meta)
    return GateResult(True, f"{total - len(rows)} of {total} chart days hold ranks 1..50 exactly once", meta)


def freshness_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds, today: date | None = None,
                   table: str = "raw.chart_rows") -> GateResult:
    today = today or date.today()
    newest = _rows(con, f"SELECT max(snapshot_date) FROM {table}")[0][0]
    if newest is None:
        return GateResult(False, "no chart rows at all", {"threshold_days": t.freshness_max_age_days})
    age = (today - newest).days
    meta = {"newest_snapshot_date": str(newest), "age_days": age, "threshold_days": t.freshness_max_age_days,
            "today": str(today)}
    if age > t.freshness_max_age_days:
        return GateResult(False, f"newest chart day {newest} is {age} days old "
                          f"(threshold {t.freshness_max_age_days})", meta)
    return GateResult(True, f"newest chart day {newest} is {age} day(s) old", meta)


# -- songs and labels --------------------------------------------------------

def missing_audio_features_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds) -> GateResult:
    """Songs without audio features (Spotify stopped serving them for new tracks) cannot be scored."""
    n, missing, newest_missing = _rows(con, """
        SELECT count(*), count(*) FILTER (WHERE NOT has_audio_features),
               max(album_release_date) FILTER (WHERE NOT has_audio_features) FROM core.songs""")[0]
    rate = missing / n if n else 1.0
    meta = {"songs": n, "songs_missing_audio_features": missing, "rate": round(rate, 6),
            "threshold": t.max_missing_audio_song_rate, "newest_release_missing": str(newest_missing)}
    if missing:
        worst = _rows(con, "SELECT spotify_id, name, album_release_date, first_chart_date FROM core.songs "
                           "WHERE NOT has_audio_features ORDER BY album_release_date DESC NULLS LAST LIMIT 5")
        meta["worst"] = _table(worst, ("spotify_id", "name", "album_release_date", "first_chart_date"))
    if rate > t.max_missing_audio_song_rate:
        return GateResult(False, f"{missing} of {n} songs ({rate:.2%}) have no audio features "
                          f"(threshold {t.max_missing_audio_song_rate:.2%})", meta)
    return GateResult(True, f"{missing} of {n} songs ({rate:.2%}) lack audio features; they are left out of "
                      "the features", meta)


def label_balance_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds) -> GateResult:
    rows = _rows(con, "SELECT country, count(*), avg(label::INTEGER) FROM core.song_labels GROUP BY 1 ORDER BY 3")
    present = {c for c, _, _ in rows}
    bad = [(c, n, f"{r:.4f}") for c, n, r in rows if not (t.min_positive_rate <= r <= t.max_positive_rate)]
    missing = [c for c in COUNTRIES if c not in present]
    meta = {"countries": len(rows), "min_positive_rate": round(rows[0][2], 6) if rows else None,
            "max_positive_rate": round(rows[-1][2], 6) if rows else None,
            "threshold_min": t.min_positive_rate, "threshold_max": t.max_positive_rate,
            "lowest": _table([(c, f"{r:.4f}") for c, _, r in rows[:5]], ("country", "positive rate")),
            "highest": _table([(c, f"{r:.4f}") for c, _, r in rows[-5:]], ("country", "positive rate"))}
    if missing or bad:
        parts = []
        if missing:
            parts.append(f"no labels for {', '.join(missing)}")
        if bad:
            parts.append("positive rate outside [" + f"{t.min_positive_rate}, {t.max_positive_rate}]: "
                         + ", ".join(f"{c} {r}" for c, _, r in bad))
        return GateResult(False, "; ".join(parts), meta)
    return GateResult(True, f"all 72 countries have positive rates within [{t.min_positive_rate}, "
                      f"{t.max_positive_rate}]", meta)


def bias_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds) -> GateResult:
    """Positive-rate disparity between explicit and clean songs, per country."""
    rows = _rows(con, f"""
        SELECT l.country,
               avg(l.label::INTEGER) FILTER (WHERE s.is_explicit) AS rate_explicit,
               avg(l.label::INTEGER) FILTER (WHERE NOT s.is_explicit) AS rate_clean,
               count(*) FILTER (WHERE s.is_explicit) AS n_explicit,
               count(*) FILTER (WHERE NOT s.is_explicit) AS n_clean
        FROM core.song_labels l JOIN core.songs s USING (spotify_id)
        GROUP BY 1
        HAVING n_explicit >= {t.min_bias_group} AND n_clean >= {t.min_bias_group}
        ORDER BY abs(rate_explicit - rate_clean) DESC""")
    worst = [(c, f"{e:.4f}", f"{cl:.4f}", f"{e - cl:+.4f}") for c, e, cl, _, _ in rows[:10]]
    largest = abs(rows[0][1] - rows[0][2]) if rows else 0.0
    meta = {"countries_judged": len(rows), "largest_disparity": round(largest, 6),
            "threshold": t.max_bias_disparity,
            "worst": _table(worst, ("country", "explicit rate", "clean rate", "difference"))}
    over = [r for r in rows if abs(r[1] - r[2]) > t.max_bias_disparity]
    if over:
        return GateResult(False, f"{len(over)} countries with |explicit - clean| positive-rate disparity above "
                          f"{t.max_bias_disparity}: " + ", ".join(f"{c} {e - cl:+.3f}" for c, e, cl, _, _ in over[:10]),
                          meta)
    return GateResult(True, f"explicit/clean positive-rate disparity at most {largest:.3f} "
                      f"(threshold {t.max_bias_disparity}) in {len(rows)} countries", meta)


# -- splits -------------------------------------------------------------------

def splits_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds) -> GateResult:
    """No song in two splits or outside the features, shares near target, positives everywhere."""
    leaks = _rows(con, "SELECT count(*) FROM (SELECT spotify_id FROM ml.splits GROUP BY 1 HAVING count(*) > 1)"
                  )[0][0]
    orphan = _rows(con, "SELECT count(*) FROM ml.splits s ANTI JOIN ml.features f USING (spotify_id)")[0][0]
    unsplit = _rows(con, "SELECT count(*) FROM ml.features f ANTI JOIN ml.splits s USING (spotify_id)")[0][0]
    shares = dict(_rows(con, "SELECT split, count(*) / sum(count(*)) OVER () FROM ml.splits GROUP BY 1"))
    meta: dict = {"songs_in_two_splits": leaks, "split_songs_without_features": orphan,
                  "feature_songs_without_split": unsplit, "tolerance": t.split_tolerance}
    failures = []
    if leaks:
        failures.append(f"{leaks} songs in more than one split")
    if orphan or unsplit:
        failures.append(f"{orphan} split songs without features, {unsplit} feature songs without a split")
    for name, lo, hi in SPLITS:
        target = (hi - lo) / 100
        share = float(shares.get(name, 0.0))
        meta[f"share_{name}"] = round(share, 4)
        if abs(share - target) > t.split_tolerance:
            failures.append(f"{name} holds {share:.1%} of songs, target {target:.0%} ± {t.split_tolerance:.0%}")
    pos = _rows(con, """
        SELECT s.split, l.country, sum(l.label::INTEGER) AS positives
        FROM ml.splits s JOIN core.song_labels l USING (spotify_id) GROUP BY ALL ORDER BY positives""")
    few = [(sp, c, p) for sp, c, p in pos if p < t.min_split_positives]
    expected_cells = len(SPLITS) * len(COUNTRIES)
    meta["fewest_positives"] = _table(pos[:5], ("split", "country", "positives"))
    meta["threshold_min_positives"] = t.min_split_positives
    if few or len(pos) < expected_cells:
        failures.append(f"{len(few) + expected_cells - len(pos)} (split, country) cells with fewer than "
                        f"{t.min_split_positives} positives: " + ", ".join(f"{sp}/{c}={p}" for sp, c, p in few[:10]))
    if failures:
        return GateResult(False, "; ".join(failures), meta)
    return GateResult(True, "no leakage; shares " + ", ".join(f"{k} {meta[f'share_{k}']:.1%}" for k, _, _ in SPLITS)
                      + f"; every country has >= {pos[0][2] if pos else 0} positives in every split", meta)


# -- drift against the previous data version ----------------------------------

def drift_gate(con: duckdb.DuckDBPyConnection, t: GateThresholds, previous_snapshot: int | None,
               table: str = "ml.features") -> GateResult:
    """PSI of every feature against the same table at the previous data version (DuckLake time travel)."""
    if previous_snapshot is None:
        return GateResult(True, "first data version: nothing to compare against", {"threshold": t.max_psi})
    cols = ", ".join(FEATURE_COLUMNS)
    before = con.execute(f"SELECT {cols} FROM {table} AT (VERSION => {int(previous_snapshot)})").fetchnumpy()
    now = con.execute(f"SELECT {cols} FROM {table}").fetchnumpy()
    scores = {c: psi(np.asarray(before[c], dtype=float), np.asarray(now[c], dtype=float)) for c in FEATURE_COLUMNS}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    meta = {"previous_snapshot_id": int(previous_snapshot), "threshold": t.max_psi,
            "max_psi": round(ranked[0][1], 6), "rows_before": len(before[FEATURE_COLUMNS[0]]),
            "rows_now": len(now[FEATURE_COLUMNS[0]]),
            "psi": _table([(c, f"{v:.4f}") for c, v in ranked], ("feature", "PSI"))}
    over = [(c, v) for c, v in ranked if v > t.max_psi]
    if over:
        return GateResult(False, "feature drift above PSI " + f"{t.max_psi}: "
                          + ", ".join(f"{c} {v:.3f}" for c, v in over), meta)
    return GateResult(True, f"largest PSI {ranked[0][1]:.4f} ({ranked[0][0]}) within {t.max_psi}", meta)


