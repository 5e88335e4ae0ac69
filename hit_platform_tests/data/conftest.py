"""One built data half (ingest -> gates -> songs, labels, features, splits) shared by this folder's tests."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from hit_platform.cli import build as builder
from hit_platform.defs.ml.features import SPLITS_KEY
from hit_platform.definitions import build_definitions
from hit_platform.defs.resources import LakeResource
from hit_platform.generator import GeneratorConfig, generate
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings

HISTORY_DAYS, INCREMENTS = 24, 2


def generate_full(settings: Settings, seed: int = 11, songs: int = 4000, increments: int = INCREMENTS,
                  faults: dict | None = None) -> dict:
    """All 72 countries, ending yesterday (so freshness passes)."""
    start = date.today() - timedelta(days=HISTORY_DAYS + increments)
    return generate(GeneratorConfig(out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=seed,
                                    songs=songs, history_days=HISTORY_DAYS, increments=increments,
                                    start_date=start, fmt="csv.gz", faults=faults or {}))


DATA_HALF = [SPLITS_KEY]


def build(defs, instance, **kw):
    """The data half only: ingest -> gates -> songs, labels, features, splits."""
    return builder.build(defs, instance, upto=DATA_HALF, **kw)


def stale_or_missing(defs, instance):
    return builder.stale_or_missing(defs, instance, upto=DATA_HALF)


class Built:
    def __init__(self, root: Path):
        self.settings = Settings(warehouse=root / "warehouse")
        self.lake = Lake(self.settings)
        self.resource = LakeResource(warehouse=str(self.settings.warehouse))
        self.defs = build_definitions(self.resource)
        self.instance = dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    b = Built(tmp_path_factory.mktemp("built"))
    b.manifest = generate_full(b.settings)
    b.first = build(b.defs, b.instance)
    assert b.first.success, b.first
    return b
