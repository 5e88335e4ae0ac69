"""Every lake table the platform writes, declared once: its DDL, and readers for the tables that
several modules read (`ml.evaluations`, `ops.inference_log`; `ops.alerts` has `adapters.alerts`).

The `core` and `ml` tables built by SQL (`steps/transforms.py`) are declared by their CREATE OR
REPLACE ... AS SELECT there; the tables here are appended to, so their shape is fixed up front.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import duckdb
import pyarrow as pa

from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.schema import COLUMN_NAMES, DUMP_COLUMNS, RELEASE_DATE_PRECISION, SONG_EXTRAS

# -- raw and quarantine: written by ingest -----------------------------------------------------------

LINEAGE_COLUMNS = "source_file VARCHAR, file_sha256 VARCHAR, source_row BIGINT, ingested_at TIMESTAMPTZ"

# The release date's precision comes last: lakes made before it gained it by ALTER TABLE ADD COLUMN.
RAW_DDL = ("CREATE TABLE IF NOT EXISTS raw.chart_rows ("
           + ", ".join(f"{c.name} {c.sql_type}" for c in DUMP_COLUMNS)
           + f", {LINEAGE_COLUMNS}, {RELEASE_DATE_PRECISION} VARCHAR)")
QUARANTINE_DDL = ("CREATE TABLE IF NOT EXISTS quarantine.chart_rows ("
                  + ", ".join(f"{c} VARCHAR" for c in COLUMN_NAMES)
                  + f", {LINEAGE_COLUMNS}, reason VARCHAR, reason_column VARCHAR, reason_value VARCHAR,"
                  " detail VARCHAR)")
FILES_DDL = """CREATE TABLE IF NOT EXISTS raw.landed_files (
    file_name VARCHAR, file_sha256 VARCHAR, size_bytes BIGINT, format VARCHAR, status VARCHAR,
    rows_read BIGINT, rows_raw BIGINT, rows_quarantined BIGINT, reason VARCHAR, ingested_at TIMESTAMPTZ)"""
SEQUENCE_DDL = "CREATE TABLE IF NOT EXISTS raw.ingest_sequence (n BIGINT)"


# -- ml: the evaluation of each candidate, and batch predictions ---------------------------------------

EVALUATIONS_DDL = """CREATE TABLE IF NOT EXISTS ml.evaluations (
    evaluated_at TIMESTAMPTZ, dagster_run_id VARCHAR, lake_snapshot_id BIGINT,
    candidate_version VARCHAR, candidate_run_id VARCHAR, candidate_family VARCHAR, test_songs BIGINT,
    candidate_mean_roc_auc DOUBLE, candidate_mean_pr_auc DOUBLE, candidate_mean_log_loss DOUBLE,
    candidate_mean_brier DOUBLE, baseline_mean_roc_auc DOUBLE, baseline_mean_log_loss DOUBLE,
    champion_version VARCHAR, champion_mean_roc_auc DOUBLE, champion_mean_log_loss DOUBLE,
    oracle_mean_roc_auc DOUBLE, oracle_mean_log_loss DOUBLE, auc_ratio_to_oracle DOUBLE,
    log_loss_ratio_to_oracle DOUBLE, promote BOOLEAN, decision VARCHAR, per_country_roc_auc VARCHAR)"""


@dataclass(frozen=True)
class Evaluation:
    """One row of ml.evaluations: a candidate judged against the baseline, the champion and the oracle."""

    evaluated_at: object
    dagster_run_id: str | None
    lake_snapshot_id: int | None
    candidate_version: str
    candidate_run_id: str | None
    candidate_family: str | None
    test_songs: int | None
    candidate_mean_roc_auc: float | None
    candidate_mean_pr_auc: float | None
    candidate_mean_log_loss: float | None
    candidate_mean_brier: float | None
    baseline_mean_roc_auc: float | None
    baseline_mean_log_loss: float | None
    champion_version: str | None
    champion_mean_roc_auc: float | None
    champion_mean_log_loss: float | None
    oracle_mean_roc_auc: float | None
    oracle_mean_log_loss: float | None
    auc_ratio_to_oracle: float | None
    log_loss_ratio_to_oracle: float | None
    promote: bool
    decision: str | None
    per_country_roc_auc: str | None


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether the lake the connection is on (`Lake.connect` selects it) has `schema.table` yet. Asked
    before reading a table that may not exist: querying a missing table would make DuckDB look for a
    Python variable of that name."""
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ?", [schema, table]).fetchall()[0][0] > 0


