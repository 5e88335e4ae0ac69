"""An asset that does a bounded slice per run (`ml/batch_explanations`) also runs on the monitors' cron, so the
rest of a large batch is explained by the next ticks, not only when new data comes. Evaluated by Dagster's own
`evaluate_automation_conditions` (what the daemon and `hit-platform build` run) on the real definitions, with
the parents' materializations and blocking checks reported to a real instance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

from hit_platform.definitions import build_definitions
from hit_platform.defs import gate_policy
from hit_platform.defs.ml.explanations import BATCH_EXPLANATIONS
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.resources import LakeResource


def test_batch_explanations_asks_for_its_next_slice_on_each_cron_tick_and_nothing_else_does(tmp_path):
    defs = build_definitions(LakeResource(warehouse=str(tmp_path / "warehouse")))
    graph = defs.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    scope = {BATCH_EXPLANATIONS, BATCH_PREDICTIONS}
    checks = gate_policy.blocking_checks(defs.assets or [], defs.asset_checks or [])
    everything_upstream = dg.AssetSelection.assets(*scope).upstream().resolve(graph)
    for key in sorted(everything_upstream, key=lambda k: k.to_user_string()):  # all built, every gate passed
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
        for check in checks.get(key, []):
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name=check.name, passed=True))
    selection = dg.AssetSelection.assets(*scope)

    def requested(at: datetime, cursor):
        result = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=cursor,
                                                   evaluation_time=at)
        return {k for k in scope if result.get_num_requested(k)}, result.cursor

    start = datetime.now(timezone.utc).replace(minute=1, second=0, microsecond=0)
    _, cursor = requested(start, None)
    quiet, cursor = requested(start + timedelta(minutes=5), cursor)
    assert quiet == set(), quiet  # no tick passed, nothing new: nothing asked
    ticked, cursor = requested(start + timedelta(minutes=16), cursor)  # the :15 tick passed
    assert ticked == {BATCH_EXPLANATIONS}, ticked
    again, _ = requested(start + timedelta(minutes=20), cursor)
    assert again == set(), again  # handled: the next slice waits for the next tick
