"""Every injected fault is in the files exactly as the manifest counts it, and only once per row.

The files are read the way a loader would (every column as text) and every
row is classified by independent SQL rules; a faulty row must trip exactly
one rule, and per file the rule counts must equal the manifest's.
"""

from __future__ import annotations

import gzip
from datetime import date, timedelta

import duckdb
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.schema import AUDIO_FEATURES, COLUMN_NAMES, DUMP_COLUMNS
from hit_platform.generator import FAULT_KINDS

def _typed(name: str, sql_type: str) -> str:
    if name == "album_release_date":  # "1975", "2024-01" and "2024-01-05" are all valid
        return (f"CASE length({name}) WHEN 4 THEN TRY_CAST({name} || '-01-01' AS DATE) "
                f"WHEN 7 THEN TRY_CAST({name} || '-01' AS DATE) ELSE TRY_CAST({name} AS DATE) END")
    return f"TRY_CAST({name} AS {sql_type})"


CELL_RULES = {
    "wrong_types": " OR ".join(f"({c.name} IS NOT NULL AND {_typed(c.name, c.sql_type)} IS NULL)"
                               for c in DUMP_COLUMNS if c.sql_type != "VARCHAR"),
    "missing_values": " OR ".join(f"{c.name} IS NULL" for c in DUMP_COLUMNS if c.required),
    "out_of_range": " OR ".join(
        f"coalesce(TRY_CAST({c.name} AS DOUBLE) < {c.min} OR TRY_CAST({c.name} AS DOUBLE) > {c.max}, false)"
        for c in DUMP_COLUMNS if c.min is not None),
    "unknown_country": "country IS NOT NULL AND country NOT IN ({})".format(", ".join(f"'{c}'" for c in COUNTRIES)),
}
ALL_AUDIO_NULL = " AND ".join(f"{c} IS NULL" for c in AUDIO_FEATURES)
COLUMNS = ", ".join(COLUMN_NAMES)


def classify(dump, path) -> dict[str, int]:
    """Counts per rule for one data file (row faults and missing audio features)."""
    flags = ", ".join(f"({rule})::INT AS {name}" for name, rule in CELL_RULES.items())
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT *, {flags}, ({ALL_AUDIO_NULL})::INT AS audio_null "
                f"FROM {dump.text_source(path)}")
    counts = dict(zip(CELL_RULES, con.execute(
        f"SELECT {', '.join(f'sum({n})' for n in CELL_RULES)} FROM t").fetchone()))
    # A faulty row trips one rule; missing audio features never come with another fault.
    multi = con.execute(f"SELECT count(*) FROM t WHERE {' + '.join(CELL_RULES)} + audio_null > 1").fetchone()[0]
    assert multi == 0, f"{path.name}: {multi} rows carry more than one fault"
    clean = f"(SELECT {COLUMNS} FROM t WHERE {' + '.join(CELL_RULES)} = 0)"
    n, distinct, keys = con.execute(
        f"SELECT (SELECT count(*) FROM {clean}), (SELECT count(*) FROM (SELECT DISTINCT * FROM {clean})), "
        f"(SELECT count(*) FROM (SELECT DISTINCT snapshot_date, country, spotify_id FROM {clean}))").fetchone()
    counts["exact_duplicates"] = n - distinct
    counts["key_duplicates"] = distinct - keys
    counts["missing_audio_features"] = con.execute("SELECT sum(audio_null) FROM t").fetchone()[0]
    # Key duplicates: same key, another popularity, a valid rank.
    same_pop = con.execute(f"""SELECT count(*) FROM (SELECT DISTINCT * FROM {clean}) GROUP BY snapshot_date, country,
        spotify_id HAVING count(*) > 1 AND count(DISTINCT popularity) < count(*)""").fetchall()
    assert same_pop == [], path.name
    return {k: int(v or 0) for k, v in counts.items()}


def test_row_faults_match_the_manifest_file_by_file(faulty_dump):
    faults = faulty_dump.manifest["faults"]
    row_kinds = list(CELL_RULES) + ["exact_duplicates", "key_duplicates"]
    totals = dict.fromkeys(row_kinds + ["missing_audio_features"], 0)
    for path in faulty_dump.data_paths():
        found = classify(faulty_dump, path)
        for kind in row_kinds:
            assert found[kind] == faults[kind]["per_file"].get(path.name, 0), (path.name, kind)
            totals[kind] += found[kind]
        expected_audio_rows = faults["missing_audio_features"]["per_file"].get(path.name, 0)
        assert found["missing_audio_features"] == expected_audio_rows, path.name
        totals["missing_audio_features"] += found["missing_audio_features"]
    from hit_platform_tests.generator.conftest import ALL_FAULTS
    for kind in row_kinds:
        assert totals[kind] == faults[kind]["count"] == ALL_FAULTS[kind], kind
    assert totals["missing_audio_features"] == faults["missing_audio_features"]["rows"] > 0