def append_evaluation(con: duckdb.DuckDBPyConnection, evaluation: Evaluation) -> None:
    """Add one row to ml.evaluations (creating it first). Call inside `Lake.write`."""
    con.execute(EVALUATIONS_DDL)
    names = [f.name for f in fields(Evaluation)]
    con.execute(f"INSERT INTO ml.evaluations ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [getattr(evaluation, n) for n in names])


def evaluations(con: duckdb.DuckDBPyConnection, *, candidate_version: str | None = None,
                promoted_only: bool = False) -> list[Evaluation]:
    """ml.evaluations in the order they were made (none when the table does not exist yet)."""
    where, params = [], []
    if candidate_version is not None:
        where.append("candidate_version = ?")
        params.append(str(candidate_version))
    if promoted_only:
        where.append("promote")
    cols = ", ".join(f.name for f in fields(Evaluation))
    if not table_exists(con, "ml", "evaluations"):
        return []
    rows = con.execute(f"SELECT {cols} FROM ml.evaluations {'WHERE ' + ' AND '.join(where) if where else ''} "
                       "ORDER BY evaluated_at", params).fetchall()
    return [Evaluation(*row) for row in rows]


PROB_COLUMNS = [f"p_{c}" for c in COUNTRIES]
BATCH_DDL = ("CREATE TABLE IF NOT EXISTS ml.batch_predictions (prediction_id VARCHAR, spotify_id VARCHAR, "
             "model_version VARCHAR, dagster_run_id VARCHAR, lake_snapshot_id BIGINT, predicted_at TIMESTAMPTZ, "
             "top_country VARCHAR, top_probability DOUBLE, "
             + ", ".join(f"{p} DOUBLE" for p in PROB_COLUMNS) + ")")
# The champion's exact attributions of its batch, long: one row per (song, country, feature), so that
# base + sum(attribution) over a (model_version, spotify_id, country) = value, on `scale`.
BATCH_EXPLANATIONS_DDL = """CREATE TABLE IF NOT EXISTS ml.batch_explanations (
    prediction_id VARCHAR, spotify_id VARCHAR, model_version VARCHAR, country VARCHAR, feature VARCHAR,
    feature_value DOUBLE, attribution DOUBLE, base DOUBLE, value DOUBLE, scale VARCHAR, probability DOUBLE,
    background_size INTEGER, dagster_run_id VARCHAR, explained_at TIMESTAMPTZ, lake_snapshot_read BIGINT)"""


# -- ops: monitors and alerts ----------------------------------------------------------------------------

METRICS_DDL = """CREATE TABLE IF NOT EXISTS ops.monitor_metrics (
    checked_at TIMESTAMPTZ, monitor VARCHAR, model_version VARCHAR, metric VARCHAR, value DOUBLE,
    threshold DOUBLE, breached BOOLEAN, dagster_run_id VARCHAR)"""

# Every move of the registry's `champion` alias: a promotion by the gates or a rollback by a person.
MODEL_EVENTS_DDL = """CREATE TABLE IF NOT EXISTS ops.model_events (
    event_id VARCHAR, event_at TIMESTAMPTZ, kind VARCHAR, model_name VARCHAR, from_version VARCHAR,
    to_version VARCHAR, who VARCHAR, reason VARCHAR, dagster_run_id VARCHAR)"""
# Each alias move as it goes: its intent (written before the registry changes), then `done` or `cancelled`
# (rows of the same move_id). A move left at `intent` was cut short; the next mover finishes it.
ALIAS_MOVES_DDL = """CREATE TABLE IF NOT EXISTS ops.alias_moves (
    move_id VARCHAR, moved_at TIMESTAMPTZ, state VARCHAR, kind VARCHAR, model_name VARCHAR, from_version VARCHAR,
    to_version VARCHAR, clears_challenger BOOLEAN, who VARCHAR, reason VARCHAR, dagster_run_id VARCHAR,
    by_process VARCHAR)"""
# Each shadow judgement as the run that made it computed it: what ml/shadow_promotion re-reads.
SHADOW_EVALUATIONS_DDL = """CREATE TABLE IF NOT EXISTS ml.shadow_evaluations (
    evaluated_at TIMESTAMPTZ, dagster_run_id VARCHAR, champion_version VARCHAR, challenger_version VARCHAR,
    shadowed_songs BIGINT, shadowed_answers BIGINT, shadowed_requests BIGINT, labelled_songs BIGINT,
    max_mean_abs_diff DOUBLE, top5_overlap DOUBLE, max_prediction_psi DOUBLE, champion_mean_roc_auc DOUBLE,
    challenger_mean_roc_auc DOUBLE, promote BOOLEAN, decision VARCHAR)"""

# One row per (estimate, country, metric): the label-free estimate with its interval, the value the
# model was promoted with on its test split (`reference`), and, once labels arrive, the realized value.
PERFORMANCE_ESTIMATES_DDL = """CREATE TABLE IF NOT EXISTS ops.performance_estimates (
    estimated_at TIMESTAMPTZ, model_version VARCHAR, source VARCHAR, window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ, country VARCHAR, metric VARCHAR, estimate DOUBLE, lower DOUBLE, upper DOUBLE,
    songs BIGINT, reference DOUBLE, realized DOUBLE, realized_songs BIGINT, realized_at TIMESTAMPTZ,
    dagster_run_id VARCHAR)"""

ALERTS_DDL = """CREATE TABLE IF NOT EXISTS ops.alerts (
    alert_id VARCHAR, raised_at TIMESTAMPTZ, kind VARCHAR, severity VARCHAR, what VARCHAR, "where" VARCHAR,
    dagster_run_id VARCHAR, details VARCHAR)"""

# Each quality gate's verdict on one version of a lake table, written by the check itself
# (`adapters/lake/verdicts.py`): what a read at any snapshot asks before it trusts that table.
GATE_VERDICTS_DDL = """CREATE TABLE IF NOT EXISTS ops.gate_verdicts (
    judged_at TIMESTAMPTZ, check_name VARCHAR, asset VARCHAR, lake_table VARCHAR, lake_snapshot_id BIGINT,
    table_version BIGINT, data_version VARCHAR, blocking BOOLEAN, passed BOOLEAN, description VARCHAR,
    dagster_run_id VARCHAR)"""


# -- ops.inference_log: written by the serving replicas (through the journal) ----------------------------

INFERENCE_LOG = "ops.inference_log"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'  # country codes such as IS, IN, DO are SQL keywords


PROBABILITIES_TYPE = pa.struct([(c, pa.float64()) for c in COUNTRIES])
ARROW_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("item", pa.int32()),
     ("received_at", pa.timestamp("us", tz="UTC")), ("endpoint", pa.string()), ("status", pa.int32()),
     ("latency_ms", pa.float64()), ("n_songs", pa.int32()), ("model_version", pa.string()),
     ("top_k", pa.int32())]
    + [(c, pa.string()) for c in SONG_EXTRAS]
    + [(c, pa.float64()) for c in FEATURE_COLUMNS]
    + [("probabilities", PROBABILITIES_TYPE), ("request_body", pa.string()), ("response_body", pa.string()),
       ("recovered_from", pa.string())])

