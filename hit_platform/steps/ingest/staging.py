"""Staging: DuckDB's own reader reads the whole landing file once into the temp table `classified`
(see `rules.classify_sql`), or the file is rejected with its reason and nothing of it reaches the lake.

CSV is read as text, Parquet columns already of the lake's type as they are, keeping row order, so
every row keeps its row number. A .gz is first inflated whole to a plain copy in the connection's
spill folder, which DuckDB reads on every core; a truncated gzip, a missing or renamed column or an
empty file is rejected.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from hit_platform.domain.columns import COLUMN_NAMES
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
