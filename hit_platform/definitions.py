"""Assembles the Definitions: every asset, check, sensor and resource of the platform."""

import dagster as dg

from hit_platform.defs import checks, features, ingest, songs  # noqa: F401 (modules of assets)
from hit_platform.defs.resources import GatesResource, LakeResource

ASSET_MODULES = [ingest, songs, features]


def build_definitions(lake: LakeResource | None = None, gates: GatesResource | None = None) -> dg.Definitions:
    """The whole graph; tests pass a lake in a temp folder, the default is `Settings` (env / warehouse/)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        resources={"lake": lake or LakeResource(), "gates_config": gates or GatesResource()},
    )


defs = build_definitions()
