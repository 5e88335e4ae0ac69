"""Landing files -> `raw.chart_rows` and `quarantine.chart_rows`, in DuckDB SQL.

One landing file is one unit of work and one lake transaction:

1. its content hash is checked against the files already landed (a file landed
   twice, under any name, is ingested once);
2. DuckDB's own reader stages it as text columns in memory/spill, keeping row
   order, so every row keeps its row number; a file that cannot be read whole
   (truncated gzip, missing or renamed column, empty) is rejected with its
   reason and nothing of it reaches the lake;
3. each row gets at most one reason, in a fixed order (missing required value,
   wrong type, out of range, unknown country, exact duplicate, key duplicate);
4. one transaction writes the good rows (typed) to `raw.chart_rows`, the bad
   ones (as text, with reason, column and value) to `quarantine.chart_rows`,
   and the file's record (rows read = raw + quarantined) to `raw.landed_files`.

Every ingest transaction also bumps the one row of `raw.ingest_sequence`, so two
writers ingesting at once always conflict, and the loser retries and then sees
the winner's file: no file is ever doubled, on SQLite or PostgreSQL catalogs.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from hit_platform.countries import COUNTRIES, GLOBAL_CHART
from hit_platform.lake import Lake
from hit_platform.schema import CHART_KEYS, COLUMN_NAMES, DUMP_COLUMNS, Column

log = logging.getLogger(__name__)

LANDING_SUFFIXES = (".csv", ".csv.gz", ".parquet")
STAGED = "staged_rows"  # temp table in the ingesting connection, not in the lake

# Reasons a row is quarantined, in the order they are checked.
REASONS = ("missing_value", "wrong_type", "out_of_range", "unknown_country",
           "exact_duplicate", "key_duplicate")

LINEAGE_COLUMNS = "source_file VARCHAR, file_sha256 VARCHAR, source_row BIGINT, ingested_at TIMESTAMPTZ"

RAW_DDL = ("CREATE TABLE IF NOT EXISTS raw.chart_rows ("
           + ", ".join(f"{c.name} {c.sql_type}" for c in DUMP_COLUMNS) + f", {LINEAGE_COLUMNS})")
QUARANTINE_DDL = ("CREATE TABLE IF NOT EXISTS quarantine.chart_rows ("
                  + ", ".join(f"{c} VARCHAR" for c in COLUMN_NAMES)
                  + f", {LINEAGE_COLUMNS}, reason VARCHAR, reason_column VARCHAR, reason_value VARCHAR,"
                  " detail VARCHAR)")
FILES_DDL = """CREATE TABLE IF NOT EXISTS raw.landed_files (
    file_name VARCHAR, file_sha256 VARCHAR, size_bytes BIGINT, format VARCHAR, status VARCHAR,
    rows_read BIGINT, rows_raw BIGINT, rows_quarantined BIGINT, reason VARCHAR, ingested_at TIMESTAMPTZ)"""
SEQUENCE_DDL = "CREATE TABLE IF NOT EXISTS raw.ingest_sequence (n BIGINT)"


@dataclass
class FileResult:
    """What happened to one landing file."""

    file_name: str
    file_sha256: str
    status: str  # ingested | rejected | already_landed
    rows_read: int = 0
    rows_raw: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    snapshot_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class FileRejected(Exception):
    """The file cannot be read whole; nothing of it is stored."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def landing_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return suffix.lstrip(".")
    return None


def landing_files(landing_dir: Path) -> list[Path]:
    """Data files waiting in the landing folder, in name order (history sorts first)."""
    if not landing_dir.exists():
        return []
    return sorted(p for p in landing_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".") and landing_format(p) is not None)


