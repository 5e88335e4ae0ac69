"""CSV text of dump rows, rendered with Arrow compute kernels (no Python row loop).

Format, like the real dump: a header line, `,` separators, `\\n` line ends,
strings quoted only when they contain `,`, `"` or a line break (quotes
doubled), nulls as empty fields, dates as YYYY-MM-DD, booleans as True/False,
numbers in their shortest round-trip form. With `quote_all` (the public
Kaggle file's style, `universal_top_spotify_songs.csv`) every field and the
header are quoted, and nulls and the global chart's country are `""`.

Speed: 19 of the 25 columns are the same for every row of a song, so
`FastCsvRenderer` renders each song's leading and trailing cells once and a
row costs only a gather and one string join. Rows with overridden cells
(faults) go through the generic `render_lines` on a typed table, which is
the reference the fast path must match byte for byte.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hit_platform.domain.schema import COLUMN_NAMES
from hit_platform.generator.rows import RowBlock
from hit_platform.generator.table import ROW_COLUMNS, DumpColumns, as_text

_NEEDS_QUOTES = '[,"\r\n]'
SMALL_INT_MIN, SMALL_INT_MAX = -49, 100


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar('"'), pc.replace_substring(text, '"', '""'), pa.scalar('"'), "")


def render_cells(arr: pa.Array, quote_all: bool = False) -> pa.Array:
    """One column as CSV cells (strings, never null)."""
    text = as_text(arr)
    if quote_all:
        return _quoted(pc.fill_null(text, ""))
    if pa.types.is_string(arr.type):
        text = pc.if_else(pc.match_substring_regex(text, _NEEDS_QUOTES), _quoted(text), text)
    return pc.fill_null(text, "")


def header_line(columns: tuple[str, ...] | list[str] = COLUMN_NAMES, quote_all: bool = False) -> bytes:
    return (",".join(f'"{c}"' if quote_all else c for c in columns) + "\n").encode("utf-8")


def render_lines(table: pa.Table, quote_all: bool = False) -> pa.Array:
    """Every row of a table as one CSV line ending in a newline."""
    cells = [render_cells(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col, quote_all)
             for col in table.columns]
    joined = pc.binary_join_element_wise(*cells, ",")
    return pc.binary_join_element_wise(joined, pa.scalar(""), "\n")  # x + "\n" + ""


def lines_bytes(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values laid end to end (zero-copy)."""
    if lines.null_count:
        raise ValueError("CSV lines must not be null")
    offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=offset_type)[lines.offset: lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None or len(lines) == 0:
        return memoryview(b"")
    return memoryview(data)[int(offsets[0]): int(offsets[-1])]


def render_table_csv(table: pa.Table, header: bool = True, quote_all: bool = False) -> bytes:
    """A whole (small) table as CSV bytes."""
    body = bytes(lines_bytes(render_lines(table, quote_all))) if table.num_rows else b""
    return (header_line(table.column_names, quote_all) if header else b"") + body


class FastCsvRenderer:
    """CSV lines of row blocks; per-song text is rendered once up front."""

    def __init__(self, columns: DumpColumns, quote_all: bool = False):
        self.columns = columns
        self.quote_all = quote_all
        first_row_column = COLUMN_NAMES.index(ROW_COLUMNS[0])
        last_row_column = COLUMN_NAMES.index(ROW_COLUMNS[-1])
        assert COLUMN_NAMES[first_row_column: last_row_column + 1] == ROW_COLUMNS, "row columns must be contiguous"
        lead = [render_cells(columns.song[n], quote_all) for n in COLUMN_NAMES[:first_row_column]]
        tail = [render_cells(columns.song[n], quote_all) for n in COLUMN_NAMES[last_row_column + 1:]]
        # Plain (32-bit offset) strings: callers render at most a few hundred thousand rows at once.
        self.lead = pc.binary_join_element_wise(*lead, ",")
        tail_text = pc.binary_join_element_wise(*tail, ",")
        self.tail = pc.binary_join_element_wise(tail_text, pa.scalar(""), "\n")
        self.country = render_cells(columns.country, quote_all)
        # Ranks, movements and popularity of clean rows lie in -49..100: render them once.
        self.small_ints = render_cells(pa.array(np.arange(SMALL_INT_MIN, SMALL_INT_MAX + 1), pa.int32()), quote_all)

    def _int_cells(self, values: np.ndarray) -> pa.Array:
        if len(values) and (values.min() < SMALL_INT_MIN or values.max() > SMALL_INT_MAX):
            return render_cells(pa.array(values, type=pa.int32()), self.quote_all)
        return self.small_ints.take(pa.array(values - SMALL_INT_MIN))

    def _date_cells(self, day: np.ndarray) -> pa.Array:
        first = int(day.min()) if len(day) else 0
        span = np.arange(first, (int(day.max()) if len(day) else 0) + 1)
        rendered = render_cells(pa.array(self.columns.start_epoch + span, pa.int32()).view(pa.date32()),
                                self.quote_all)
        return rendered.take(pa.array(day - first))

    def lines(self, block: RowBlock) -> pa.Array:
        """CSV lines for every row of the block, overrides included."""
        index = pa.array(block.song)
        middle = []
        for name in ROW_COLUMNS:
            if name == "country":
                middle.append(self.country.take(pa.array(block.chart)))
            elif name == "snapshot_date":
                middle.append(self._date_cells(block.day))
            else:
                middle.append(self._int_cells(getattr(block, name)))
        lines = pc.binary_join_element_wise(self.lead.take(index), *middle, self.tail.take(index), ",")
        faulty = block.overridden_rows()
        if len(faulty):
            fixed = render_lines(self.columns.table(block.take(faulty)), self.quote_all)
            mask = np.zeros(len(block), dtype=bool)
            mask[faulty] = True
            lines = pc.replace_with_mask(lines, pa.array(mask), fixed)
        return lines
