"""One scheduler: `hit-platform build` and a real `dagster-daemon` choose the same assets.

Both evaluate the same rules (the landing sensor, each asset's automation condition). Here they take
turns on one instance and one lake: with the daemon stopped, a situation is staged and build says what it
would run (without running it); then the daemon runs and what it launches is compared; then build runs
and must find nothing left to build (no work done twice). The code location is the platform's data half
(hit_platform_tests/support/data_half_location.py), so each turn takes seconds, not a retrain.
"""

from __future__ import annotations

import time

import dagster as dg
import pytest

from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.core import CHART_ENTRIES, SONG_LABELS, SONGS
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform_tests.support.data_half_location import data_half
from hit_platform_tests.support.drill import Drill

pytestmark = pytest.mark.slow
LOCATION = "hit_platform_tests.support.data_half_location"
FAST = {"HIT_LANDING_SENSOR_INTERVAL_S": "2", "HIT_AUTOMATION_INTERVAL_S": "2"}
BELOW_RAW = {CHART_ENTRIES, SONGS, SONG_LABELS, FEATURES, SPLITS_KEY}
TICK_DONE = "Finished auto-materialization tick"


def names(keys) -> set[str]:
    return {k.to_user_string() for k in keys}


class Turns:
    """The daemon and build taking turns on one drill."""

    def __init__(self, drill: Drill):
        self.drill = drill

    def defs(self, songs_code_version: str | None = None) -> dg.Definitions:
        return data_half(build_definitions(settings=self.drill.settings), songs_code_version)

    def ingest(self, path, defs: dg.Definitions) -> bool:
        """A file lands and is ingested by hand (neither scheduler), with its gates."""
        self.drill.land(path)
        job = defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=self.drill.instance, asset_selection=builder.INGEST,
                                      raise_on_error=False,
                                      run_config={"ops": {"ingest_chart_files": {"config": {"files": [path.name]}}}}
                                      ).success

    def daemon_turn(self, env: dict | None = None, ticks: int = 2) -> set[str]:
        """Start the daemon; once no run is active, let its automation tick `ticks` more times (so its cursor
        has seen what its runs did, as build's has), then stop it: the assets of the runs its automation
        launched."""
        d, log = self.drill, self.drill.root / "daemon.log"
        before = {r.run_id for r in self.drill.runs()}
        size = lambda: log.stat().st_size if log.exists() else 0  # noqa: E731
        d.start_daemon(LOCATION, env)
        quiet = {"since": None, "runs": len(before)}

        def settled() -> bool:
            runs = len(d.runs())
            if not d.idle() or runs != quiet["runs"]:
                quiet.update(since=None, runs=runs)
                return False
            if quiet["since"] is None:
                quiet["since"] = size()
                return False
            return log.read_text(errors="replace")[quiet["since"]:].count(TICK_DONE) >= ticks

        try:
            d.wait(settled, 240, f"the daemon's runs to finish and {ticks} automation ticks after them", poll=1)
        finally:
            d.stop_daemon()
        new = [r for r in d.runs() if r.run_id not in before and r.job_name != "ingest_job"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in new), d.diagnosis()
        return names(k for r in new for k in (r.asset_selection or []))


@pytest.fixture(scope="module")
def turns(tmp_path_factory):
    drill = Drill(tmp_path_factory.mktemp("one_scheduler"), songs=1200, history_days=12, increments=2, env=FAST)
    t = Turns(drill)
    drill.land(drill.staging / "charts_history.csv.gz")
    first = builder.build(t.defs(), drill.instance)
    assert first.success and BELOW_RAW <= set(first.materialized), builder.report(first)
    assert t.daemon_turn() == set()  # the daemon's first look: everything is there, nothing to do
    yield t
    drill.stop()


def test_a_new_file_build_and_the_daemon_choose_the_same_assets(turns):
    defs, new = turns.defs(), turns.drill.increments[0]
    turns.drill.land(new)
    assert builder.plan(defs, turns.drill.instance).files == [new.name]  # the landing sensor's rule: unseen content
    assert turns.ingest(new, defs)
    plan = builder.plan(defs, turns.drill.instance)
    assert plan.files == []  # the landing sensor's rule: new content, but the lake holds it already
    assert names(plan.assets) == names(BELOW_RAW)
    assert turns.daemon_turn() == names(BELOW_RAW)
    after = builder.build(defs, turns.drill.instance)
    assert after.success and after.materialized == [], builder.report(after)


def test_a_code_version_bump_build_and_the_daemon_choose_the_same_assets(turns):
    bumped = turns.defs(songs_code_version="2")
    plan = builder.plan(bumped, turns.drill.instance)
    assert plan.files == [] and names(plan.assets) == names({SONGS, SONG_LABELS, FEATURES, SPLITS_KEY})
    assert turns.daemon_turn({"HIT_TEST_SONGS_CODE_VERSION": "2"}) == names(plan.assets)
    after = builder.build(bumped, turns.drill.instance)
    assert after.success and after.materialized == [], builder.report(after)


def test_a_failed_gate_build_and_the_daemon_both_hold_what_is_below_it(turns):
    defs = turns.defs(songs_code_version="2")
    short = turns.drill.rewritten(turns.drill.increments[1], turns.drill.increments[1].name, "*",
                                  "daily_rank::INT <= 40")  # rows valid, every chart day incomplete
    assert not turns.ingest(short, defs)  # raw_chart_days fails in the ingest run
    plan = builder.plan(defs, turns.drill.instance)
    assert plan.files == [] and plan.assets == []
    assert turns.daemon_turn({"HIT_TEST_SONGS_CODE_VERSION": "2"}) == set()
    after = builder.build(defs, turns.drill.instance)
    assert after.materialized == [] and {h.asset for h in after.held} == {CHART_ENTRIES, SONGS}
    assert {h.check.name for h in after.held} == {"raw_chart_days"}, builder.report(after)
