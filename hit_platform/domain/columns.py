"""The chart dump's columns: names, order, types and valid ranges.

One source of truth. The generator writes these columns in this order, ingest
casts and range-checks with them in SQL, the pandera model (`schema.py`) validates
frames with them, and the serving API takes its field ranges from them. Plain
Python only: the settings read it, and every process reads the settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # DuckDB type in the lake's `raw` layer
    required: bool = False  # a null here quarantines the row
    min: float | None = None  # inclusive bounds; None = unbounded
    max: float | None = None
    description: str = ""

    @property
    def numeric(self) -> bool:
        return self.sql_type in ("INTEGER", "BIGINT", "DOUBLE")


DUMP_COLUMNS: tuple[Column, ...] = (
    Column("spotify_id", "VARCHAR", required=True, description="Spotify track id (22 base-62 chars)"),
    Column("name", "VARCHAR", description="track title; occasionally null in the real dump"),
    Column("artists", "VARCHAR", description='", "-joined artist names'),
    Column("daily_rank", "INTEGER", required=True, min=1, max=50, description="rank on that chart day"),
    Column("daily_movement", "INTEGER", min=-49, max=49, description="rank change since yesterday"),
    Column("weekly_movement", "INTEGER", min=-49, max=49, description="rank change since a week ago"),
    Column("country", "VARCHAR", description="ISO 3166-1 alpha-2; empty = the global chart"),
    Column("snapshot_date", "DATE", required=True, description="chart day"),
    Column("popularity", "INTEGER", min=0, max=100, description="Spotify popularity 0..100"),
    Column("is_explicit", "BOOLEAN", required=True, description="explicit lyrics"),
    Column("duration_ms", "INTEGER", required=True, min=1_000, max=3_600_000, description="track length"),
    Column("album_name", "VARCHAR", description="album title; occasionally null"),
    Column("album_release_date", "DATE",
           description="album release date at Spotify's precision: 2024-08-16, 2024-01 or 1975"),
    Column("danceability", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("energy", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("key", "INTEGER", min=-1, max=11, description="pitch class, -1 = none detected"),
    Column("loudness", "DOUBLE", min=-60, max=5, description="dB"),
    Column("mode", "INTEGER", min=0, max=1, description="1 major, 0 minor"),
    Column("speechiness", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("acousticness", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("instrumentalness", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("liveness", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("valence", "DOUBLE", min=0, max=1, description="audio feature 0..1"),
    Column("tempo", "DOUBLE", min=0, max=250, description="beats per minute"),
    Column("time_signature", "INTEGER", min=0, max=7, description="beats per bar"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in DUMP_COLUMNS)

# Spotify gives a release date at the precision it knows (its `release_date_precision`): "2024-08-16",
# "2024-01" or "1975". The lake stores the first day of that period in `album_release_date` and the
# precision beside it, so the dump's text is `strftime(album_release_date, RELEASE_DATE_FORMATS[p])`.
RELEASE_DATE_PRECISION = "album_release_date_precision"
RELEASE_DATE_FORMATS: dict[str, str] = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}
COLUMNS: dict[str, Column] = {c.name: c for c in DUMP_COLUMNS}
assert len(COLUMN_NAMES) == 25

# The audio features Spotify stopped serving for new tracks in late 2024: they
# may be null together in otherwise valid rows (a gate, not a quarantine).
AUDIO_FEATURES: tuple[str, ...] = (
    "danceability", "energy", "key", "loudness", "mode", "speechiness",
    "acousticness", "instrumentalness", "liveness", "valence", "tempo",
    "time_signature",
)

# A chart day's two keys (deduplicating on (spotify_id, snapshot_date) alone
# would wrongly merge countries).
CHART_KEYS: tuple[tuple[str, ...], ...] = (
    ("snapshot_date", "country", "daily_rank"),
    ("snapshot_date", "country", "spotify_id"),
)

# The identifiers a client may send with a song to /predict: kept in the inference log, never used by the model.
SONG_EXTRAS: tuple[str, ...] = ("spotify_id", "name", "artists", "album_release_date")
