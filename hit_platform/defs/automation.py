"""Declarative automation: when each asset re-materializes by itself.

- Everything downstream of ingest (songs -> features -> splits -> candidates ->
  evaluation -> champion -> batch predictions and the serving deployment)
  follows `ON_NEW_DATA_OR_CODE`: a parent updated (or will be in the same tick,
  so the whole chain goes in one run), or its own code version changed, and
  only when every blocking check of its parents passed. A failing gate stops
  the chain there and the champion keeps serving.
- Monitors run on `MONITOR_CRON` and whenever what they watch changes.
- Ingest itself is started by the landing sensor (`defs/sensors.py`), and a
  drift alert starts a retrain (`drift_retrain_sensor`).

The daemon (`dagster dev` runs one) evaluates these every `HIT_AUTOMATION_INTERVAL_S`
seconds (30 by default); `hit-platform build` evaluates the same ones (`cli/build.py`).
"""

from __future__ import annotations

import dagster as dg


AC = dg.AutomationCondition
MONITOR_CRON = "*/15 * * * *"

# Missing when its condition is first evaluated (a new asset, a new daemon, the first `hit-platform build`):
# "since the last evaluation" has no last one to compare with, so whatever is missing then is asked for.
MISSING_AT_FIRST_LOOK = (AC.initial_evaluation() & AC.missing()).with_label("missing when first evaluated")

# A gate that held this asset passes now (its data was fixed, or its thresholds changed and it was
# evaluated again): what the hold kept back is asked for, though nothing new arrived.
GATES_RELEASED = AC.all_deps_blocking_checks_passed().newly_true().with_label("parents' gates released")

ON_NEW_DATA_OR_CODE = (
    AC.in_latest_time_window()
    & ((AC.newly_missing() | AC.any_deps_updated() | AC.code_version_changed() | GATES_RELEASED)
       .since_last_handled()
       | MISSING_AT_FIRST_LOOK)
    & ~AC.any_deps_missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
    & AC.all_deps_blocking_checks_passed()
).with_label("new data or code, blocking checks passed")

ON_SCHEDULE_OR_UPDATE = (
    (AC.cron_tick_passed(MONITOR_CRON) | AC.any_deps_updated()).since_last_handled()
    & ~AC.any_deps_missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label(f"every {MONITOR_CRON} or when what it watches updates")

# An asset that does a bounded slice of its work per run (ml/batch_explanations: HIT_BATCH_EXPLAIN_SONGS songs)
# also runs on the monitors' cron, so the rest is done by the next ticks, not left until new data comes.
ON_NEW_DATA_CODE_OR_CRON = (
    ON_NEW_DATA_OR_CODE
    | (AC.cron_tick_passed(MONITOR_CRON).since_last_handled()
       & ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
       & AC.all_deps_blocking_checks_passed())
).with_label(f"new data or code, or every {MONITOR_CRON} for the next slice; blocking checks passed")


def automated(assets: list, condition_by_group: dict[str, dg.AutomationCondition],
              exempt: frozenset = frozenset(), by_key: dict | None = None) -> list:
    """The same assets, each with the condition of its group, or its own in `by_key` (raw and quarantine keep
    none: the landing sensor starts ingest; nor do the `exempt` ones, which a sensor runs)."""
    by_key = by_key or {}
    out = []
    for a in assets:
        if isinstance(a, dg.AssetsDefinition) and a.is_executable and not set(a.keys) & exempt:
            a = a.map_asset_specs(lambda s: s.replace_attributes(automation_condition=by_key.get(
                s.key, condition_by_group.get(s.group_name, s.automation_condition))))
        out.append(a)
    return out

# A check is requested with its asset, so a child can join the same run: if the check fails
# there, the run stops the child (blocking checks), else the whole chain goes in one run.
WITH_ITS_ASSET = AC.any_deps_match(AC.will_be_requested()).with_label("with its asset")
