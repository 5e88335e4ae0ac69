"""Typed Arrow tables of dump rows: the 25 columns of `schema.DUMP_COLUMNS`.

`DumpColumns` holds every per-song column once as an Arrow array (as the dump
shows it: e.g. audio features null for songs hit by `missing_audio_features`),
and turns a `RowBlock` into a table by `take`, so building a table costs a few
vectorised gathers, never a Python loop over rows.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hit_platform.domain.schema import AUDIO_FEATURES, COLUMN_NAMES, DUMP_COLUMNS
from hit_platform.generator.rows import RowBlock
from hit_platform.generator.songs import Catalogue

ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(), "DATE": pa.date32(), "BOOLEAN": pa.bool_(),
}
# Release dates are written at Spotify's precision ("2024-08-16", "2024-01", "1975"): text, in Parquet too.
COLUMN_TYPES: dict[str, pa.DataType] = ({c.name: ARROW_TYPES[c.sql_type] for c in DUMP_COLUMNS}
                                        | {"album_release_date": pa.string()})
ROW_COLUMNS = ("daily_rank", "daily_movement", "weekly_movement", "country", "snapshot_date", "popularity")
SONG_COLUMNS = tuple(c for c in COLUMN_NAMES if c not in ROW_COLUMNS)
EPOCH = date(1970, 1, 1)


def arrow_schema(string_columns: frozenset[str] | set[str] = frozenset()) -> pa.Schema:
    """The dump's Arrow schema; `string_columns` (holding wrong-type values) become strings."""
    return pa.schema([pa.field(n, pa.string() if n in string_columns else COLUMN_TYPES[n]) for n in COLUMN_NAMES])


def epoch_day(d: date) -> int:
    return (d - EPOCH).days


def dates(epoch_days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(epoch_days, dtype=np.int32), type=pa.int32()).view(pa.date32())


def release_date_text(epoch_days: np.ndarray, precision: np.ndarray) -> pa.Array:
    """Release dates as the dump writes them: the day, or only its month or year (precision 0, 1, 2)."""
    full = pc.cast(dates(epoch_days), pa.string())
    precision = pa.array(np.asarray(precision, dtype=np.int8))
    return pc.if_else(pc.equal(precision, 2), pc.utf8_slice_codeunits(full, 0, 4),
                      pc.if_else(pc.equal(precision, 1), pc.utf8_slice_codeunits(full, 0, 7), full))


def as_text(arr: pa.Array) -> pa.Array:
    """A column rendered as strings the way the CSV dump shows it (booleans as True/False)."""
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_boolean(arr.type):
        return pc.if_else(arr, pa.scalar("True"), pa.scalar("False"))
    return pc.cast(arr, pa.string())


def value_as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return repr(value) if isinstance(value, float) else str(value)


class DumpColumns:
    """Per-song columns as Arrow arrays, plus the chart codes; builds tables for row blocks."""

    def __init__(self, catalogue: Catalogue, release_day: np.ndarray, release_precision: np.ndarray,
                 start_date: date, charts: tuple[str, ...], missing_audio: np.ndarray):
        """release_day: album release per song, relative to start_date, shown at release_precision
        (songs.RELEASE_PRECISIONS codes); missing_audio: bool per song."""
        self.start_epoch = epoch_day(start_date)
        cat = catalogue
        song: dict[str, pa.Array] = {
            "spotify_id": pa.array(cat.spotify_id, type=pa.string()),
            "name": pa.array(cat.name, type=pa.string()),
            "artists": pa.array(cat.artists, type=pa.string()),
            "is_explicit": pa.array(cat.is_explicit, type=pa.bool_()),
            "duration_ms": pa.array(cat.duration_ms, type=pa.int32()),
            "album_name": pa.array(cat.album_name, type=pa.string()),
            "album_release_date": release_date_text(self.start_epoch + release_day, release_precision),
        }
        for name in AUDIO_FEATURES:
            values = cat.features[name]
            song[name] = pa.array(values, type=COLUMN_TYPES[name], mask=missing_audio)
        self.song = song
        # The global chart's country is empty in the dump: null here, an empty field in CSV.
        self.country = pa.array([code or None for code in charts], type=pa.string())

    def row_column(self, name: str, block: RowBlock) -> pa.Array:
        """A per-row column (rank, movements, country, date, popularity) of a block."""
        if name == "country":
            return self.country.take(pa.array(block.chart))
        if name == "snapshot_date":
            return dates(self.start_epoch + block.day)
        return pa.array(getattr(block, name), type=pa.int32())

    def table(self, block: RowBlock, string_columns: frozenset[str] | set[str] = frozenset()) -> pa.Table:
        """The block as a typed table with its overrides applied.

        Columns in `string_columns` are written as strings (a file whose column
        holds a wrong-type value is a string column through and through)."""
        index = pa.array(block.song)
        columns = []
        for name in COLUMN_NAMES:
            col = self.song[name].take(index) if name in self.song else self.row_column(name, block)
            cells = block.overrides.get(name)
            if cells:
                col = apply_overrides(col, cells, as_string=name in string_columns)
            elif name in string_columns:
                col = as_text(col)
            columns.append(col)
        # Types come from the columns: a wrong-type override made its column a string column.
        return pa.Table.from_arrays(columns, names=list(COLUMN_NAMES))


def apply_overrides(col: pa.Array, cells: dict[int, object], as_string: bool = False) -> pa.Array:
    """Replace single cells; a str value in a typed column turns the column into strings."""
    positions = np.fromiter(sorted(cells), dtype=np.int64, count=len(cells))
    values = [cells[int(p)] for p in positions]
    text = as_string or (not pa.types.is_string(col.type) and any(isinstance(v, str) for v in values))
    if text:
        col = as_text(col)
        replacement = pa.array([value_as_text(v) for v in values], type=pa.string())
    else:
        replacement = pa.array(values, type=col.type)
    mask = np.zeros(len(col), dtype=bool)
    mask[positions] = True
    return pc.replace_with_mask(col, pa.array(mask), replacement)
