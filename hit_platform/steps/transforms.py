"""SQL that builds the lake's `core` and `ml` tables from `raw`.

Plain functions over a DuckDB connection with the lake attached; the Dagster
assets in `defs/` call them inside `Lake.write` transactions.
"""

from __future__ import annotations

import duckdb

from hit_platform.domain.countries import COUNTRIES, GLOBAL_CHART
from hit_platform.domain.features import FEATURE_COLUMNS, feature_sql, split_bucket_sql, split_case_sql
from hit_platform.domain.schema import AUDIO_FEATURES, RELEASE_DATE_PRECISION

COUNTRY_LIST_SQL = "[" + ", ".join(f"'{c}'" for c in COUNTRIES) + "]"

SONG_ATTRIBUTES = ("name", "artists", "album_name", "album_release_date", RELEASE_DATE_PRECISION,
                   "is_explicit", "duration_ms", *AUDIO_FEATURES)


def build_chart_entries(con: duckdb.DuckDBPyConnection) -> int:
    """core.chart_entries: the validated chart facts (who was where, when, at which rank)."""
    con.execute("""
        CREATE OR REPLACE TABLE core.chart_entries AS
        SELECT snapshot_date, country, daily_rank, spotify_id, daily_movement, weekly_movement, popularity,
               source_file, source_row
        FROM raw.chart_rows
        ORDER BY snapshot_date, country, daily_rank""")
    return con.execute("SELECT count(*) FROM core.chart_entries").fetchall()[0][0]


def build_songs(con: duckdb.DuckDBPyConnection) -> int:
    """core.songs: one row per song, its latest attribute values and its chart span."""
    latest = ",\n               ".join(f"arg_max({a}, snapshot_date) AS {a}" for a in SONG_ATTRIBUTES)
    complete = " AND ".join(f"{a} IS NOT NULL" for a in AUDIO_FEATURES)
    con.execute(f"""
        CREATE OR REPLACE TABLE core.songs AS
        SELECT *, ({complete}) AS has_audio_features FROM (
            SELECT spotify_id,
               {latest},
               min(snapshot_date) AS first_chart_date,
               max(snapshot_date) AS last_chart_date,
               count(*) AS chart_entries,
               count(DISTINCT country) FILTER (WHERE country <> '{GLOBAL_CHART}') AS countries_charted
            FROM raw.chart_rows
            GROUP BY spotify_id)
        ORDER BY spotify_id""")
    return con.execute("SELECT count(*) FROM core.songs").fetchall()[0][0]


def songs_missing_audio_features(con: duckdb.DuckDBPyConnection) -> int:
    """Songs of core.songs without their audio features (Spotify stopped serving them for new tracks)."""
    return con.execute("SELECT count(*) FILTER (WHERE NOT has_audio_features) FROM core.songs").fetchall()[0][0]


def build_song_labels(con: duckdb.DuckDBPyConnection) -> int:
    """core.song_labels: song x 72 countries; positive when it charted there at least once."""
    con.execute(f"""
        CREATE OR REPLACE TABLE core.song_labels AS
        WITH charted AS (
            SELECT spotify_id, country, count(*) AS days_charted, min(daily_rank) AS best_rank
            FROM core.chart_entries WHERE country <> '{GLOBAL_CHART}'
            GROUP BY ALL)
        SELECT s.spotify_id, c.country, coalesce(ch.days_charted, 0) > 0 AS label,
               coalesce(ch.days_charted, 0) AS days_charted, ch.best_rank
        FROM core.songs s
        CROSS JOIN (SELECT unnest({COUNTRY_LIST_SQL}) AS country) c
        LEFT JOIN charted ch ON ch.spotify_id = s.spotify_id AND ch.country = c.country
        ORDER BY s.spotify_id, c.country""")
    return con.execute("SELECT count(*) FROM core.song_labels").fetchall()[0][0]


def label_positive_rates(con: duckdb.DuckDBPyConnection) -> tuple[float, float, float]:
    """The smallest, mean and largest share of positive labels of a country in core.song_labels."""
    rates = con.execute("SELECT min(r), avg(r), max(r) FROM (SELECT avg(label::INTEGER) r "
                        "FROM core.song_labels GROUP BY country)").fetchall()[0]
    return float(rates[0]), float(rates[1]), float(rates[2])


def build_features(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """ml.features: the model's input columns for every song that has its audio features.

    Returns (songs with features, songs left out for missing audio features).
    """
    cols = ", ".join(feature_sql(c) for c in FEATURE_COLUMNS)
    con.execute(f"""
        CREATE OR REPLACE TABLE ml.features AS
        SELECT spotify_id, {cols} FROM core.songs WHERE has_audio_features ORDER BY spotify_id""")
    n, left_out = con.execute(
        "SELECT count(*) FILTER (WHERE has_audio_features), count(*) FILTER (WHERE NOT has_audio_features) "
        "FROM core.songs").fetchall()[0]
    return n, left_out


def build_splits(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """ml.splits: train / validation / test by a stable hash of the song id."""
    con.execute(f"""
        CREATE OR REPLACE TABLE ml.splits AS
        SELECT spotify_id, bucket, {split_case_sql()} AS split
        FROM (SELECT spotify_id, {split_bucket_sql()} AS bucket FROM ml.features)
        ORDER BY spotify_id""")
    return dict(con.execute("SELECT split, count(*) FROM ml.splits GROUP BY 1 ORDER BY 1").fetchall())


def table_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """A content hash of a table (order-independent), to prove two builds are identical."""
    return con.execute(f"SELECT CAST(bit_xor(hash(t)) AS VARCHAR) || ':' || count(*) FROM {table} t"
                       ).fetchall()[0][0]


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, type) of each column of a table, in order."""
    return [(name, type_) for name, type_, *_ in con.execute(f"DESCRIBE {table}").fetchall()]


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
