"""Landing files -> `raw.chart_rows` and `quarantine.chart_rows`, in DuckDB SQL.

One landing file is one unit of work and one lake transaction:

1. its content hash is checked against the files already landed (a file landed
   twice, under any name, is ingested once);
2. DuckDB's own reader stages it in memory/spill (CSV as text, Parquet columns
   already of the lake's type as they are), keeping row order, so every row
   keeps its row number; a .gz is first inflated whole to a plain copy, which
   DuckDB reads on every core; a file that cannot be read whole (truncated
   gzip, missing or renamed column, empty) is rejected with its reason and
   nothing of it reaches the lake;
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

import hashlib
import logging
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from hit_platform.adapters.lake.tables import FILES_DDL, QUARANTINE_DDL, RAW_DDL, SEQUENCE_DDL
from hit_platform.domain.countries import COUNTRIES, GLOBAL_CHART
from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.schema import (CHART_KEYS, COLUMN_NAMES, DUMP_COLUMNS, RELEASE_DATE_FORMATS,
                                        RELEASE_DATE_PRECISION, Column)

log = logging.getLogger(__name__)

LANDING_SUFFIXES = (".csv", ".csv.gz", ".parquet")
CLASSIFIED = "classified"  # temp table in the ingesting connection, not in the lake
GUNZIPPED = ".gunzipped-"  # name prefix of a .gz file's plain copy in the spill folder while it is staged
# What a raw row holds: the dump's values (with the release date's precision), then its lineage.
RAW_VALUES = (*COLUMN_NAMES, RELEASE_DATE_PRECISION)
RAW_COLUMNS = (*RAW_VALUES, "source_file", "file_sha256", "source_row", "ingested_at")

# Reasons a row is quarantined, in the order they are checked.
REASONS = ("missing_value", "wrong_type", "out_of_range", "unknown_country",
           "exact_duplicate", "key_duplicate")



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
        ensure_release_date_precision(lake, con)
        return

    def create(c: duckdb.DuckDBPyConnection) -> None:
        for ddl in (RAW_DDL, QUARANTINE_DDL, FILES_DDL, SEQUENCE_DDL):
            c.execute(ddl)
        if c.execute("SELECT count(*) FROM raw.ingest_sequence").fetchall()[0][0] == 0:
            c.execute("INSERT INTO raw.ingest_sequence VALUES (0)")

    lake.write(create, con=con, what="create ingest tables")


def ensure_release_date_precision(lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
    """A lake ingested before release dates kept their precision gains the column; its dates were
    all whole days then (a year or a month alone was quarantined), so they are marked 'day'."""
    columns = {r[0] for r in con.execute("DESCRIBE raw.chart_rows").fetchall()}
    if RELEASE_DATE_PRECISION in columns:
        return

    def add(c: duckdb.DuckDBPyConnection) -> None:
        c.execute(f"ALTER TABLE raw.chart_rows ADD COLUMN IF NOT EXISTS {RELEASE_DATE_PRECISION} VARCHAR")
        c.execute(f"UPDATE raw.chart_rows SET {RELEASE_DATE_PRECISION} = 'day' "
                  f"WHERE album_release_date IS NOT NULL AND {RELEASE_DATE_PRECISION} IS NULL")

    lake.write(add, con=con, what=f"add raw.chart_rows.{RELEASE_DATE_PRECISION}")


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


def gunzip(path: Path, out: Path) -> str | None:
    """Decompress the gzip file `path` into `out`; why it cannot be read to its end, or None.

    DuckDB reads a truncated gzip stream up to the cut without an error, which
    would silently land part of a file; so every .gz is read whole first (zlib,
    one member after another: multi-member files are valid gzip).
    """
    try:
        with path.open("rb") as f, out.open("wb") as plain:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            started = False
            while block := f.read(1 << 22):
                while block:
                    if d.eof:  # the previous member ended: a new one begins
                        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    plain.write(d.decompress(block, 1 << 24))  # bounded: a small block may inflate a lot
                    started = True
                    block = d.unused_data if d.eof else d.unconsumed_tail
        if started and not d.eof:
            return "truncated gzip: the compressed stream ends before its end-of-stream marker"
    except zlib.error as exc:
        return f"corrupt gzip: {exc}"
    return None


def _spill_folder(con: duckdb.DuckDBPyConnection) -> Path:
    return Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])


@contextmanager
def _decompressed(con: duckdb.DuckDBPyConnection, path: Path) -> Iterator[Path]:
    """The .gz file `path` checked and decompressed whole into the connection's spill folder (deleted
    afterwards), or FileRejected. The check has to inflate it all anyway; keeping the output lets
    DuckDB read a plain file on every core, where it reads a .gz on one."""
    folder = _spill_folder(con)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{GUNZIPPED}{path.name}.", suffix=".csv", dir=folder)
    os.close(fd)
    copy = Path(name)
    try:
        if problem := gunzip(path, copy):
            raise FileRejected(problem)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def _one_line(exc: BaseException, read: Path, path: Path) -> str:
    """DuckDB's message on one line (it names the line and column where reading failed), naming the
    landing file `path` also where DuckDB read its decompressed copy `read`."""
    text = str(exc).replace(str(read), str(path))
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())[:600]


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> int:
    """Read the whole file once into the temp table `classified` (see `classify_sql`), or reject it."""
    if path.stat().st_size == 0:
        raise FileRejected("empty file: 0 bytes")
    if fmt != "csv.gz":
        return _stage(con, path, fmt, read=path)
    with _decompressed(con, path) as copy:
        return _stage(con, path, fmt, read=copy)


def _stage(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, read: Path) -> int:
    """Stage the landing file `path` as DuckDB reads it from `read` (the file, or its decompressed copy)."""
    reader = _reader(read, fmt)
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    except duckdb.Error as exc:
        raise FileRejected(f"unreadable {fmt} file: {_one_line(exc, read, path)}") from exc
    names = [r[0] for r in described]
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
    try:
        n = con.execute(classify_sql(reader, {name: type_ for name, type_, *_ in described})).fetchall()[0][0]
    except duckdb.Error as exc:
        raise FileRejected(f"unreadable {fmt} file: {_one_line(exc, read, path)}") from exc
    if n == 0:
        raise FileRejected("empty file: a header but no rows")
    return n


# -- per-row rules, as SQL generated from the one schema ------------------------

@dataclass(frozen=True)
class Rule:
    reason: str
    column: str
    condition: str  # over text columns `v_<name>` and typed columns `t_<name>`
    detail: str  # SQL over the text columns


def _release_date(v: str) -> str:
    """A release date at day ("2024-08-16"), month ("2024-01") or year ("1975") precision as the
    first day of its period (NULL when it does not parse)."""
    t = f"trim({v})"
    return (f"(CASE length({t}) WHEN 4 THEN TRY_CAST({t} || '-01-01' AS DATE) "
            f"WHEN 7 THEN TRY_CAST({t} || '-01' AS DATE) ELSE TRY_CAST({t} AS DATE) END)")


def _release_date_precision(v: str, date: str) -> str:
    """'day', 'month' or 'year': the precision of the text `v` that parsed as `date`."""
    t = f"length(trim({v}))"
    return f"(CASE WHEN {date} IS NULL THEN NULL WHEN {t} = 4 THEN 'year' WHEN {t} = 7 THEN 'month' ELSE 'day' END)"


def release_date_text(date: str, precision: str) -> str:
    """SQL for the dump's text of a stored release date: the inverse of `_release_date`."""
    formats = " ".join(f"WHEN '{p}' THEN strftime({date}, '{f}')" for p, f in RELEASE_DATE_FORMATS.items())
    return f"(CASE {precision} {formats} END)"


