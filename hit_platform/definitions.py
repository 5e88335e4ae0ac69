"""Assembles the Definitions: every asset, check, sensor and resource of the platform."""

import dagster as dg

from hit_platform.automation import ON_NEW_DATA_OR_CODE, ON_SCHEDULE_OR_UPDATE, automated, automation_sensor
from hit_platform.defs import (checks, evaluation, features, ingest, monitoring, predictions, sensors, serving, songs,
                               training)
from hit_platform.defs.resources import (GatesResource, LakeResource, MonitorsResource, TrackingResource,
                                         TrainingResource)

ASSET_MODULES = [ingest, songs, features, training, evaluation, predictions, serving, monitoring]
CHECK_MODULES = [checks, training, evaluation]
# Ingest is started by the landing sensor; everything else follows its group's condition.
CONDITIONS = {"core": ON_NEW_DATA_OR_CODE, "ml": ON_NEW_DATA_OR_CODE, "serving": ON_NEW_DATA_OR_CODE,
              "monitoring": ON_SCHEDULE_OR_UPDATE}


def build_definitions(lake: LakeResource | None = None, gates: GatesResource | None = None,
                      tracking: TrackingResource | None = None, training: TrainingResource | None = None,
                      monitors: MonitorsResource | None = None) -> dg.Definitions:
    """The whole graph; tests pass a lake and an MLflow store in a temp folder, the default is
    `Settings` (env / warehouse/)."""
    lake = lake or LakeResource()
    if training is None:
        settings = lake.settings()
        training = TrainingResource(families=settings.train_families, seed=settings.train_seed,
                                    workers=settings.train_workers)
    assets = [a.map_asset_specs(lambda s: s.replace_attributes(code_version=training.code_version(s.code_version)))
              if isinstance(a, dg.AssetsDefinition) and _is_candidates(a) else a
              for a in dg.load_assets_from_modules(ASSET_MODULES)]
    return dg.Definitions(
        assets=automated(assets, CONDITIONS),
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[sensors.ingest_job],
        # One process per run, steps in order: on two cores, a subprocess per step (the default)
        # spends more time importing than working.
        executor=dg.in_process_executor,
        sensors=[sensors.landing_sensor, sensors.drift_retrain_sensor, sensors.run_failure_alerts,
                 automation_sensor],
        resources={"lake": lake, "gates_config": gates or GatesResource(),
                   "tracking": tracking or TrackingResource(warehouse=lake.warehouse),
                   "training": training, "monitors": monitors or MonitorsResource()},
    )


def _is_candidates(a: dg.AssetsDefinition) -> bool:
    """The candidates asset: its code version also covers the model code and the training config
    (families, seed), so changing hyper-parameters retrains by itself."""
    return training.CANDIDATES in a.keys


defs = build_definitions()
