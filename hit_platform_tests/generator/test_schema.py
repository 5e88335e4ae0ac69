"""The written files have exactly the dump's schema, types and value ranges."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.schema import COLUMN_NAMES, DUMP_COLUMNS


def _header(path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.readline().rstrip("\n").split(",")


def test_exactly_the_25_columns_in_order(clean_dump):
    for path in clean_dump.data_paths():
        names = pq.read_schema(path).names if clean_dump.fmt == "parquet" else _header(path)
        assert names == list(COLUMN_NAMES), path.name


def test_parquet_uses_the_natural_types(clean_dump):
    if clean_dump.fmt != "parquet":
        pytest.skip("Parquet only")
    expected = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "DOUBLE": pa.float64(),
                "DATE": pa.date32(), "BOOLEAN": pa.bool_()}
    for path in clean_dump.data_paths():
        schema = pq.read_schema(path)
        for col in DUMP_COLUMNS:
            # a release date is text at Spotify's precision ("1975", "2024-01"), in Parquet too
            want = pa.string() if col.name == "album_release_date" else expected[col.sql_type]
            assert schema.field(col.name).type == want, (path.name, col.name)


def test_csv_text_looks_like_the_real_dump(clean_dump):
    if clean_dump.fmt == "parquet":
        pytest.skip("CSV only")
    src = clean_dump.text_source(clean_dump.data_paths()[0])
    explicit = {r[0] for r in clean_dump.sql(f"SELECT DISTINCT is_explicit FROM {src}").fetchall()}
    assert explicit == {"True", "False"}
    bad_dates = clean_dump.sql(
        f"SELECT count(*) FROM {src} WHERE NOT regexp_full_match(snapshot_date, '\\d{{4}}-\\d{{2}}-\\d{{2}}') "
        f"OR NOT regexp_full_match(album_release_date, '\\d{{4}}(-\\d{{2}}(-\\d{{2}})?)?')").fetchone()[0]
    assert bad_dates == 0
    # The global chart's country is an empty field, not a quoted empty string.
    opener = gzip.open if clean_dump.fmt == "csv.gz" else open
    with opener(clean_dump.data_paths()[0], "rt") as f:
        f.readline()
        first = f.readline().split(",")
    assert first[3] == "1" and first[6] == ""


def test_values_within_schema_ranges_and_required_present(clean_dump):
    checks = {}
    for col in DUMP_COLUMNS:
        if col.min is not None:
            checks[f"{col.name} below min"] = f"count_if({col.name} < {col.min})"
        if col.max is not None:
            checks[f"{col.name} above max"] = f"count_if({col.name} > {col.max})"
        if col.required:
            checks[f"{col.name} null"] = f"count_if({col.name} IS NULL)"
    counts = clean_dump.sql(f"SELECT {', '.join(checks.values())} FROM {clean_dump.rows}").fetchone()
    assert dict(zip(checks, counts)) == dict.fromkeys(checks, 0)


def test_all_72_countries_and_the_global_chart_are_present(clean_dump):
    rows = clean_dump.sql(f"SELECT DISTINCT country FROM {clean_dump.rows}").fetchall()
    codes = {r[0] for r in rows}
    assert codes == set(COUNTRIES) | {None}


def test_spotify_ids_are_22_base62_chars(clean_dump):
    ids = [r[0] for r in clean_dump.sql(f"SELECT DISTINCT spotify_id FROM {clean_dump.rows}").fetchall()]
    assert ids and all(re.fullmatch(r"[0-9A-Za-z]{22}", i) for i in ids)
    assert len(ids) == clean_dump.manifest["songs_in_dump"]


def test_song_attributes_are_constant_and_text_nulls_rare(clean_dump):
    src = clean_dump.rows
    varying = clean_dump.sql(
        f"SELECT count(*) FROM (SELECT spotify_id FROM {src} GROUP BY spotify_id HAVING "
        "count(DISTINCT (name, artists, album_name, album_release_date, danceability, tempo, duration_ms, is_explicit)) > 1)"
    ).fetchone()[0]
    assert varying == 0
    null_rate = clean_dump.sql(f"SELECT avg((name IS NULL)::INT + (artists IS NULL)::INT) FROM {src}").fetchone()[0]
    assert null_rate < 0.01


def test_audio_features_have_realistic_shapes(clean_dump):
    if clean_dump.fmt != "parquet":
        pytest.skip("format-independent; checked once")
    songs = clean_dump.sql(f"SELECT DISTINCT ON (spotify_id) * FROM {clean_dump.rows}").df()
    assert 0.5 < songs.danceability.mean() < 0.75
    assert 0.5 < songs.energy.mean() < 0.75
    assert -10 < songs.loudness.median() < -5
    assert songs.tempo.between(80, 160).mean() > 0.7
    assert (songs.time_signature == 4).mean() > 0.85
    assert songs.speechiness.median() < 0.1
    assert (songs.instrumentalness < 0.01).mean() > 0.7
    assert songs.liveness.between(0.05, 0.35).mean() > 0.8
    assert 0.15 < songs.is_explicit.mean() < 0.45
    assert songs.duration_ms.between(90_000, 480_000).all()
    assert 150_000 < songs.duration_ms.median() < 250_000
    assert set(songs["key"].unique()) <= set(range(-1, 12)) and set(songs["mode"].unique()) <= {0, 1}
    # Bimodal acousticness: many near 0, a clear group near 1.
    assert (songs.acousticness < 0.2).mean() > 0.5 and (songs.acousticness > 0.6).mean() > 0.05
    assert np.corrcoef(songs.energy, songs.loudness)[0, 1] > 0.4