def _typed(c: Column, v: str) -> str:
    """SQL for a text value cast to the column's type (NULL when it does not parse)."""
    if c.name == "album_release_date":
        return _release_date(v)
    if c.sql_type == "INTEGER":
        # '3.0' is an integer written by a float-typed writer; '3.5' and '3rd' are not.
        d = f"TRY_CAST({v} AS DOUBLE)"
        return f"(CASE WHEN {d} = floor({d}) THEN TRY_CAST({d} AS INTEGER) END)"
    if c.name == "country":
        return f"coalesce(trim({v}), '{GLOBAL_CHART}')"
    if c.sql_type == "VARCHAR":
        return v
    return f"TRY_CAST({v} AS {c.sql_type})"


def _num(x: float | None) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


def _text(name: str, native: frozenset[str] = frozenset()) -> str:
    """SQL for a column's text as written: `v_<name>`, or for a column the file already holds in the
    lake's type (`native`: Parquet), the text of its value `t_<name>`, made only where it is used."""
    return f"CAST(t_{name} AS VARCHAR)" if name in native else f"v_{name}"


def _missing(c: Column, v: str) -> str:
    blank = f"{v} IS NULL OR trim({v}) = ''"
    if c.sql_type == "VARCHAR":
        return blank
    # A blank text never parses as a number, date or boolean: only the values that did not parse are trimmed.
    return f"t_{c.name} IS NULL AND ({blank})"


