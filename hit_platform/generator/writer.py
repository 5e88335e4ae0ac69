"""Streaming writers of dump files: CSV, gzipped CSV and Parquet.

A writer takes row blocks one after the other and never holds more than a
block (plus one Parquet row group). Files are written under a hidden
`.<name>.partial` name and renamed into place when complete, so a sensor
watching the landing folder never sees half a file.

Output never depends on how rows were split into blocks: CSV is row-wise
text (gzip cuts its own fixed blocks), and Parquet row groups have a fixed
number of rows.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hit_platform.generator.csv_render import FastCsvRenderer, header_line, lines_bytes
from hit_platform.generator.gzip_stream import HashingFile, ParallelGzipWriter
from hit_platform.generator.rows import RowBlock
from hit_platform.generator.table import DumpColumns, arrow_schema

PARQUET_ROW_GROUP_ROWS = 131_072
PARQUET_COMPRESSION = "zstd"
RENDER_ROWS = 262_144  # CSV text is rendered in slices of this many rows to bound memory


@dataclass(frozen=True)
class WrittenFile:
    name: str
    rows: int
    sha256: str
    bytes: int
    status: str = "new"  # "new" | "unchanged" (the same bytes were already in place)


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CsvDumpWriter:
    """Header + CSV lines, optionally through the parallel gzip stream."""

    def __init__(self, path: Path, renderer: FastCsvRenderer, gzip: bool):
        self.path = path
        self.renderer = renderer
        self._tmp = partial_path(path)
        self._out = ParallelGzipWriter(self._tmp) if gzip else HashingFile(self._tmp)
        self._out.write(header_line(quote_all=renderer.quote_all))
        self.rows = 0

    def write(self, block: RowBlock) -> None:
        for lo in range(0, len(block), RENDER_ROWS):
            part = block if len(block) <= RENDER_ROWS else block.take(range(lo, min(lo + RENDER_ROWS, len(block))))
            self._out.write(lines_bytes(self.renderer.lines(part)))
        self.rows += len(block)

    def close(self) -> WrittenFile:
        self._out.close()
        os.replace(self._tmp, self.path)
        return WrittenFile(self.path.name, self.rows, self._out.sha256.hexdigest(), self._out.bytes)

    def abort(self) -> None:
        self._out.abort()
        self._tmp.unlink(missing_ok=True)


class ParquetDumpWriter:
    """Typed Parquet with fixed-size row groups; wrong-type columns are strings."""

    def __init__(self, path: Path, columns: DumpColumns, string_columns: frozenset[str]):
        self.path = path
        self.columns = columns
        self.string_columns = string_columns
        self.schema = arrow_schema(string_columns)
        self._tmp = partial_path(path)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=PARQUET_COMPRESSION)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def write(self, block: RowBlock) -> None:
        table = self.columns.table(block, self.string_columns)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= PARQUET_ROW_GROUP_ROWS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self._pending)
        full = (table.num_rows // PARQUET_ROW_GROUP_ROWS) * PARQUET_ROW_GROUP_ROWS
        end = table.num_rows if final else full
        for lo in range(0, end, PARQUET_ROW_GROUP_ROWS):
            self._writer.write_table(table.slice(lo, min(PARQUET_ROW_GROUP_ROWS, end - lo)),
                                     row_group_size=PARQUET_ROW_GROUP_ROWS)
        rest = table.slice(end)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> WrittenFile:
        if self._pending_rows or self.rows == 0:
            if not self._pending:
                self._pending = [self.schema.empty_table()]
            self._flush(final=True)
        self._writer.close()
        os.replace(self._tmp, self.path)
        return WrittenFile(self.path.name, self.rows, sha256_of(self.path), self.path.stat().st_size)

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)


def open_writer(fmt: str, path: Path, columns: DumpColumns, renderer: FastCsvRenderer | None,
                string_columns: frozenset[str] = frozenset()):
    """A writer for one dump file in format `fmt` ("csv" | "csv.gz" | "parquet")."""
    if fmt == "parquet":
        return ParquetDumpWriter(path, columns, string_columns)
    if fmt in ("csv", "csv.gz"):
        assert renderer is not None
        return CsvDumpWriter(path, renderer, gzip=fmt == "csv.gz")
    raise ValueError(f"unknown dump format {fmt!r}")
