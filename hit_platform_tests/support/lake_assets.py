"""One asset materialized on a temp warehouse's lake and MLflow store, and `ml.features` written by hand:
what the batch-explanation and attribution-drift tests build their small worlds with."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from hit_platform.adapters.lake.connection import Lake
from hit_platform.defs.resources import LakeResource, MonitorsResource, TrackingResource
from hit_platform.settings import Settings


def materialize(settings: Settings, asset, monitors_json: str | None = None) -> dict:
    """Materialize `asset` alone on an ephemeral instance; its metadata as plain values."""
    resources = {"lake": LakeResource(warehouse=str(settings.warehouse)),
                 "tracking": TrackingResource(warehouse=str(settings.warehouse))}
    if monitors_json is not None:
        resources["monitors"] = MonitorsResource(values_json=monitors_json)
    result = dg.materialize([asset], instance=dg.DagsterInstance.ephemeral(), resources=resources,
                            selection=[asset.key])
    assert result.success
    meta = result.asset_materializations_for_node(asset.op.name)[0].metadata
    return {k: v.value for k, v in meta.items()}


def write_features(settings: Settings, frame: pd.DataFrame) -> None:
    """`frame` (spotify_id and the 14 features) as the lake's ml.features, in one write."""
    def write(con):
        con.register("features_frame", frame)
        con.execute("CREATE OR REPLACE TABLE ml.features AS SELECT * FROM features_frame")
        con.unregister("features_frame")
    Lake(settings).write(write)