def _out_of_range(c: Column) -> str:
    t = f"t_{c.name}"
    if c.min is not None and c.max is not None:
        return f"{t} NOT BETWEEN {c.min} AND {c.max}"  # DuckDB sorts NaN above every number: it is outside too
    bounds = [f"{t} < {c.min}"] if c.min is not None else [f"{t} > {c.max}"]
    if c.sql_type == "DOUBLE":
        bounds.append(f"isnan({t})")
    return " OR ".join(bounds)


def row_rules(native: frozenset[str] = frozenset()) -> list[Rule]:
    """The per-row rules in checking order; a row gets the first one it breaks. Each condition tests
    the cheap typed value first, so a good row costs few string operations."""
    rules = [Rule("missing_value", c.name, _missing(c, _text(c.name, native)),
                  f"'missing value in required column {c.name}'") for c in DUMP_COLUMNS if c.required]
    rules += [Rule("wrong_type", c.name, f"t_{c.name} IS NULL AND {_text(c.name, native)} IS NOT NULL",
                   f"'{c.name}=' || {c.name} || ' is not a valid {c.sql_type}'")
              for c in DUMP_COLUMNS if c.sql_type != "VARCHAR"]
    rules += [Rule("out_of_range", c.name, _out_of_range(c),
                   f"'{c.name}=' || {c.name} || ' outside [{_num(c.min)}, {_num(c.max)}]'")
              for c in DUMP_COLUMNS if c.min is not None or c.max is not None]
    known = ", ".join(_sql_str(x) for x in COUNTRIES)
    rules.append(Rule("unknown_country", "country", f"t_country <> '{GLOBAL_CHART}' AND t_country NOT IN ({known})",
                      "'unknown country code ' || country || ' (not one of the 72, nor empty for global)'"))
    return rules


# Duplicate rules come after the row rules; their codes follow the row rules' codes.
DUPLICATE_RULES = (
    Rule("exact_duplicate", "spotify_id", "", "'exact duplicate of ' || other"),
    Rule("key_duplicate", "spotify_id", "", "'duplicate key (snapshot_date, country, spotify_id) of ' || other"),
    Rule("key_duplicate", "daily_rank", "", "'duplicate key (snapshot_date, country, daily_rank) of ' || other"),
)


def classify_sql(reader: str, source_types: dict[str, str]) -> str:
    """One pass over the file: typed values, the code of the first rule broken (`rule`, NULL =
    good) and, for bad rows only, the original text of every column (`text`, a list in column
    order: one NULL per good row instead of 25). The table keeps the file's order (DuckDB preserves
    insertion order), so its rowid + 1 is the row's 1-based position in the file.

    `source_types` are the reader's column types: CSV columns are all text; a Parquet column already
    in the lake's type is kept as it is instead of being cast to text and parsed back."""
    native = frozenset(c.name for c in DUMP_COLUMNS if c.sql_type != "VARCHAR" and source_types[c.name] == c.sql_type)
    rules = row_rules(native)
    source = ", ".join(c if c in native else f"CAST({c} AS VARCHAR) AS {c}" for c in COLUMN_NAMES)
    inner = ", ".join(f"{c.name} AS t_{c.name}" if c.name in native
                      else f"{c.name} AS v_{c.name}, {_typed(c, c.name)} AS t_{c.name}" for c in DUMP_COLUMNS)
    rule_case = "CASE " + " ".join(f"WHEN {r.condition} THEN {i}" for i, r in enumerate(rules)) + " END"
    precision = _release_date_precision(_text("album_release_date", native), "t_album_release_date")
    typed = ", ".join(f"t_{c} AS {c}" for c in COLUMN_NAMES) + f", {precision} AS {RELEASE_DATE_PRECISION}"
    text = ", ".join(_text(c, native) for c in COLUMN_NAMES)
    return f"""
        CREATE OR REPLACE TEMP TABLE {CLASSIFIED} AS
        SELECT {typed}, rule, CASE WHEN rule IS NOT NULL THEN [{text}] END AS text FROM (
            SELECT *, {rule_case} AS rule FROM (SELECT {inner} FROM (SELECT {source} FROM {reader})))"""


