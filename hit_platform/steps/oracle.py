"""The generator's oracle: the true hit probabilities of the synthetic songs, read with DuckDB."""

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES


def oracle_matrix(path: Path, spotify_ids: np.ndarray) -> np.ndarray | None:
    """The generator's true probabilities for these songs, (n, 72) in COUNTRIES order; None when absent.

    Only evaluation reads the oracle: it says how far the model is from the best possible one.
    """
    if not path.exists():
        return None
    con = duckdb.connect()
    con.register("ids", pd.DataFrame({"spotify_id": spotify_ids, "i": np.arange(len(spotify_ids))}))
    pivot = ", ".join(f"max(probability) FILTER (WHERE country = '{c}') AS \"{c}\"" for c in COUNTRIES)
    df = con.execute(f"""
        SELECT ids.i, {pivot} FROM ids JOIN read_parquet(?) o USING (spotify_id)
        GROUP BY ids.i ORDER BY ids.i""", [str(path)]).df()
    con.close()
    if len(df) != len(spotify_ids) or df[list(COUNTRIES)].isna().any().any():
        raise ValueError(f"oracle {path} does not cover every test song and country "
                         f"({len(df)} of {len(spotify_ids)} songs found): was it written for another dump?")
    return df[list(COUNTRIES)].to_numpy(dtype=float)