def ensure_tables(lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
    if lake.table_exists(con, "raw", "ingest_sequence"):
        return

    def create(c: duckdb.DuckDBPyConnection) -> None:
        for ddl in (RAW_DDL, QUARANTINE_DDL, FILES_DDL, SEQUENCE_DDL):
            c.execute(ddl)
        if c.execute("SELECT count(*) FROM raw.ingest_sequence").fetchall()[0][0] == 0:
            c.execute("INSERT INTO raw.ingest_sequence VALUES (0)")

    lake.write(create, con=con, what="create ingest tables")


# -- staging: read the whole file with DuckDB, as text, or reject it ---------

def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _reader(path: Path, fmt: str) -> str:
    p = _sql_str(str(path))
    if fmt == "parquet":
        return f"read_parquet({p})"
    # Text columns: types are checked per row below, so a bad value quarantines
    # its row instead of failing the whole file.
    return (f"read_csv({p}, header = true, delim = ',', quote = '\"', escape = '\"', "
            f"all_varchar = true, strict_mode = true, skip = 0, compression = 'auto')")


def _gzip_problem(path: Path) -> str | None:
    """Why a gzip stream cannot be read to its end (only asked once DuckDB failed)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        return f"truncated or corrupt gzip: {exc}"
    return None


def _unreadable(path: Path, fmt: str, exc: duckdb.Error) -> FileRejected:
    problem = _gzip_problem(path) if fmt == "csv.gz" else None
    return FileRejected(problem or f"unreadable {fmt} file: {_one_line(exc)}")


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> int:
    """Stage the file into the temp table `staged_rows` (25 text columns + source_row)."""
    if path.stat().st_size == 0:
        raise FileRejected("empty file: 0 bytes")
    reader = _reader(path, fmt)
    try:
        names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as exc:
        raise _unreadable(path, fmt, exc) from exc
    if names != list(COLUMN_NAMES):
        missing = [c for c in COLUMN_NAMES if c not in names]
        unexpected = [c for c in names if c not in COLUMN_NAMES]
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected column(s) {', '.join(unexpected)}")
        if not parts:
            parts.append(f"columns out of order: {', '.join(names)}")
        raise FileRejected("; ".join(parts) + f" (expected the {len(COLUMN_NAMES)} dump columns in order)")
    # Insertion order is preserved, so rowid + 1 is the row's 1-based position in the file.
    cols = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in COLUMN_NAMES)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {STAGED} AS SELECT {cols} FROM {reader}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {STAGED} AS "
                    f"SELECT rowid + 1 AS source_row, * FROM {STAGED}")
    except duckdb.Error as exc:
        raise _unreadable(path, fmt, exc) from exc
    n = con.execute(f"SELECT count(*) FROM {STAGED}").fetchall()[0][0]
    if n == 0:
        raise FileRejected("empty file: a header but no rows")
    return n


def _one_line(exc: BaseException) -> str:
    """DuckDB's message on one line (it names the line and column where reading failed)."""
    return " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())[:600]


# -- per-row reasons, as SQL generated from the one schema --------------------

def _typed(c: Column, v: str | None = None) -> str:
    """SQL for the column's value cast to its type (NULL when it does not parse)."""
    v = v or c.name
    if c.sql_type == "INTEGER":
        # '3.0' is an integer written by a float-typed writer; '3.5' and '3rd' are not.
        d = f"TRY_CAST({v} AS DOUBLE)"
        return f"(CASE WHEN {d} = floor({d}) THEN TRY_CAST({d} AS INTEGER) END)"
    if c.sql_type == "VARCHAR":
        return v
    return f"TRY_CAST({v} AS {c.sql_type})"


def _reason_cases() -> list[tuple[str, str, str, str]]:
    """(condition, reason, column, detail SQL) in checking order."""
    cases = []
    for c in DUMP_COLUMNS:
        if c.required:
            cases.append((f"{c.name} IS NULL OR trim({c.name}) = ''", "missing_value", c.name,
                          f"'missing value in required column {c.name}'"))
    for c in DUMP_COLUMNS:
        if c.sql_type != "VARCHAR":
            cases.append((f"{c.name} IS NOT NULL AND {_typed(c)} IS NULL", "wrong_type", c.name,
                          f"'{c.name}=' || {c.name} || ' is not a valid {c.sql_type}'"))
    for c in DUMP_COLUMNS:
        if c.min is not None or c.max is not None:
            t = _typed(c)
            bounds = []
            if c.min is not None:
                bounds.append(f"{t} < {c.min}")
            if c.max is not None:
                bounds.append(f"{t} > {c.max}")
            # NaN compares greater than every number in DuckDB, so it fails the max bound.
            cond = f"{t} IS NOT NULL AND ({' OR '.join(bounds)} OR isnan({t}::DOUBLE))"
            cases.append((cond, "out_of_range", c.name,
                          f"'{c.name}=' || {c.name} || ' outside [{_num(c.min)}, {_num(c.max)}]'"))
    known = ", ".join(_sql_str(x) for x in COUNTRIES)
    cases.append((f"coalesce({_country()}, '') <> '' AND {_country()} NOT IN ({known})", "unknown_country",
                  "country", "'unknown country code ' || country || ' (not one of the 72, nor empty for global)'"))
    return cases


def _num(x: float | None) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


def _country() -> str:
    return "trim(country)"


def classify_sql() -> str:
    """SQL that adds reason/reason_column/reason_value/detail to every staged row."""
    whens = []
    for cond, reason, column, detail in _reason_cases():
        whens.append((cond, reason, column, detail))
    reason = "CASE " + " ".join(f"WHEN {c} THEN '{r}'" for c, r, _, _ in whens) + " END"
    column = "CASE " + " ".join(f"WHEN {c} THEN '{col}'" for c, _, col, _ in whens) + " END"
    value = "CASE " + " ".join(f"WHEN {c} THEN {col}" for c, _, col, _ in whens) + " END"
    detail = "CASE " + " ".join(f"WHEN {c} THEN {d}" for c, _, _, d in whens) + " END"
    return (f"SELECT *, {reason} AS reason, {column} AS reason_column, "
            f"{value} AS reason_value, {detail} AS detail FROM {STAGED}")


def _typed_select(prefix: str = "") -> str:
    out = []
    for c in DUMP_COLUMNS:
        if c.name == "country":
            out.append(f"coalesce(trim({prefix}country), '{GLOBAL_CHART}') AS country")
        else:
            out.append(f"{_typed(c, prefix + c.name)} AS {c.name}")
    return ", ".join(out)


def classify_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Build temp table `classified`: staged rows with a reason (NULL = good) and typed keys.

    Must run inside the write transaction: key duplicates are checked against
    what `raw.chart_rows` holds at that snapshot.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE classified AS {classify_sql()}")
    # Exact duplicates: the same 25 values as an earlier, otherwise valid row.
    all_cols = ", ".join(COLUMN_NAMES)
    con.execute(f"""
        UPDATE classified SET reason = 'exact_duplicate', reason_column = 'spotify_id',
               reason_value = spotify_id,
               detail = 'exact duplicate of row ' || d.first_row
        FROM (SELECT source_row, min(source_row) OVER (PARTITION BY {all_cols}) AS first_row
              FROM classified WHERE reason IS NULL) d
        WHERE classified.source_row = d.source_row AND d.first_row < d.source_row""")
    # Key duplicates: first by (date, country, spotify_id), then among the rows
    # still good, by (date, country, daily_rank); earlier files (raw) come first.
    keys = f"""
        CREATE OR REPLACE TEMP TABLE keyed AS
        SELECT source_row, {_typed_select()} FROM classified WHERE reason IS NULL"""
    con.execute(keys)
    for key in (CHART_KEYS[1], CHART_KEYS[0]):
        on = " AND ".join(f"k.{c} = r.{c}" for c in key)
        part = ", ".join(key)
        label = "(" + ", ".join(key) + ")"
        con.execute(f"""
            UPDATE classified SET reason = 'key_duplicate', reason_column = '{key[-1]}',
                   reason_value = classified.{key[-1]},
                   detail = 'duplicate key {label}' || CASE WHEN d.in_raw
                       THEN ' already in raw from ' || d.other ELSE ' of row ' || d.other END
            FROM (
                SELECT k.source_row, false AS in_raw, CAST(min(k.source_row) OVER w AS VARCHAR) AS other,
                       row_number() OVER w AS nth
                FROM keyed k WINDOW w AS (PARTITION BY {part} ORDER BY k.source_row)
                QUALIFY nth > 1
                UNION ALL
                SELECT k.source_row, true, any_value(r.source_file), 2
                FROM keyed k JOIN raw.chart_rows r ON {on}
                GROUP BY k.source_row
            ) d
            WHERE classified.source_row = d.source_row AND classified.reason IS NULL""")
        con.execute("DELETE FROM keyed WHERE source_row IN "
                    "(SELECT source_row FROM classified WHERE reason = 'key_duplicate')")


# -- one file, one transaction ----------------------------------------------------

def already_landed(con: duckdb.DuckDBPyConnection, sha: str) -> str | None:
    rows = con.execute("SELECT file_name FROM raw.landed_files WHERE file_sha256 = ? LIMIT 1", [sha]).fetchall()
    return rows[0][0] if rows else None


def ingest_file(lake: Lake, path: Path, con: duckdb.DuckDBPyConnection | None = None) -> FileResult:
    """Ingest one landing file in one lake transaction (retried whole on conflicts)."""
    own = con is None
    con = con or lake.connect()
    try:
        ensure_tables(lake, con)
        sha = file_sha256(path)
        fmt = landing_format(path)
        if fmt is None:
            raise ValueError(f"{path}: not a landing file (expected one of {', '.join(LANDING_SUFFIXES)})")
        prior = already_landed(con, sha)
        if prior is not None:
            return FileResult(path.name, sha, "already_landed", reason=f"same content as {prior}")
        try:
            rows_read = stage_file(con, path, fmt)
            rejection = None
        except FileRejected as exc:
            rows_read, rejection = 0, str(exc)

        def transaction(c: duckdb.DuckDBPyConnection) -> FileResult:
            c.execute("UPDATE raw.ingest_sequence SET n = n + 1")  # serialises ingest commits
            prior = already_landed(c, sha)
            if prior is not None:
                return FileResult(path.name, sha, "already_landed", reason=f"same content as {prior}")
            meta = [path.name, sha, path.stat().st_size, fmt]
            if rejection is not None:
                c.execute("INSERT INTO raw.landed_files VALUES (?, ?, ?, ?, 'rejected', 0, 0, 0, ?, now())",
                          meta + [rejection])
                return FileResult(path.name, sha, "rejected", reason=rejection)
            classify_rows(c)
            lineage = f"{_sql_str(path.name)}, {_sql_str(sha)}, source_row, now()"
            c.execute(f"INSERT INTO raw.chart_rows SELECT {_typed_select()}, {lineage} "
                      "FROM classified WHERE reason IS NULL ORDER BY source_row")
            c.execute(f"INSERT INTO quarantine.chart_rows SELECT {', '.join(COLUMN_NAMES)}, {lineage}, "
                      "reason, reason_column, reason_value, detail FROM classified WHERE reason IS NOT NULL "
                      "ORDER BY source_row")
            by_reason = dict(c.execute("SELECT reason, count(*) FROM classified WHERE reason IS NOT NULL "
                                       "GROUP BY reason ORDER BY reason").fetchall())
            quarantined = sum(by_reason.values())
            c.execute("INSERT INTO raw.landed_files VALUES (?, ?, ?, ?, 'ingested', ?, ?, ?, NULL, now())",
                      meta + [rows_read, rows_read - quarantined, quarantined])
            return FileResult(path.name, sha, "ingested", rows_read, rows_read - quarantined, quarantined,
                              quarantined_by_reason=by_reason)

        result = lake.write(transaction, con=con, what=f"ingest {path.name}")
        result.snapshot_id = lake.snapshot_id(con)
        log.info("%s: %s (%d read, %d raw, %d quarantined)%s", path.name, result.status, result.rows_read,
                 result.rows_raw, result.rows_quarantined, f": {result.reason}" if result.reason else "")
        return result
    finally:
        for t in (STAGED, "classified", "keyed"):
            con.execute(f"DROP TABLE IF EXISTS temp.{t}")
        if own:
            con.close()


def ingest_landing(lake: Lake, files: list[Path]) -> list[FileResult]:
    """Ingest the given landing files in order, one transaction each."""
    with lake.connection() as con:
        return [ingest_file(lake, path, con=con) for path in files]


def lake_summary(lake: Lake, con: duckdb.DuckDBPyConnection) -> dict:
    """Rows per lake table, quarantined rows by reason, files by status, and the snapshot id."""
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = ? "
        "ORDER BY 1, 2", [lake.alias]).fetchall()
    rows = {f"{s}.{t}": con.execute(f"SELECT count(*) FROM {s}.{t}").fetchall()[0][0] for s, t in tables}
    summary = {"snapshot_id": lake.snapshot_id(con), "rows": rows}
    if lake.table_exists(con, "quarantine", "chart_rows"):
        summary["quarantined_by_reason"] = dict(con.execute(
            "SELECT reason, count(*) FROM quarantine.chart_rows GROUP BY 1 ORDER BY 1").fetchall())
        summary["files_by_status"] = dict(con.execute(
            "SELECT status, count(*) FROM raw.landed_files GROUP BY 1 ORDER BY 1").fetchall())
        summary["rejected_files"] = [{"file": f, "reason": r} for f, r in con.execute(
            "SELECT file_name, reason FROM raw.landed_files WHERE status = 'rejected' ORDER BY 1").fetchall()]
    return summary
