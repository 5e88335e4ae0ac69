"""The persistent Dagster instance the CLI runs materializations in.

It is the same one `dagster dev` from the repository root shows: `$DAGSTER_HOME` when set, else the
repository's `dagster.yaml`, whose storage is under `warehouse/dagster/` (its paths are relative to the
repository root). A warehouse elsewhere (`HIT_WAREHOUSE`) keeps its Dagster instance inside it too,
under `<warehouse>/dagster/`: the repository's `dagster.yaml` is copied there with its paths made
absolute, so that directory is a `DAGSTER_HOME` that `dagster dev` can be pointed at.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from hit_platform.private_apis import instance_from_dir
from hit_platform.settings import REPO_ROOT, get_settings

DEFAULT_BASE = "warehouse/dagster"  # the repository dagster.yaml's storage, relative to the repository root


def persistent_instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    warehouse = get_settings().warehouse.resolve()
    if warehouse != (REPO_ROOT / "warehouse").resolve():
        return dg.DagsterInstance.from_config(str(_home_in(warehouse)))
    os.chdir(REPO_ROOT)  # dagster.yaml's storage paths are relative to the repository root
    base = Path(DEFAULT_BASE)
    base.mkdir(parents=True, exist_ok=True)
    return instance_from_dir(base, REPO_ROOT)


def _home_in(warehouse: Path) -> Path:
    """`<warehouse>/dagster` with the repository's dagster.yaml, its storage paths under it."""
    home = warehouse / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    text = (REPO_ROOT / "dagster.yaml").read_text().replace(DEFAULT_BASE, str(home))
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() != text:
        tmp = config.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        tmp.replace(config)
    return home
