"""Every lake table declared once: the DDL creates it in a real DuckLake, and the typed reader of
ml.evaluations gives back what was written, none while the table does not exist."""

from datetime import datetime, timezone

import duckdb

from hit_platform.adapters.lake import tables
from hit_platform.adapters.lake.connection import Lake


def test_every_declared_table_is_created_by_its_ddl(lake: Lake):
    ddls = [tables.RAW_DDL, tables.QUARANTINE_DDL, tables.FILES_DDL, tables.SEQUENCE_DDL, tables.EVALUATIONS_DDL,
            tables.BATCH_DDL, tables.METRICS_DDL, tables.ALERTS_DDL, tables.inference_log_ddl()]
    lake.write(lambda con: [con.execute(ddl) for ddl in ddls])
    with lake.connection(read_only=True) as con:
        for schema, table in [("raw", "chart_rows"), ("quarantine", "chart_rows"), ("raw", "landed_files"),
                              ("ml", "evaluations"), ("ml", "batch_predictions"), ("ops", "monitor_metrics"),
                              ("ops", "alerts"), ("ops", "inference_log")]:
            assert lake.table_exists(con, schema, table), f"{schema}.{table}"
        log_columns = [r[0] for r in con.execute("DESCRIBE ops.inference_log").fetchall()]
    assert log_columns == tables.ARROW_SCHEMA.names


def test_evaluations_reader_is_typed_and_empty_before_the_first(lake: Lake):
    evaluations = "a local variable DuckDB must not scan in place of the missing table"  # noqa: F841
    lake.write(lambda con: con.execute(tables.ALERTS_DDL))  # a lake, without ml.evaluations
    with lake.connection(read_only=True) as con:
        assert tables.evaluations(con) == []
    row = [datetime(2026, 11, 27, tzinfo=timezone.utc), "run-1", 3, "7", "r7", "linear", 1500, 0.81, 0.3, 0.2, 0.1,
           0.5, 0.4, None, None, None, None, None, None, None, True, "promoted", '{"DE": 0.8}']

    def write(con: duckdb.DuckDBPyConnection):
        con.execute(tables.EVALUATIONS_DDL)
        con.execute(f"INSERT INTO ml.evaluations VALUES ({', '.join('?' * len(row))})", row)
        con.execute(f"INSERT INTO ml.evaluations VALUES ({', '.join('?' * len(row))})",
                    [row[0].replace(day=28), *row[1:3], "8", "r8", "trees", *row[6:20], False, "refused", None])
    lake.write(write)
    with lake.connection(read_only=True) as con:
        every = tables.evaluations(con)
        promoted = tables.evaluations(con, promoted_only=True)
        eight = tables.evaluations(con, candidate_version="8")
    assert [e.candidate_version for e in every] == ["7", "8"]
    assert [(e.candidate_version, e.candidate_family, e.promote) for e in promoted] == [("7", "linear", True)]
    assert eight[0].decision == "refused" and eight[0].candidate_mean_roc_auc == 0.81 and eight[0].test_songs == 1500
