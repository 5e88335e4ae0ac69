"""Batch predictions: every song in the latest data, scored by the champion, into `ml`."""

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.ml.features import FEATURES
from hit_platform.defs.resources import LakeResource, TrackingResource
from hit_platform.steps import batch_predictions as batch

BATCH_PREDICTIONS = dg.AssetKey(["ml", "batch_predictions"])


@dg.asset(key=BATCH_PREDICTIONS, deps=[CHAMPION, FEATURES], group_name="ml", code_version="1",
          kinds={"duckdb", "sklearn"})
@gated
def batch_predictions(context: dg.AssetExecutionContext, lake: LakeResource,
                      tracking: TrackingResource) -> dg.MaterializeResult:
    """The champion's 72 probabilities for every song in ml.features at the latest lake snapshot, one
    row per song with the model version, the Dagster run and the snapshot read (`prediction_id` =
    `<dagster run id>:<spotify_id>`, which `hit-platform audit` traces). Appended: each run adds a
    batch, so earlier batch predictions stay for delayed-label evaluation."""
    model, info = tracking.tracker().load_champion()
    the_lake = lake.lake()
    with the_lake.connection() as con:
        read = the_lake.snapshot_id(con)
        out = batch.score_features(con, model)
        the_lake.write(lambda c: batch.append(c, out, context.run.run_id, info.version, read), con=con,
                       what="ml.batch_predictions")
        written = the_lake.snapshot_id(con)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(out), "model_version": info.version, "mlflow_run_id": info.run_id,
        "lake_snapshot_read": read, "lake_snapshot_id": written,
        "top_countries": dg.MetadataValue.md(
            out["top_country"].value_counts().head(10).to_frame("songs").to_markdown()),
    })
