"""Ingest: landing files -> raw + quarantine, one transaction per file, against a real temp DuckLake."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hit_platform.adapters.lake.ingest import ingest_file, ingest_landing
from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.schema import AUDIO_FEATURES, COLUMN_NAMES

HEADER = ",".join(COLUMN_NAMES)
GOOD = {  # one valid row, as the dump writes it
    "spotify_id": "4uLU6hMCjMI75M1A2tKUQC", "name": "Song", "artists": "A, B", "daily_rank": "1",
    "daily_movement": "0", "weekly_movement": "0", "country": "DE", "snapshot_date": "2024-01-01",
    "popularity": "80", "is_explicit": "True", "duration_ms": "200000", "album_name": "Album",
    "album_release_date": "2023-12-01", "danceability": "0.5", "energy": "0.6", "key": "5",
    "loudness": "-6.0", "mode": "1", "speechiness": "0.05", "acousticness": "0.1",
    "instrumentalness": "0.0", "liveness": "0.1", "valence": "0.5", "tempo": "120.0",
    "time_signature": "4",
}


def row(**changes) -> str:
    values = {**GOOD, **changes}
    return ",".join(f'"{values[c]}"' if "," in values[c] else values[c] for c in COLUMN_NAMES)


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def table_rows(lake: Lake, table: str, order: str = "source_file, source_row") -> list[tuple]:
    with lake.connection(read_only=True) as con:
        return con.execute(f"SELECT * EXCLUDE (ingested_at) FROM {table} ORDER BY {order}").fetchall()


def test_each_bad_row_gets_one_reason_naming_column_and_value(lake: Lake, settings):
    rows = [
        row(),                                                   # 1 good
        row(spotify_id="x2", daily_rank="2", danceability="1.5"),  # 2 out of range
        row(spotify_id="x3", daily_rank="3rd"),                  # 3 wrong type
        row(spotify_id="x4", daily_rank="4", country="UK"),      # 4 unknown country
        row(),                                                   # 5 exact duplicate of 1
        row(daily_rank="7", popularity="81"),                    # 6 key duplicate (date, country, id) of 1
        None,                                                    # 7 good: global chart, no audio features
        row(spotify_id="", daily_rank="2", country=""),          # 8 missing required value
        row(spotify_id="x9", daily_rank="1", popularity="5"),    # 9 key duplicate (date, country, rank) of 1
        row(spotify_id="x10", daily_rank="10", snapshot_date="not-a-date"),  # 10 wrong type
        row(spotify_id="x11", daily_rank="11", tempo="nan"),     # 11 out of range (NaN)
        row(spotify_id="x12", daily_rank="12", key="3.5"),       # 12 wrong type: not an integer
    ]
    rows[6] = row(spotify_id="x7", daily_rank="1", country="", **{f: "" for f in AUDIO_FEATURES})
    path = write_csv(settings.landing_dir / "charts.csv", rows)
    result = ingest_file(lake, path)
    assert (result.status, result.rows_read, result.rows_raw, result.rows_quarantined) == ("ingested", 12, 2, 10)
    with lake.connection(read_only=True) as con:
        q = con.execute("SELECT source_row, reason, reason_column, reason_value, detail "
                        "FROM quarantine.chart_rows ORDER BY source_row").fetchall()
        raw = con.execute("SELECT source_row, country, spotify_id, danceability FROM raw.chart_rows "
                          "ORDER BY source_row").fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in q] == [
        (2, "out_of_range", "danceability", "1.5"),
        (3, "wrong_type", "daily_rank", "3rd"),
        (4, "unknown_country", "country", "UK"),
        (5, "exact_duplicate", "spotify_id", "4uLU6hMCjMI75M1A2tKUQC"),
        (6, "key_duplicate", "spotify_id", "4uLU6hMCjMI75M1A2tKUQC"),
        (8, "missing_value", "spotify_id", None),
        (9, "key_duplicate", "daily_rank", "1"),
        (10, "wrong_type", "snapshot_date", "not-a-date"),
        (11, "out_of_range", "tempo", "nan"),
        (12, "wrong_type", "key", "3.5"),
    ]
    assert q[0][4] == "danceability=1.5 outside [0, 1]"
    assert q[3][4] == "exact duplicate of row 1"
    assert q[4][4] == "duplicate key (snapshot_date, country, spotify_id) of row 1"
    assert raw == [(1, "DE", "4uLU6hMCjMI75M1A2tKUQC", 0.5), (7, "", "x7", None)]


def test_same_content_is_ingested_once_under_any_name(lake: Lake, settings):
    path = write_csv(settings.landing_dir / "a.csv", [row()])
    copy = settings.landing_dir / "a_again.csv"
    shutil.copy(path, copy)
    results = ingest_landing(lake, [path, path, copy])
    assert [r.status for r in results] == ["ingested", "already_landed", "already_landed"]
    assert "a.csv" in results[2].reason
    assert len(table_rows(lake, "raw.chart_rows")) == 1


def test_key_already_in_raw_from_an_earlier_file_is_a_key_duplicate(lake: Lake, settings):
    first = write_csv(settings.landing_dir / "day1.csv", [row()])
    second = write_csv(settings.landing_dir / "day1_resent.csv", [row(popularity="90"), row(
        spotify_id="y2", daily_rank="2")])
    ingest_landing(lake, [first, second])
    q = table_rows(lake, "quarantine.chart_rows")
    assert len(q) == 1
    with lake.connection(read_only=True) as con:
        detail = con.execute("SELECT detail FROM quarantine.chart_rows").fetchall()[0][0]
    assert detail.endswith("of a row already in raw from day1.csv")
    assert len(table_rows(lake, "raw.chart_rows")) == 2


@pytest.mark.parametrize("name, content, reason", [
    ("empty.csv", b"", "empty file: 0 bytes"),
    ("header_only.csv", (HEADER + "\n").encode(), "a header but no rows"),
    ("missing.csv", None, "missing column(s) tempo"),
    ("renamed.csv", None, "missing column(s) danceability; unexpected column(s) danceabilty"),
    ("truncated.csv.gz", None, "truncated gzip"),
    ("garbage.parquet", b"PAR1 this is not parquet", "unreadable parquet file"),
])
def test_unreadable_files_are_rejected_whole_and_leave_the_lake_unchanged(lake, settings, name, content, reason):
    good = write_csv(settings.landing_dir / "good.csv", [row()])
    ingest_file(lake, good)
    before = (table_rows(lake, "raw.chart_rows"), table_rows(lake, "quarantine.chart_rows"))
    path = settings.landing_dir / name
    if name == "missing.csv":
        cols = [c for c in COLUMN_NAMES if c != "tempo"]
        write_csv(path, [",".join(f'"{GOOD[c]}"' for c in cols)], header=",".join(cols))
    elif name == "renamed.csv":
        write_csv(path, [row(spotify_id="z1", daily_rank="3")], header=HEADER.replace("danceability", "danceabilty"))
    elif name == "truncated.csv.gz":
        body = gzip.compress(("\n".join([HEADER] + [row(spotify_id=f"t{i}", daily_rank=str(i % 50 + 1),
                                                          snapshot_date=f"2024-02-{i // 50 + 1:02d}")
                                                      for i in range(1000)]) + "\n").encode())
        path.write_bytes(body[: len(body) // 2])
    else:
        path.write_bytes(content)
    result = ingest_file(lake, path)
    assert result.status == "rejected"
    assert reason in result.reason
    assert (table_rows(lake, "raw.chart_rows"), table_rows(lake, "quarantine.chart_rows")) == before
    with lake.connection(read_only=True) as con:
        files = con.execute("SELECT file_name, status, rows_read, reason FROM raw.landed_files "
                            "ORDER BY file_name").fetchall()
    assert (name, "rejected", 0, result.reason) in files
    # landing it again changes nothing either
    assert ingest_file(lake, path).status == "already_landed"


def test_parquet_with_a_text_column_quarantines_only_the_bad_values(lake: Lake, settings):
    rows = [dict(GOOD), dict(GOOD, spotify_id="p2", daily_rank="2", danceability="high")]
    table = pa.table({c: [r[c] for r in rows] for c in COLUMN_NAMES})
    path = settings.landing_dir / "charts.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    result = ingest_file(lake, path)
    assert (result.rows_raw, result.quarantined_by_reason) == (1, {"wrong_type": 1})


def test_rows_read_equals_raw_plus_quarantined_per_file(lake: Lake, settings):
    write_csv(settings.landing_dir / "a.csv", [row(), row(spotify_id="", daily_rank="2")])
    write_csv(settings.landing_dir / "b.csv", [row(snapshot_date="2024-01-02"), row(
        snapshot_date="2024-01-02", country="XX")])
    ingest_landing(lake, sorted(settings.landing_dir.iterdir()))
    with lake.connection(read_only=True) as con:
        check = con.execute("""
            SELECT f.file_name, f.rows_read, f.rows_raw, f.rows_quarantined,
                   (SELECT count(*) FROM raw.chart_rows r WHERE r.file_sha256 = f.file_sha256),
                   (SELECT count(*) FROM quarantine.chart_rows q WHERE q.file_sha256 = f.file_sha256)
            FROM raw.landed_files f ORDER BY 1""").fetchall()
    assert check == [("a.csv", 2, 1, 1, 1, 1), ("b.csv", 2, 1, 1, 1, 1)]


def test_a_gz_file_is_staged_from_a_plain_copy_that_never_outlives_its_ingest(lake: Lake, settings):
    """A .gz is inflated once (its integrity check) into the spill folder, read from there, and the copy
    deleted; a copy left by an ingest killed while staging is deleted by the next ingest once it is older
    than the orphan grace (a younger one may be another ingest's, in use)."""
    import os
    import time

    from hit_platform.steps.ingest.staging import GUNZIPPED

    spill = settings.warehouse / "duckdb_tmp"
    spill.mkdir(parents=True, exist_ok=True)
    old, young = spill / f"{GUNZIPPED}charts_history.csv.gz.abc.csv", spill / f"{GUNZIPPED}other.csv.gz.def.csv"
    for copy in (old, young):
        copy.write_text("left by a killed ingest\n")
    hour_ago = time.time() - settings.lake.orphan_grace_s - 60
    os.utime(old, (hour_ago, hour_ago))
    path = settings.landing_dir / "day.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join([HEADER, row(), row(spotify_id="x2", daily_rank="2")]) + "\n").encode()))
    [result] = ingest_landing(lake, [path])
    assert (result.status, result.rows_raw) == ("ingested", 2)
    assert sorted(p.name for p in spill.glob(f"{GUNZIPPED}*")) == [young.name]  # its own copy is gone too
