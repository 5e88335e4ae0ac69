"""The landing folder (`landing/files`): chart dump files waiting to be ingested."""

import hashlib
import warnings

import dagster as dg

from hit_platform.defs.resources import LakeResource
from hit_platform.steps.ingest import file_sha256, landing_files

LANDING = dg.AssetKey(["landing", "files"])


def _observe_landing(lake: LakeResource) -> dg.DataVersion:
    # Content, not mtimes: a file rewritten with the same bytes is not new data.
    listing = "\n".join(f"{p.name}:{file_sha256(p)}" for p in landing_files(lake.landing_dir))
    return dg.DataVersion(hashlib.sha256(listing.encode()).hexdigest()[:16])


with warnings.catch_warnings():  # observable_source_asset is beta; it is what models a landing folder
    warnings.simplefilter("ignore", dg.BetaWarning)
    landing_files_observation = dg.observable_source_asset(
        key=LANDING, group_name="landing",
        description="Chart dump files waiting in warehouse/landing/ (CSV, CSV.gz, Parquet). Its data version "
                    "is a hash of their contents: it changes when a file arrives, which makes ingest stale.",
    )(_observe_landing)
