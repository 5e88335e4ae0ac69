"""Assembles the Definitions: every asset, check, sensor and resource of the platform."""

import dagster as dg

from hit_platform.defs import checks, evaluation, features, ingest, predictions, sensors, serving, songs, training
from hit_platform.defs.resources import GatesResource, LakeResource, TrackingResource, TrainingResource

ASSET_MODULES = [ingest, songs, features, training, evaluation, predictions, serving]
CHECK_MODULES = [checks, training, evaluation]


def build_definitions(lake: LakeResource | None = None, gates: GatesResource | None = None,
                      tracking: TrackingResource | None = None,
                      training: TrainingResource | None = None) -> dg.Definitions:
    """The whole graph; tests pass a lake and an MLflow store in a temp folder, the default is
    `Settings` (env / warehouse/)."""
    lake = lake or LakeResource()
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[sensors.ingest_job],
        sensors=[sensors.landing_sensor, sensors.run_failure_alerts],
        resources={"lake": lake, "gates_config": gates or GatesResource(),
                   "tracking": tracking or TrackingResource(warehouse=lake.warehouse),
                   "training": training or TrainingResource()},
    )


defs = build_definitions()
