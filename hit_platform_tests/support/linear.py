"""A trained graph with the cheapest model family, shared by the promotion and reproducibility tests."""

from __future__ import annotations

import dagster as dg

from hit_platform.definitions import build_definitions
from hit_platform.defs.resources import TrackingResource, TrainingResource
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.built import Built


class TrainedLinear(Built):
    def __init__(self, root):
        super().__init__(root)
        self.tracking = TrackingResource(warehouse=str(self.settings.warehouse))
        # linear only (with the prior baseline) and no worker processes: the cheapest graph with a model
        self.training = TrainingResource(families=["linear"], workers=1)
        self.defs = build_definitions(self.resource, tracking=self.tracking, training=self.training)
        self.tracker = Tracker(self.settings)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The plain values of the latest materialization of `key`, as the checks read them."""
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
