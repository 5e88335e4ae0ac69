"""The model's input (`ml.features`) and the train / validation / test splits (`ml.splits`), and their gates."""

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.steps import transforms
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.defs.gate_checks import LAKE_GATE, Ctx, run_gate
from hit_platform.defs.lake_asset import build_lake_tables
from hit_platform.defs.resources import GatesResource, LakeResource
from hit_platform.steps import gates
from hit_platform.defs.core import SONG_LABELS, SONGS
from hit_platform.domain.features import FEATURE_COLUMNS, SPLITS

FEATURES = dg.AssetKey(["ml", "features"])
SPLITS_KEY = dg.AssetKey(["ml", "splits"])


@dg.asset(key=FEATURES, deps=[SONGS], group_name="ml", kinds={"duckdb"}, code_version="1")
@gated
def features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The model's input columns, one row per song that has its audio features: the 12 audio
    features, is_explicit (0/1) and duration_ms, derived in SQL from core.songs."""
    def write_table(con):
        n, left_out = transforms.build_features(con)
        return {"ml.features": {"songs_with_features": n, "songs_left_out_missing_audio": left_out,
                                "feature_columns": ", ".join(FEATURE_COLUMNS)}}

    [result] = build_lake_tables(context, lake, write_table, {FEATURES: "ml.features"})
    return result


SPLITS_DESCRIPTION = (
    "Deterministic train / validation / test splits: a song's split is fixed by md5(spotify_id) mod 100 ("
    + ", ".join(f"{n} {lo}-{hi - 1}" for n, lo, hi in SPLITS)
    + "), so no song is ever in two splits and a rebuild from the same lake snapshot gives the same splits.")


@dg.asset(key=SPLITS_KEY, deps=[FEATURES, SONG_LABELS], group_name="ml", kinds={"duckdb"}, code_version="1",
          description=SPLITS_DESCRIPTION)
@gated
def splits(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    def write_table(con):
        counts = transforms.build_splits(con)
        return {"ml.splits": {f"songs_{k}": v for k, v in counts.items()}
                | {"splits_fingerprint": transforms.table_fingerprint(con, "ml.splits")}}

    [result] = build_lake_tables(context, lake, write_table, {SPLITS_KEY: "ml.splits"})
    return result


# -- gates ----------------------------------------------------------------------------

@dg.asset_check(asset=SPLITS_KEY, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def splits_sound(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """No leakage between splits, shares near 70/15/15, positives of every country in every split."""
    return run_gate(context, lake, gates.splits_gate, gates_config.thresholds())


@dg.asset_check(asset=FEATURES, blocking=False, automation_condition=WITH_ITS_ASSET, additional_deps=[],
                metadata=LAKE_GATE)
def features_drift(context: Ctx, lake: LakeResource,
                   gates_config: GatesResource) -> dg.AssetCheckResult:
    """PSI of every feature against the previous data version, read by DuckLake time travel (warns)."""
    records = context.instance.fetch_materializations(FEATURES, limit=2).records
    previous = None
    if len(records) == 2:
        meta = records[1].asset_materialization.metadata
        previous = meta["lake_snapshot_id"].value if "lake_snapshot_id" in meta else None
    return run_gate(context, lake, gates.drift_gate, gates_config.thresholds(), previous, warn=True, kind="drift")
