"""The persistent Dagster instance the CLI runs materializations in.

It is the same one `dagster dev` from the repository root shows: `$DAGSTER_HOME`
when set, else the repository's `dagster.yaml`, whose storage is under
`warehouse/dagster/` (its paths are relative to the repository root).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
# Private: the public DagsterInstance.get() needs DAGSTER_HOME; an instance in warehouse/dagster with
# dagster.yaml from the repository root has no public constructor.
from dagster._core.instance.ref import InstanceRef

from hit_platform.settings import REPO_ROOT


def persistent_instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    os.chdir(REPO_ROOT)  # dagster.yaml's storage paths are relative to the repository root
    base = Path("warehouse") / "dagster"
    base.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(base), config_dir=str(REPO_ROOT)))
