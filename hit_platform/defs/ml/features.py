"""The model's input (`ml.features`) and the train / validation / test splits (`ml.splits`)."""

import dagster as dg

from hit_platform.steps import transforms
from hit_platform.defs.lake_asset import build_lake_tables
from hit_platform.defs.resources import LakeResource
from hit_platform.defs.core import SONG_LABELS, SONGS
from hit_platform.domain.features import FEATURE_COLUMNS, SPLITS

FEATURES = dg.AssetKey(["ml", "features"])
SPLITS_KEY = dg.AssetKey(["ml", "splits"])


@dg.asset(key=FEATURES, deps=[SONGS], group_name="ml", kinds={"duckdb"}, code_version="1")
def features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The model's input columns, one row per song that has its audio features: the 12 audio
    features, is_explicit (0/1) and duration_ms, derived in SQL from core.songs."""
    def build(con):
        n, left_out = transforms.build_features(con)
        return {"ml.features": {"songs_with_features": n, "songs_left_out_missing_audio": left_out,
                                "feature_columns": ", ".join(FEATURE_COLUMNS)}}

    [result] = build_lake_tables(context, lake, build, {FEATURES: "ml.features"})
    return result


SPLITS_DESCRIPTION = (
    "Deterministic train / validation / test splits: a song's split is fixed by md5(spotify_id) mod 100 ("
    + ", ".join(f"{n} {lo}-{hi - 1}" for n, lo, hi in SPLITS)
    + "), so no song is ever in two splits and a rebuild from the same lake snapshot gives the same splits.")


@dg.asset(key=SPLITS_KEY, deps=[FEATURES, SONG_LABELS], group_name="ml", kinds={"duckdb"}, code_version="1",
          description=SPLITS_DESCRIPTION)
def splits(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    def build(con):
        counts = transforms.build_splits(con)
        return {"ml.splits": {f"songs_{k}": v for k, v in counts.items()}
                | {"splits_fingerprint": transforms.table_fingerprint(con, "ml.splits")}}

    [result] = build_lake_tables(context, lake, build, {SPLITS_KEY: "ml.splits"})
    return result
