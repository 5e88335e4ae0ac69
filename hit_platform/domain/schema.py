"""The chart rows' schema: the dump's columns (`columns.py`) and the pandera model that
validates frames with them.

Everything about a column lives in `columns.py`, plain Python that the settings can read without
loading pandas and pandera; this module also offers those names, so that one import gives the schema.
"""

from __future__ import annotations

import pandera.pandas as pa

from hit_platform.domain.columns import (AUDIO_FEATURES, CHART_KEYS, COLUMN_NAMES, COLUMNS, DUMP_COLUMNS,
                                         RELEASE_DATE_FORMATS, RELEASE_DATE_PRECISION, SONG_EXTRAS, Column)

__all__ = ["AUDIO_FEATURES", "CHART_KEYS", "CHART_ROWS_SCHEMA", "COLUMNS", "COLUMN_NAMES", "DUMP_COLUMNS",
           "RELEASE_DATE_FORMATS", "RELEASE_DATE_PRECISION", "SONG_EXTRAS", "Column", "pandera_schema"]

_PANDAS_DTYPES = {"VARCHAR": str, "INTEGER": "Int64", "DOUBLE": float,
                  "DATE": "datetime64[ns]", "BOOLEAN": "boolean"}


def pandera_schema(columns: tuple[Column, ...] = DUMP_COLUMNS, *, name: str = "chart_rows") -> pa.DataFrameSchema:
    """A pandera schema for frames holding these columns (as read from the lake)."""
    fields = {}
    for c in columns:
        checks = []
        if c.min is not None:
            checks.append(pa.Check.ge(c.min))
        if c.max is not None:
            checks.append(pa.Check.le(c.max))
        fields[c.name] = pa.Column(_PANDAS_DTYPES[c.sql_type], checks=checks,
                                   nullable=not c.required, coerce=True,
                                   description=c.description or None)
    return pa.DataFrameSchema(fields, strict=True, ordered=True, name=name)


CHART_ROWS_SCHEMA = pandera_schema()
