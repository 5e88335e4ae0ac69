"""The platform's data half (landing -> ingest -> core -> features, splits) as a code location of its own.

The same assets, checks, automation conditions, landing sensor and automation sensor as
`hit_platform.definitions`, without training and serving, so a drill with a real daemon can stage a
situation and see what the daemon chooses in seconds. `HIT_TEST_SONGS_CODE_VERSION` deploys a new code
version of `core/songs` (what a code change does).
"""

from __future__ import annotations

import os

import dagster as dg

from hit_platform.definitions import build_definitions
from hit_platform.defs.core import SONGS
from hit_platform.defs.landing import LANDING
from hit_platform.defs.raw import QUARANTINED_CHART_ROWS
from hit_platform.defs.ml.features import SPLITS_KEY

DAEMON_SENSORS = ("landing_sensor", "automation")


def data_half(full: dg.Definitions, songs_code_version: str | None = None) -> dg.Definitions:
    graph = full.resolve_asset_graph()
    keep = set(dg.AssetSelection.assets(SPLITS_KEY).upstream(include_self=True).resolve(graph)) | {LANDING, QUARANTINED_CHART_ROWS}
    assets = [a for a in full.assets if (set(a.keys) if isinstance(a, dg.AssetsDefinition) else {a.key}) <= keep]
    if songs_code_version:
        assets = [a.map_asset_specs(lambda s: s.replace_attributes(code_version=songs_code_version))
                  if isinstance(a, dg.AssetsDefinition) and SONGS in a.keys else a for a in assets]
    checks = [c for c in full.asset_checks if {k.asset_key for k in c.check_keys} <= keep]
    sensors = [s for s in full.sensors if s.name in DAEMON_SENSORS]
    return dg.Definitions(assets=assets, asset_checks=checks, sensors=sensors, jobs=full.jobs,
                          executor=full.executor, resources=full.resources)


defs = data_half(build_definitions(), os.environ.get("HIT_TEST_SONGS_CODE_VERSION"))
