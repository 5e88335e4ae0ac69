"""Assembles the Definitions: every asset, check, sensor and resource of the platform."""

import dagster as dg

from hit_platform.defs import ingest
from hit_platform.defs.resources import LakeResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest]),
    asset_checks=dg.load_asset_checks_from_modules([ingest]),
    resources={"lake": LakeResource()},
)