def find_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table `duplicates` (source_row, rule, other): good rows that repeat an earlier row.

    Must run inside the write transaction: keys are also checked against what
    `raw.chart_rows` holds at that snapshot (earlier files come first).
    """
    rules = row_rules()
    exact, key_id, key_rank = (len(rules) + i for i in range(3))
    con.execute("CREATE OR REPLACE TEMP TABLE duplicates (source_row BIGINT, rule INTEGER, other VARCHAR)")
    con.execute(f"CREATE OR REPLACE TEMP VIEW file_rows AS SELECT rowid + 1 AS source_row, * FROM {CLASSIFIED}")
    id_key, rank_key = ", ".join(CHART_KEYS[1]), ", ".join(CHART_KEYS[0])
    # Duplicates are rare: find the repeated keys with a hash aggregate, then order only their rows.
    # An exact duplicate (all 25 values equal to an earlier row) always repeats the id key too.
    con.execute(f"""
        INSERT INTO duplicates
        WITH repeated AS (
            SELECT c.* FROM file_rows c
            SEMI JOIN (SELECT {id_key} FROM file_rows WHERE rule IS NULL GROUP BY ALL HAVING count(*) > 1) k
                USING ({id_key})
            WHERE c.rule IS NULL),
        ranked AS (
            SELECT source_row,
                   min(source_row) OVER (PARTITION BY hash({", ".join(RAW_VALUES)})) AS first_same,
                   min(source_row) OVER (PARTITION BY {id_key}) AS first_key
            FROM repeated)
        SELECT source_row, CASE WHEN first_same < source_row THEN {exact} ELSE {key_id} END,
               'row ' || CASE WHEN first_same < source_row THEN first_same ELSE first_key END
        FROM ranked WHERE first_key < source_row""")
    con.execute(f"""
        INSERT INTO duplicates
        WITH good AS (SELECT c.source_row, {rank_key} FROM file_rows c ANTI JOIN duplicates d USING (source_row)
                      WHERE c.rule IS NULL)
        SELECT source_row, {key_rank}, 'row ' || first_row FROM (
            SELECT source_row, min(source_row) OVER (PARTITION BY {rank_key}) AS first_row
            FROM good SEMI JOIN (SELECT {rank_key} FROM good GROUP BY ALL HAVING count(*) > 1) k
                USING ({rank_key}))
        WHERE first_row < source_row""")
    # Keys already in raw from earlier files (only the file's dates are scanned; the
    # first file of a lake, or one with new days only, skips this).
    overlap = con.execute(f"""
        SELECT count(*) FROM (SELECT 1 FROM raw.chart_rows WHERE snapshot_date BETWEEN
            (SELECT min(snapshot_date) FROM {CLASSIFIED}) AND (SELECT max(snapshot_date) FROM {CLASSIFIED})
            LIMIT 1)""").fetchall()[0][0]
    for key, code in ((CHART_KEYS[1], key_id), (CHART_KEYS[0], key_rank)) if overlap else ():
        on = " AND ".join(f"k.{c} = r.{c}" for c in key)
        con.execute(f"""
            INSERT INTO duplicates
            WITH good AS (SELECT c.* FROM file_rows c ANTI JOIN duplicates d USING (source_row)
                          WHERE c.rule IS NULL)
            SELECT k.source_row, {code}, 'a row already in raw from ' || any_value(r.source_file)
            FROM good k JOIN raw.chart_rows r ON {on}
            WHERE r.snapshot_date BETWEEN (SELECT min(snapshot_date) FROM good)
                                      AND (SELECT max(snapshot_date) FROM good)
            GROUP BY k.source_row""")


def _quarantine_select(file_sql: str) -> str:
    """Bad rows as text with reason, column, value and detail. Rows broken by a row rule keep
    their original text; duplicates are valid rows, stored as their values' text."""
    rules = [*row_rules(), *DUPLICATE_RULES]

    def case(f) -> str:
        return "CASE b.rule " + " ".join(f"WHEN {i} THEN {f(r)}" for i, r in enumerate(rules)) + " END"
    def as_text(c: str) -> str:
        if c == "album_release_date":
            return release_date_text(f"s.{c}", f"s.{RELEASE_DATE_PRECISION}")
        return f"CAST(s.{c} AS VARCHAR)"
    text = ", ".join(f"coalesce(s.text[{i}], {as_text(c)}) AS {c}" for i, c in enumerate(COLUMN_NAMES, 1))
    return f"""
        SELECT {', '.join(COLUMN_NAMES)}, {file_sql}, source_row, now(),
               {case(lambda r: _sql_str(r.reason))}, {case(lambda r: _sql_str(r.column))},
               {case(lambda r: r.column)}, {case(lambda r: r.detail.replace('other', 'b.other'))}
        FROM (SELECT b.source_row, b.rule, b.other, {text}
              FROM (SELECT source_row, rule, NULL AS other FROM file_rows WHERE rule IS NOT NULL
                    UNION ALL SELECT source_row, rule, other FROM duplicates) b
              JOIN file_rows s USING (source_row)) b
        ORDER BY source_row"""


