"""Batch predictions: every song in the latest data, scored by the champion, into `ml`."""

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters.lake.tables import BATCH_DDL, PROB_COLUMNS
from hit_platform.domain.countries import COUNTRIES
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.ml.features import FEATURES
from hit_platform.defs.resources import LakeResource, TrackingResource
from hit_platform.domain.features import FEATURE_COLUMNS

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
        df = con.execute(f"SELECT spotify_id, {', '.join(FEATURE_COLUMNS)} FROM ml.features ORDER BY spotify_id").df()
        P = model.predict_proba(df[list(FEATURE_COLUMNS)])  # all songs x 72 countries in one call
        top = P.argmax(axis=1)
        out = pd.DataFrame(P, columns=PROB_COLUMNS)
        out.insert(0, "top_probability", P[np.arange(len(P)), top])
        out.insert(0, "top_country", np.asarray(COUNTRIES)[top])
        out.insert(0, "spotify_id", df["spotify_id"].to_numpy())

        def write(c: duckdb.DuckDBPyConnection) -> None:
            c.execute(BATCH_DDL)
            c.register("batch_frame", out)
            c.execute(f"""
                INSERT INTO ml.batch_predictions
                SELECT ? || ':' || spotify_id, spotify_id, ?, ?, ?, now(), top_country, top_probability,
                       {', '.join(PROB_COLUMNS)}
                FROM batch_frame""", [context.run.run_id, info.version, context.run.run_id, read])
            c.unregister("batch_frame")

        the_lake.write(write, con=con, what="ml.batch_predictions")
        written = the_lake.snapshot_id(con)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(out), "model_version": info.version, "mlflow_run_id": info.run_id,
        "lake_snapshot_read": read, "lake_snapshot_id": written,
        "top_countries": dg.MetadataValue.md(
            out["top_country"].value_counts().head(10).to_frame("songs").to_markdown()),
    })
