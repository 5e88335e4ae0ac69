"""The drift-retrain sensor on a real Dagster instance and lake: a drift alert or a performance
estimate alert retrains once per data version; other alerts, or alerts older than the last
training, do not."""

from __future__ import annotations

import dagster as dg
import pytest

from hit_platform.adapters.alerts import raise_alert
from hit_platform.adapters.lake.connection import Lake
from hit_platform.defs.ml.features import FEATURES
from hit_platform.defs.resources import LakeResource
from hit_platform.defs.sensors import drift_retrain_sensor
from hit_platform.settings import Settings


@pytest.fixture
def env(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, metadata={"lake_snapshot_id": 7}))
    Lake(settings).connect().close()
    return settings, instance, {"lake": LakeResource(warehouse=str(settings.warehouse))}


def tick(instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        return drift_retrain_sensor(context, **resources), context.cursor


def test_a_performance_estimate_alert_retrains_once_per_data_version(env):
    settings, instance, resources = env
    result, cursor = tick(instance, resources)
    assert isinstance(result, dg.SkipReason) and "no new drift or performance_estimate alerts" in str(result)
    raise_alert(Lake(settings), kind="monitor_breach", severity="warning", what="p99 too high",
                where="ops/serving_health", alert_id="serving_health:r0")
    result, cursor = tick(instance, resources, cursor)
    assert isinstance(result, dg.SkipReason)  # a breach of serving health is not a reason to retrain
    raise_alert(Lake(settings), kind="performance_estimate", severity="warning",
                what="estimated ROC AUC more than 0.05 below test in 9 countries", where="ops/performance_estimate",
                alert_id="performance_estimate_served:r1")
    request, cursor = tick(instance, resources, cursor)
    assert isinstance(request, dg.RunRequest), request
    assert request.run_key == "drift:7"
    assert request.tags["trigger"] == "performance_estimate_alert"
    assert request.tags["alert_id"] == "performance_estimate_served:r1"
    again, _ = tick(instance, resources, cursor)  # the same alert is not read twice
    assert isinstance(again, dg.SkipReason)


def test_before_anything_landed_the_sensor_skips_instead_of_erring(tmp_path):
    """A fresh deployment's daemon ticks before the first file lands: no lake, so no alert, so a skip."""
    resources = {"lake": LakeResource(warehouse=str(tmp_path / "warehouse"))}
    result, cursor = tick(dg.DagsterInstance.ephemeral(), resources)
    assert isinstance(result, dg.SkipReason) and "no lake yet" in str(result) and cursor is None
    assert not (tmp_path / "warehouse" / "lake").exists()  # a sensor looking does not create the lake