# -- one file, one transaction ----------------------------------------------------

def already_landed(con: duckdb.DuckDBPyConnection, sha: str) -> str | None:
    rows = con.execute("SELECT file_name FROM raw.landed_files WHERE file_sha256 = ? LIMIT 1", [sha]).fetchall()
    return rows[0][0] if rows else None


def quarantined_by_reason(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The staged file's bad rows by reason, counted in the temp tables (not in the lake's quarantine,
    which holds every file's rows)."""
    reasons = [r.reason for r in (*row_rules(), *DUPLICATE_RULES)]
    counts: dict[str, int] = {}
    for code, n in con.execute(f"""
            SELECT rule, count(*) FROM (SELECT rule FROM {CLASSIFIED} WHERE rule IS NOT NULL
                                        UNION ALL SELECT rule FROM duplicates)
            GROUP BY rule""").fetchall():
        counts[reasons[code]] = counts.get(reasons[code], 0) + n
    return dict(sorted(counts.items()))


def ingest_file(lake: Lake, path: Path, con: duckdb.DuckDBPyConnection | None = None) -> FileResult:
    """Ingest one landing file in one lake transaction (retried whole on conflicts)."""
    fmt = landing_format(path)
    if fmt is None:
        raise ValueError(f"{path}: not a landing file (expected one of {', '.join(LANDING_SUFFIXES)})")
    # hashlib lets other threads run: the file is hashed while DuckDB opens the lake, not after it
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sha256")
    hashing = hasher.submit(file_sha256, path)
    hasher.shutdown(wait=False)  # its one thread ends with the hash
    own = con is None
    con = con or lake.connect()
    try:
        ensure_tables(lake, con)
        sha = hashing.result()
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
            find_duplicates(c)
            by_reason = quarantined_by_reason(c)
            quarantined = sum(by_reason.values())
            file_sql = f"{_sql_str(path.name)}, {_sql_str(sha)}"
            c.execute(f"INSERT INTO raw.chart_rows ({', '.join(RAW_COLUMNS)}) "
                      f"SELECT {', '.join('c.' + n for n in RAW_VALUES)}, {file_sql}, c.source_row, now() "
                      "FROM file_rows c ANTI JOIN duplicates d USING (source_row) WHERE c.rule IS NULL")
            if quarantined:  # a clean file (the usual case) skips the statement
                c.execute(f"INSERT INTO quarantine.chart_rows {_quarantine_select(file_sql)}")
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
        con.execute("DROP VIEW IF EXISTS temp.file_rows")
        for t in (CLASSIFIED, "duplicates"):
            con.execute(f"DROP TABLE IF EXISTS temp.{t}")
        if own:
            con.close()


def delete_leftover_copies(lake: Lake, con: duckdb.DuckDBPyConnection) -> list[Path]:
    """Delete the decompressed .gz copies an ingest killed while staging left in the spill folder, older
    than HIT_LAKE_ORPHAN_GRACE_S (a younger one may be another ingest's, in use). Returns them."""
    cutoff = time.time() - lake.settings.lake.orphan_grace_s
    deleted = []
    for copy in _spill_folder(con).glob(f"{GUNZIPPED}*"):
        try:
            if copy.stat().st_mtime < cutoff:
                copy.unlink()
                deleted.append(copy)
        except FileNotFoundError:
            pass  # another ingest deleted it first
    if deleted:
        log.warning("deleted %d decompressed copies of .gz files left by an ingest that died while staging: %s",
                    len(deleted), ", ".join(p.name for p in deleted[:5]))
    return deleted


def ingest_landing(lake: Lake, files: list[Path]) -> list[FileResult]:
    """Ingest the given landing files in order, one transaction each; first delete what an ingest
    killed in the middle left behind: data files of a commit (no snapshot references them) and
    decompressed copies of .gz files."""
    with lake.connection() as con:
        lake.delete_orphaned_files(con)
        delete_leftover_copies(lake, con)
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
