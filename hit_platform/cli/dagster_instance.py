"""The persistent Dagster instance the CLI runs materializations in.

It is the same one `dagster dev` from the repository root shows: `$DAGSTER_HOME`
when set, else the repository's `dagster.yaml`, whose storage is under
`warehouse/dagster/` (its paths are relative to the repository root).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from hit_platform.private_apis import instance_from_dir
from hit_platform.settings import REPO_ROOT


def persistent_instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    os.chdir(REPO_ROOT)  # dagster.yaml's storage paths are relative to the repository root
    base = Path("warehouse") / "dagster"
    base.mkdir(parents=True, exist_ok=True)
    return instance_from_dir(base, REPO_ROOT)