def test_row_faults_reach_the_history_and_the_increments(faulty_dump):
    names = {p.name for p in faulty_dump.data_paths()}
    for kind in ("out_of_range", "wrong_types"):
        assert set(faulty_dump.manifest["faults"][kind]["per_file"]) == names, kind


def test_missing_audio_features_hit_whole_new_songs(faulty_dump):
    entry = faulty_dump.manifest["faults"]["missing_audio_features"]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {faulty_dump.text_all()}")
    songs = {r[0] for r in con.execute(f"SELECT DISTINCT spotify_id FROM t WHERE {ALL_AUDIO_NULL}").fetchall()}
    assert songs == set(entry["spotify_ids"]) and len(songs) == entry["count"]
    partial = con.execute("SELECT count(*) FROM t WHERE spotify_id IN (SELECT UNNEST(?)) AND danceability IS NOT NULL",
                          [entry["spotify_ids"]]).fetchone()[0]
    assert partial == 0  # every row of those songs
    window = faulty_dump.manifest["window"]
    history_end = date.fromisoformat(window["start_date"]) + timedelta(days=window["history_days"] - 1)
    released, first_seen = con.execute(
        "SELECT min(TRY_CAST(album_release_date AS DATE)), min(snapshot_date::DATE) FROM t "
        "WHERE spotify_id IN (SELECT UNNEST(?))", [entry["spotify_ids"]]).fetchone()
    assert released > history_end - timedelta(days=30) and first_seen <= history_end  # new tracks, in the history


def test_wrong_types_make_the_parquet_column_a_string_column(faulty_dump):
    if faulty_dump.fmt != "parquet":
        pytest.skip("Parquet only")
    by_file: dict[str, set[str]] = {}
    for path in faulty_dump.data_paths():
        schema = pq.read_schema(path)
        by_file[path.name] = {n for n in schema.names if str(schema.field(n).type) == "string"
                              and n not in ("spotify_id", "name", "artists", "album_name", "country",
                                            "album_release_date")}
    wrong = faulty_dump.manifest["faults"]["wrong_types"]
    # one column per fault in this dump (release dates are text already: "1975")
    assert sum(len(v) for v in by_file.values()) == wrong["count"] - wrong["columns"].get("album_release_date", 0)


def test_file_faults_are_whole_bad_files(faulty_dump):
    faults = faulty_dump.manifest["faults"]
    listed = {f["name"]: f for f in faulty_dump.manifest["files"] if f["kind"] == "fault"}
    for kind in ("truncated_gzip", "missing_column", "renamed_column", "empty_file"):
        entries = faults[kind]["files"]
        assert len(entries) == faults[kind]["count"] == 3
        assert len({e["name"] for e in entries}) == 3
        assert {e["name"] for e in entries} <= set(listed)
    shas = [f["sha256"] for f in listed.values() if f["fault"] != "empty_file"]
    assert len(set(shas)) == len(shas)  # distinct content
    for entry in faults["truncated_gzip"]["files"]:
        path = faulty_dump.landing / entry["name"]
        assert entry["name"].endswith("_truncated.csv.gz") or "_truncated" in entry["name"]
        with pytest.raises(EOFError):
            gzip.decompress(path.read_bytes())
        with pytest.raises(OSError, match="[Tt]runcated"):
            pyarrow.csv.read_csv(path)
        # NB DuckDB's read_csv does NOT raise on a truncated gzip: it silently reads the
        # prefix, so a loader must check the stream's integrity itself.
    for entry in faults["empty_file"]["files"]:
        assert (faulty_dump.landing / entry["name"]).stat().st_size == 0
    for kind in ("missing_column", "renamed_column"):
        for entry in faults[kind]["files"]:
            names = _column_names(faulty_dump.landing / entry["name"])
            assert entry["column"] not in names
            if kind == "missing_column":
                assert len(names) == 24 and [n for n in COLUMN_NAMES if n != entry["column"]] == names
            else:
                assert entry["renamed_to"] in names and len(names) == 25


def _column_names(path) -> list[str]:
    if path.name.endswith(".parquet"):
        return pq.read_schema(path).names
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.readline().rstrip("\n").split(",")


def test_a_clean_dump_has_no_faults(clean_dump):
    for kind in FAULT_KINDS:
        assert clean_dump.manifest["faults"][kind]["count"] == 0, kind
    assert [f for f in clean_dump.manifest["files"] if f["kind"] == "fault"] == []
    for path in clean_dump.data_paths():
        found = classify(clean_dump, path)
        assert found == dict.fromkeys(found, 0), path.name
