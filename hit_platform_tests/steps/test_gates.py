"""Each quality gate passes on clean generated data and fails, naming what and where, on its fault.

Faults are written straight into the real lake inside a transaction that is
rolled back afterwards: gates are the defence against any writer, not only ingest.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from hit_platform.steps import gates
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import GateThresholds
from hit_platform.domain.schema import DUMP_COLUMNS
from hit_platform.settings import Settings

T = GateThresholds()


def test_every_gate_passes_on_clean_data(built):
    results = {c.check_name: c for c in built.first.checks}
    assert len(results) == 12
    failed = {name: c.description for name, c in results.items() if not c.passed}
    assert failed == {}


def run_with_fault(built, fault_sql: list[str], gate, *args):
    with built.lake.connection() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for sql in fault_sql:
                con.execute(sql)
            return gate(con, *args)
        finally:
            con.execute("ROLLBACK")


CASES = {
    "schema": (["ALTER TABLE raw.chart_rows ALTER daily_rank TYPE BIGINT"], gates.schema_gate, (),
               "daily_rank is BIGINT, expected INTEGER"),
    "schema_column": (["ALTER TABLE raw.chart_rows DROP COLUMN tempo"], gates.schema_gate, (),
                      "missing column tempo"),
    "keys": (["INSERT INTO raw.chart_rows SELECT * REPLACE (daily_rank + 0 AS daily_rank) FROM raw.chart_rows "
              "WHERE country = 'DE' LIMIT 2"], gates.keys_gate, (),
             "duplicated (snapshot_date, country, daily_rank) keys"),
    "ranges": (["UPDATE raw.chart_rows SET danceability = 1.7 WHERE daily_rank = 3 AND country = 'FR'"],
               gates.ranges_gate, (), "danceability"),
    "missing_values": (["UPDATE raw.chart_rows SET album_name = NULL WHERE daily_rank <= 5"],
                       gates.missing_values_gate, (T,), "album_name"),
    "unknown_country": (["UPDATE raw.chart_rows SET country = 'UK' WHERE country = 'GB'"],
                        gates.unknown_countries_gate, (), "'UK'"),
    "chart_days": (["DELETE FROM raw.chart_rows WHERE daily_rank = 50 AND country IN ('DE', 'FR', 'US')"],
                   gates.chart_days_gate, (T,), "do not hold ranks 1..50"),
    "freshness": ([], gates.freshness_gate, (T, date.today() + timedelta(days=10)), "days old (threshold 3)"),
    "missing_audio": (["UPDATE core.songs SET has_audio_features = false WHERE spotify_id < 'M'"],
                      gates.missing_audio_features_gate, (T,), "have no audio features"),
    "label_balance": (["UPDATE core.song_labels SET label = false WHERE country = 'JP'"],
                      gates.label_balance_gate, (T,), "JP 0.0000"),
    "bias": (["UPDATE core.song_labels l SET label = s.is_explicit FROM core.songs s "
              "WHERE l.spotify_id = s.spotify_id AND l.country = 'SE'"], gates.bias_gate, (T,), "SE +1.000"),
    "splits_leakage": (["INSERT INTO ml.splits SELECT spotify_id, bucket, 'test' FROM ml.splits "
                        "WHERE split = 'train' LIMIT 3"], gates.splits_gate, (T,), "3 songs in more than one split"),
    "splits_shares": (["UPDATE ml.splits SET split = 'train' WHERE split = 'validation' AND bucket < 80"],
                      gates.splits_gate, (T,), "train holds"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gate_fails_on_its_fault_naming_it(built, case):
    fault_sql, gate, args, expected = CASES[case]
    with built.lake.connection(read_only=True) as con:
        clean = gate(con, *args) if case != "freshness" else gates.freshness_gate(con, T)
    assert clean.passed, clean.description
    result = run_with_fault(built, fault_sql, gate, *args)
    assert not result.passed
    assert expected in result.description, result.description
    assert result.metadata  # the UI shows counts, thresholds and worst offenders


def test_drift_gate_reads_the_previous_version_by_time_travel(built):
    table = "ml.features_drift_probe"
    with built.lake.connection() as con:
        built.lake.write(lambda c: c.execute(f"CREATE TABLE {table} AS SELECT * FROM ml.features"), con=con)
        before = built.lake.snapshot_id(con)
        try:
            assert gates.drift_gate(con, T, before, table=table).passed  # the same version: no drift
            built.lake.write(lambda c: c.execute(f"UPDATE {table} SET tempo = tempo + 45, energy = energy * 0.5"),
                             con=con)
            result = gates.drift_gate(con, T, before, table=table)
        finally:
            built.lake.write(lambda c: c.execute(f"DROP TABLE {table}"), con=con)
    assert not result.passed
    assert "tempo" in result.description and "energy" in result.description
    assert result.metadata["previous_snapshot_id"] == before


def test_thresholds_are_one_overridable_config(monkeypatch):
    monkeypatch.setenv("HIT_GATE_MAX_PSI", "0.5")
    assert GateThresholds().max_psi == 0.5
    assert GateThresholds(max_psi=0.1).max_psi == 0.1


# -- the schema gate: bad data fails it, a bug in it is an error -----------------------------------------------

def _chart_rows_lake(settings: Settings, rows: int = 40) -> Lake:
    """A lake whose raw.chart_rows holds `rows` valid rows with the dump's exact column types."""
    values = {"spotify_id": "'0VjIjW4GlUZAMYd2vXMi3b'", "name": "'Song'", "artists": "'Artist'",
              "daily_rank": "1 + (i % 50)", "daily_movement": "0", "weekly_movement": "0", "country": "'DE'",
              "snapshot_date": "DATE '2024-03-01' + (i // 50)::INTEGER", "popularity": "80", "is_explicit": "false",
              "duration_ms": "200000", "album_name": "'Album'", "album_release_date": "DATE '2023-01-01'",
              "key": "5", "mode": "1", "loudness": "-6.0", "tempo": "120.0", "time_signature": "4"}
    cols = ", ".join(f"CAST({values.get(c.name, '0.5')} AS {c.sql_type}) AS {c.name}" for c in DUMP_COLUMNS)
    lake = Lake(settings)
    lake.write(lambda con: con.execute(f"CREATE TABLE raw.chart_rows AS SELECT {cols} FROM range({rows}) t(i)"))
    return lake


