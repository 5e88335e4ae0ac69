"""The maintenance job with every snapshot past the retention (HIT_LAKE_KEEP_SNAPSHOTS_DAYS of a nanosecond)
and two registered versions: the snapshots they were trained on are kept, everything else that may go goes,
and `hit-platform rebuild --model-version V` still prints `identical` for both."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hit_platform.adapters.lake import maintenance as upkeep
from hit_platform.adapters.tracking import code_version
from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.settings import REPO_ROOT
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.linear import CommandLineWorld, latest_metadata, without_log_line

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> CommandLineWorld:
    """Champion v1 from the history; two more days land; champion v2 from all of it."""
    t = CommandLineWorld(tmp_path_factory.mktemp("maintained"))
    generate_full(t.settings, songs=2000, increments=0)
    assert builder.build(t.defs, t.instance, upto=[CHAMPION]).success
    t.v1, t.v1_snapshot = t.tracker.champion_info().version, latest_metadata(t.instance, CANDIDATES)["lake_snapshot_id"]
    generate_full(t.settings, songs=2000, increments=2)
    assert builder.build(t.defs, t.instance, upto=[CHAMPION]).success
    t.v2, t.v2_snapshot = t.tracker.champion_info().version, latest_metadata(t.instance, CANDIDATES)["lake_snapshot_id"]
    assert t.v2 != t.v1 and t.v2_snapshot > t.v1_snapshot
    return t


def _rebuild(world, version: str) -> list[str]:
    # the claim here is about the lake, not the code: in a checkout that moved on since training, rebuild with it
    built_from = world.tracker.client.get_model_version("hit_model", version).tags.get("git_commit")
    moved = ["--allow-code-change"] if built_from != code_version()["git_commit"] else []
    done = subprocess.run([sys.executable, "-m", "hit_platform.cli", "rebuild", "--model-version", version, *moved],
                          env={**os.environ, **world.env}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return without_log_line(done.stdout).splitlines()


def test_a_registered_versions_snapshot_past_the_retention_is_kept_and_rebuilds_identical(world):
    settings = world.settings.override(maintenance={"keep_snapshots_days": 1e-9, "cleanup_grace_s": 0})
    defs = build_definitions(world.resource, tracking=world.tracking, training=world.training, settings=settings)
    with world.lake.connection(read_only=True) as con:
        before = upkeep.footprint(world.lake, con)
    run = defs.resolve_job_def("maintenance_job").execute_in_process(instance=world.instance)
    assert run.success
    checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert all(checks.values()), checks
    with world.lake.connection(read_only=True) as con:
        after = upkeep.footprint(world.lake, con)
        kept = {r[0] for r in con.execute("SELECT snapshot_id FROM lake.snapshots()").fetchall()}
    assert {world.v1_snapshot, world.v2_snapshot} <= kept
    # rows inlined in the catalog are flushed to files: no table ends with more files than it had
    assert after.snapshots < before.snapshots and after.inlined_rows == 0 and after.most_files <= before.most_files
    print(f"maintenance: snapshots {before.snapshots} -> {after.snapshots} (kept {sorted(kept)}), data files "
          f"{before.data_files} -> {after.data_files}, catalog {before.catalog_bytes} -> {after.catalog_bytes} B")
    for version, snapshot in ((world.v1, world.v1_snapshot), (world.v2, world.v2_snapshot)):
        lines = _rebuild(world, version)
        assert lines[0].startswith(f"rebuilding model version {version} of hit_model from lake snapshot {snapshot} ")
        assert lines[1] == "identical", lines
