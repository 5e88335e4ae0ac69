"""Assembles the Definitions: every asset, check, sensor and resource of the platform."""

import dagster as dg

from hit_platform.defs.automation import (ON_NEW_DATA_CODE_OR_CRON, ON_NEW_DATA_OR_CODE, ON_SCHEDULE_OR_UPDATE,
                                         automated)
from hit_platform.defs import asset_modules, sensors
from hit_platform.defs.maintenance import maintenance_job, maintenance_schedule
from hit_platform.defs.ml import evaluation, explanations, shadow
from hit_platform.defs.ml import training as training_defs
from hit_platform.defs.resources import (GatesResource, LakeResource, MonitorsResource, PromotionResource,
                                         ServingResource, TrackingResource, TrainingResource, resources_for)
from hit_platform.settings import Settings, get_settings

ASSET_MODULES = asset_modules()
# Ingest is started by the landing sensor; everything else follows its group's condition.
CONDITIONS = {"core": ON_NEW_DATA_OR_CODE, "ml": ON_NEW_DATA_OR_CODE, "serving": ON_NEW_DATA_OR_CODE,
              "ops": ON_SCHEDULE_OR_UPDATE}
BY_KEY = {explanations.BATCH_EXPLANATIONS: ON_NEW_DATA_CODE_OR_CRON}


def build_definitions(lake: LakeResource | None = None, gates: GatesResource | None = None, *,
                      settings: Settings | None = None, tracking: TrackingResource | None = None,
                      training: TrainingResource | None = None, monitors: MonitorsResource | None = None,
                      serving_config: ServingResource | None = None,
                      promotion: PromotionResource | None = None) -> dg.Definitions:
    """The whole graph, its resources and sensors built from `settings` (default: the environment,
    read once). Tests pass their own resources (a lake and an MLflow store in a temp folder)."""
    settings = settings or get_settings()
    resources = resources_for(settings)
    given = {"lake": lake, "gates_config": gates, "training": training, "monitors": monitors,
             "serving": serving_config, "promotion": promotion,
             "tracking": tracking or (TrackingResource(warehouse=lake.warehouse) if lake is not None else None)}
    resources.update({k: v for k, v in given.items() if v is not None})
    training, gates = resources["training"], resources["gates_config"]
    # Code versions that also cover configuration: the training settings retrain the candidates, the
    # promotion thresholds re-decide the evaluation.
    versioned = {training_defs.CANDIDATES: training.code_version, evaluation.EVALUATION: gates.promotion_code_version}
    assets = [a.map_asset_specs(lambda s: s.replace_attributes(code_version=versioned[s.key](s.code_version)))
              if isinstance(a, dg.AssetsDefinition) and set(a.keys) & set(versioned) else a
              for a in dg.load_assets_from_modules(ASSET_MODULES)]
    asset_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)
    # When each asset re-materializes by itself, applied to every asset once. That none builds on a parent
    # its blocking checks did not pass is each asset's own `@gated` (defs/gate_policy.py).
    assets = automated(assets, CONDITIONS, exempt=shadow.BY_SENSOR, by_key=BY_KEY)
    return dg.Definitions(
        assets=assets,
        asset_checks=asset_checks,
        jobs=[sensors.ingest_job, maintenance_job],
        schedules=[maintenance_schedule(settings.maintenance)],
        # One process per run, steps in order: on two cores, a subprocess per step (the default)
        # spends more time importing than working.
        executor=dg.in_process_executor,
        sensors=sensors.build_sensors(settings.sensors),
        resources=resources,
    )


defs = build_definitions()
