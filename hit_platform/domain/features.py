"""The model's input: which columns, and how a song becomes a feature row.

One source of truth for training, batch prediction and the serving API.
"""

from __future__ import annotations

from hit_platform.domain.columns import AUDIO_FEATURES, COLUMNS

# The columns the model reads, in this order (is_explicit as 0/1).
FEATURE_COLUMNS: tuple[str, ...] = (*AUDIO_FEATURES, "is_explicit", "duration_ms")

# Splits by a stable hash of the song id: bucket = md5(spotify_id) mod 100.
SPLITS: tuple[tuple[str, int, int], ...] = (("train", 0, 70), ("validation", 70, 85), ("test", 85, 100))


def feature_sql(column: str, source: str = "") -> str:
    """SQL for one feature column from a table with the dump's columns."""
    if column == "is_explicit":
        return f"CAST({source}is_explicit AS DOUBLE) AS is_explicit"
    return f"CAST({source}{column} AS DOUBLE) AS {column}"


def feature_range(column: str) -> tuple[float | None, float | None]:
    if column == "is_explicit":
        return 0.0, 1.0
    c = COLUMNS[column]
    return c.min, c.max


def split_bucket_sql(id_column: str = "spotify_id") -> str:
    """A stable bucket 0..99 of a song id (md5, so it never depends on the engine's hash)."""
    return f"CAST(md5_number({id_column}) % 100 AS INTEGER)"


def split_case_sql(bucket: str = "bucket") -> str:
    return "CASE " + " ".join(f"WHEN {bucket} < {hi} THEN '{name}'" for name, _, hi in SPLITS) + " END"