def test_schema_gate_fails_on_bad_data_counting_the_failure_cases(tmp_path: Path):
    lake = _chart_rows_lake(Settings(warehouse=tmp_path / "warehouse"))
    with lake.connection(read_only=True) as con:
        clean = gates.schema_gate(con)
    assert clean.passed, clean.description
    # types stay right (the column check passes), values do not: only pandera sees it
    lake.write(lambda con: con.execute("UPDATE raw.chart_rows SET danceability = 1.7 WHERE daily_rank IN (3, 4)"))
    with lake.connection(read_only=True) as con:
        result = gates.schema_gate(con)
    assert not result.passed and "pandera schema chart_rows failed" in result.description
    assert result.metadata["failure_cases"] == 2 and result.metadata["sample_rows"] == 40
    assert "danceability" in result.metadata["worst"]


def test_a_bug_in_the_schema_gate_raises_instead_of_failing_the_data(tmp_path: Path, monkeypatch):
    lake = _chart_rows_lake(Settings(warehouse=tmp_path / "warehouse"))

    def broken_validate(*args, **kwargs):
        raise TypeError("a bug in the gate's own code")
    monkeypatch.setattr(gates.CHART_ROWS_SCHEMA, "validate", broken_validate)
    with lake.connection(read_only=True) as con, pytest.raises(TypeError, match="a bug in the gate's own code"):
        gates.schema_gate(con)
