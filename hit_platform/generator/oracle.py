"""The oracle: every dump song's TRUE probability per country, and its sampled label.

A song is in the dump only if it charted somewhere (a country of the dump or
the global chart), so the honest probability for a song seen in the dump is
conditional on that:

    q_c = p_c / (1 - prod_j (1 - p_j))     j over every chart of the dump

Under a taste shift (`GeneratorConfig.taste_shift`) p is the shifted truth: the songs released
from the shift's day on carry the changed taste's probabilities in the shifted region's
countries, and their labels were drawn from them.

Written to `truth_dir/oracle.parquet` (never read by the pipeline): one row
per (spotify_id, country) for every song in the dump and every country of the
dump, with columns spotify_id, country, probability (q_c, float64) and label
(bool: what was sampled, i.e. whether the song charted in that country).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ORACLE_SCHEMA = pa.schema([
    pa.field("spotify_id", pa.string(), nullable=False),
    pa.field("country", pa.string(), nullable=False),
    pa.field("probability", pa.float64(), nullable=False),
    pa.field("label", pa.bool_(), nullable=False),
])


def conditional_probability(prob: np.ndarray) -> np.ndarray:
    """q = p / P(charting anywhere) for a (songs, charts) matrix of independent p."""
    p_any = -np.expm1(np.log1p(-prob).sum(axis=1, keepdims=True))  # precise even for tiny p
    return prob / p_any


def oracle_table(spotify_ids: np.ndarray, countries: tuple[str, ...], q: np.ndarray,
                 labels: np.ndarray) -> pa.Table:
    """Rows song-major: (songs x countries) arrays flattened."""
    n_songs, n_countries = q.shape
    song_index = pa.array(np.repeat(np.arange(n_songs), n_countries))
    country_index = pa.array(np.tile(np.arange(n_countries), n_songs))
    return pa.Table.from_arrays([
        pa.array(spotify_ids, type=pa.string()).take(song_index),
        pa.array(list(countries), type=pa.string()).take(country_index),
        pa.array(q.reshape(-1), type=pa.float64()),
        pa.array(labels.reshape(-1), type=pa.bool_()),
    ], schema=ORACLE_SCHEMA)


def write_oracle(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
