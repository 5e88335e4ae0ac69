"""Staging: DuckDB's own reader reads the whole landing file once into the temp table `classified`
(see `rules.classify_sql`), or the file is rejected with its reason and nothing of it reaches the lake.

CSV is read as text, Parquet columns already of the lake's type as they are, keeping row order, so
every row keeps its row number. A .gz is first inflated whole to a plain copy in the connection's
spill folder, which DuckDB reads on every core; a truncated gzip, one that inflates past its bound
(`inflate_limit`), a missing or renamed column, an empty file or a disk that fails while staging is
rejected.

A reason says what and where, never the file's content: DuckDB's "Original Line" is left out, and a
header's column names are quoted, escaped and bounded (`named`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from hit_platform.domain.columns import COLUMN_NAMES
from hit_platform.settings import IngestSettings
from hit_platform.steps.ingest.landing import shown
from hit_platform.steps.ingest.rules import classify_sql, sql_literal

log = logging.getLogger(__name__)

GUNZIPPED = ".gunzipped-"  # name prefix of a .gz file's plain copy in the spill folder while it is staged


class FileRejected(Exception):
    """The file cannot be read whole; nothing of it is stored."""


def _reader(path: Path, fmt: str) -> str:
    p = sql_literal(str(path))
    if fmt == "parquet":
        return f"read_parquet({p})"
    # Text columns: types are checked per row (rules.py), so a bad value quarantines
    # its row instead of failing the whole file.
    return (f"read_csv({p}, header = true, delim = ',', quote = '\"', escape = '\"', "
            f"all_varchar = true, strict_mode = true, skip = 0, compression = 'auto')")


def gunzip(path: Path, out: Path, max_bytes: int | None = None) -> str | None:
    """Decompress the gzip file `path` into `out`; why it cannot be read to its end, or None.

    DuckDB reads a truncated gzip stream up to the cut without an error, which
    would silently land part of a file; so every .gz is read whole first (zlib,
    one member after another: multi-member files are valid gzip). Nothing past
    `max_bytes` of output is written: each inflate call is bounded (a small
    block may inflate a lot) and so is their total (a small file may inflate
    to fill the disk). A disk that refuses the writes raises OSError.
    """
    total = 0
    try:
        with path.open("rb") as f, out.open("wb") as plain:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            started = False
            while block := f.read(1 << 22):
                while block:
                    if d.eof:  # the previous member ended: a new one begins
                        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    piece = d.decompress(block, 1 << 24)
                    total += len(piece)
                    if max_bytes is not None and total > max_bytes:
                        return f"inflates past {max_bytes:,} bytes"
                    plain.write(piece)
                    started = True
                    block = d.unused_data if d.eof else d.unconsumed_tail
        if started and not d.eof:
            return "truncated gzip: the compressed stream ends before its end-of-stream marker"
    except zlib.error as exc:
        return f"corrupt gzip: {exc}"
    return None


def inflate_limit(ingest: IngestSettings, gz_bytes: int, folder: Path) -> tuple[int, str]:
    """The most bytes a .csv.gz of `gz_bytes` may inflate to in `folder`, and the rule that sets it: the
    smallest of HIT_INGEST_MAX_INFLATED_BYTES, HIT_INGEST_MAX_INFLATION_RATIO times the file, and half the
    disk space free in `folder` (the lake, DuckDB's spill and the serving journal keep the other half)."""
    free = shutil.disk_usage(folder).free
    bounds = [(int(ingest.max_inflation_ratio * gz_bytes),
               f"HIT_INGEST_MAX_INFLATION_RATIO={ingest.max_inflation_ratio:g} times its {gz_bytes:,} bytes"),
              (free // 2, f"half the {free:,} bytes free on the disk of {folder}")]
    if ingest.max_inflated_bytes is not None:
        bounds.append((ingest.max_inflated_bytes, "HIT_INGEST_MAX_INFLATED_BYTES"))
    return min(bounds)


def _spill_folder(con: duckdb.DuckDBPyConnection) -> Path:
    return Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])


@contextmanager
def _decompressed(con: duckdb.DuckDBPyConnection, path: Path, ingest: IngestSettings) -> Iterator[Path]:
    """The .gz file `path` checked and decompressed whole into the connection's spill folder (deleted
    afterwards, whatever happens), or FileRejected. The check has to inflate it all anyway; keeping the
    output lets DuckDB read a plain file on every core, where it reads a .gz on one."""
    folder = _spill_folder(con)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        limit, rule = inflate_limit(ingest, path.stat().st_size, folder)
        fd, name = tempfile.mkstemp(prefix=f"{GUNZIPPED}{path.name}.", suffix=".csv", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise FileRejected(f"could not be inflated into {folder}: {_os_error(exc)}") from exc
    copy = Path(name)
    try:
        try:
            problem = gunzip(path, copy, limit)
        except OSError as exc:  # the disk: full, read-only, a file-size limit, an I/O error
            raise FileRejected(f"could not be inflated into {folder}: {_os_error(exc)}") from exc
        if problem:
            raise FileRejected(f"{problem} ({rule})" if problem.startswith("inflates past") else problem)
        yield copy
    finally:
        try:
            copy.unlink(missing_ok=True)
        except OSError as exc:
            log.error("could not delete the decompressed copy %s: %s", copy, exc)


def _os_error(exc: OSError) -> str:
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else f"{type(exc).__name__}: {exc}"


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
# DuckDB's own words for what is wrong with a CSV line (its message also quotes the line: never kept)
_CSV_WHAT = re.compile(r"Expected Number of Columns: \d+ Found: \d+|Value with unterminated quote found\.|"
                       r"Invalid unicode \(byte sequence mismatch\) detected\.|"
                       r"Maximum line size of \d+ bytes exceeded\.(?: Actual Size: ?\d+ bytes\.)?")


def _one_line(exc: BaseException, read: Path, path: Path) -> str:
    """What DuckDB found wrong and where, on one line, without the file's content: for a bad CSV line its
    number and DuckDB's words for the fault (not the "Original Line" it quotes); otherwise the first line of
    its message, naming the landing file `path` also where DuckDB read its decompressed copy `read`,
    escaped and bounded."""
    text = str(exc).replace(str(read), str(path))
    if m := _CSV_LINE.search(text):
        what = [w.group(0) for w in _CSV_WHAT.finditer(text.split("Possible fixes", 1)[0])]
        return f"CSV error on line {m.group(1)}" + (f": {what[0]}" if what else "")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return shown(first, 300)[1:-1]


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_. -]{1,64}")


def named(names: list[str], most: int = 5) -> str:
    """Column names from a file's header, for a reason: plain ones as they are, any other quoted, escaped
    and cut; at most `most` of them, then how many more."""
    out = [n if _PLAIN_NAME.fullmatch(n) else shown(n, 40) for n in names[:most]]
    if len(names) > most:
        out.append(f"and {len(names) - most} more")
    return ", ".join(out)


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, ingest: IngestSettings | None = None) -> int:
    """Read the whole file once into the temp table `classified` (see `classify_sql`), or reject it."""
    if path.stat().st_size == 0:
        raise FileRejected("empty file: 0 bytes")
    if fmt != "csv.gz":
        return _stage(con, path, fmt, read=path)
    with _decompressed(con, path, ingest or IngestSettings.model_construct()) as copy:
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
            parts.append(f"missing column(s) {named(missing, len(COLUMN_NAMES))}")
        if unexpected:
            parts.append(f"unexpected column(s) {named(unexpected)}")
        if not parts:
            parts.append(f"columns out of order: {named(names, len(COLUMN_NAMES))}")
        raise FileRejected("; ".join(parts) + f" (expected the {len(COLUMN_NAMES)} dump columns in order)")
    try:
        n = con.execute(classify_sql(reader, {name: type_ for name, type_, *_ in described})).fetchall()[0][0]
    except duckdb.Error as exc:
        raise FileRejected(f"unreadable {fmt} file: {_one_line(exc, read, path)}") from exc
    if n == 0:
        raise FileRejected("empty file: a header but no rows")
    return n


def delete_leftover_copies(con: duckdb.DuckDBPyConnection, grace_s: float) -> list[Path]:
    """Delete the decompressed .gz copies an ingest killed while staging left in the spill folder, older
    than `grace_s` (HIT_LAKE_ORPHAN_GRACE_S: a younger one may be another ingest's, in use). Returns them."""
    cutoff = time.time() - grace_s
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