# A challenger's scores of the songs the champion answered (HIT_PROMOTION_MODE=shadow): joined to the
# inference log on (request_id, item); journaled and committed like it.
SHADOW_LOG = "ops.shadow_log"
SHADOW_ARROW_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("item", pa.int32()), ("received_at", pa.timestamp("us", tz="UTC")),
     ("endpoint", pa.string()), ("champion_model_version", pa.string()), ("shadow_model_version", pa.string()),
     ("latency_ms", pa.float64()), ("spotify_id", pa.string()), ("probabilities", PROBABILITIES_TYPE),
     ("recovered_from", pa.string())])

_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.float64(): "DOUBLE",
               pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE"}
COLUMN_COMMENTS = {
    "request_id": "id answered to the client; one request, one id",
    "item": "position of the song in the request (0-based); NULL for a refused request",
    "received_at": "when the request arrived (UTC)",
    "endpoint": "/predict or /predict/batch",
    "status": "HTTP status answered",
    "latency_ms": "time from receipt to answer inside the replica",
    "n_songs": "songs in the request (0 when refused)",
    "model_version": "registered version of hit_model that answered (NULL if refused before a model was used)",
    "top_k": "top_k asked for",
    "probabilities": "the 72 probabilities answered, one field per country",
    "request_body": "refused requests only: the body as received (truncated)",
    "response_body": "refused requests only: the error answered",
    "recovered_from": "the journal segment these rows were recovered from after its replica died (else NULL)",
}


def inference_log_ddl(schema: pa.Schema = ARROW_SCHEMA, table: str = INFERENCE_LOG) -> str:
    cols = []
    for f in schema:
        if f.name == "probabilities":
            t = "STRUCT(" + ", ".join(f"{_q(c)} DOUBLE" for c in COUNTRIES) + ")"
        else:
            t = _DUCK_TYPES[f.type]
        cols.append(f"{_q(f.name)} {t}")
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(cols) + "\n)"


def ensure_shadow_log(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(inference_log_ddl(SHADOW_ARROW_SCHEMA, SHADOW_LOG))


def inference_log_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The columns ops.inference_log has in this lake (a lake made by an earlier version may lack some)."""
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = 'ops' AND table_name = 'inference_log'").fetchall()}


def ensure_inference_log(con: duckdb.DuckDBPyConnection) -> None:
    """Create ops.inference_log, or add the columns a lake made by an earlier version lacks."""
    con.execute(inference_log_ddl())
    have = inference_log_columns(con)
    for f in ARROW_SCHEMA:
        if f.name not in have:
            con.execute(f"ALTER TABLE {INFERENCE_LOG} ADD COLUMN {_q(f.name)} {_DUCK_TYPES[f.type]}")


def requests_in_log(lake: Lake, request_ids: list[str] | None = None) -> dict[str, int]:
    """{request_id: rows} of the log (optionally only those ids): for tests, audits and the benchmark."""
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:  # no lake yet: nothing logged
        return {}
    except duckdb.InvalidInputException as exc:  # its catalog file exists, its first commit does not yet
        if "does not exist" in str(exc):
            return {}
        raise
    with con:
        if not lake.table_exists(con, "ops", "inference_log"):
            return {}
        if request_ids is None:
            rows = con.execute(f"SELECT request_id, count(*) FROM {INFERENCE_LOG} GROUP BY ALL").fetchall()
        else:
            rows = con.execute(f"SELECT request_id, count(*) FROM {INFERENCE_LOG} WHERE list_contains(?, request_id) "
                               "GROUP BY ALL", [request_ids]).fetchall()
    return dict(rows)
