"""One built data half (ingest -> gates -> songs, labels, features, splits): the `built` fixture's lake."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from hit_platform.cli import build as builder
from hit_platform.defs.ml.features import SPLITS_KEY
from hit_platform.definitions import build_definitions
from hit_platform.defs.resources import LakeResource
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings

DATA_HALF = [SPLITS_KEY]


def build(defs, instance, **kw):
    """The data half only: ingest -> gates -> songs, labels, features, splits."""
    return builder.build(defs, instance, upto=DATA_HALF, **kw)


def pending(defs, instance):
    return builder.pending(defs, instance, upto=DATA_HALF)


class Built:
    def __init__(self, root: Path):
        self.settings = Settings(warehouse=root / "warehouse")
        self.lake = Lake(self.settings)
        self.resource = LakeResource(warehouse=str(self.settings.warehouse))
        self.defs = build_definitions(self.resource)
        self.instance = dg.DagsterInstance.ephemeral()
