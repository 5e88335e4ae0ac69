"""`hit-platform rollback`: the champion alias back to the previous champion (or to a named version that
was champion before), recorded in `ops.model_events`, reported to Dagster, and swapped into the running
serving process in place.

A version that was never champion is refused: it goes through the gates instead. The version rolled
back from is not promoted again by `ml/champion_model` (see there); a later rollback `--to` it can.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg

from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker
from hit_platform.settings import Settings


class RollbackRefused(Exception):
    """Nothing moved (see the message)."""


@dataclass
class RollbackResult:
    from_version: str
    to_version: str
    event: model_events.ModelEvent | None  # None: the version was already the champion
    serving: str  # what happened to the serving process
    swap_seconds: float | None = None  # from the command to the target version answering /healthz


def previous_champion(tracker: Tracker, lake: Lake, current: str) -> str | None:
    """The champion `current` replaced when it was promoted; for a version promoted before the history was
    kept, the latest older version that was champion."""
    for e in model_events.history(lake, current):
        if e.kind == "promote" and e.to_version == current:
            return e.from_version
    older = [v for v in tracker.champion_versions() if int(v) < int(current)]
    return older[-1] if older else None


def rollback(settings: Settings, *, reason: str, to: str | None = None, who: str | None = None,
             instance: dg.DagsterInstance | None = None, update_timeout: float = 120.0) -> RollbackResult:
    from hit_platform.defs.ml.evaluation import CHAMPION
    from hit_platform.serving import process

    if not reason.strip():
        raise RollbackRefused("--reason is required: say why, it is kept with the rollback")
    tracker, lake = Tracker(settings), Lake(settings)
    model_events.reconcile(lake, tracker)  # a move no event recorded (a process killed mid-way) first
    current = tracker.champion_info()
    if current is None:
        raise RollbackRefused(f"no champion alias on {tracker.model_name!r} in {tracker.uri}: nothing to roll back")
    current_version = str(current.version)
    target = str(to) if to is not None else previous_champion(tracker, lake, current_version)
    if target is None:
        raise RollbackRefused(f"version {current_version} is the first champion: there is no earlier one to roll "
                              "back to")
    if target == current_version:
        return RollbackResult(current_version, target, None, f"version {target} is already the champion: "
                                                             "nothing moved")
    if not target.isdigit():
        raise RollbackRefused(f"--to {target!r}: a model version is a number")
    if not tracker.was_champion(target):
        raise RollbackRefused(
            f"version {target} of {tracker.model_name!r} was never champion, so it is not a rollback: a new "
            f"version goes through the gates (`hit-platform build` evaluates the latest candidate; "
            f"`hit-platform rebuild --snapshot N` trains one from a past snapshot). Versions that were champion: "
            f"{', '.join(tracker.champion_versions()) or 'none'}")
    tracker.load_version(target)  # it must load before the alias points at it
    t0 = time.monotonic()
    event = model_events.new_event("rollback", tracker.model_name, current_version, target,
                                   who or model_events.current_user(), reason.strip())
    tracker.promote(target)
    try:
        model_events.record(lake, event)
    except BaseException:
        tracker.promote(current_version)  # no move that is not in the history
        raise
    if instance is not None:
        # ml/champion_model's new value: what depends on it (batch predictions, the deployment) follows
        instance.report_runless_asset_event(dg.AssetMaterialization(CHAMPION, metadata={
            "model_uri": f"models:/{tracker.model_name}@champion", "model_version": target,
            "previous_version": current_version, "rolled_back_by": event.who, "reason": event.reason,
            "model_event_id": event.event_id}))
    st = process.status(settings)
    if not st.running:
        return RollbackResult(current_version, target, event,
                              f"no serving process runs; `hit-platform serve` will serve version {target}")
    process.update(settings, timeout=update_timeout)
    seconds = time.monotonic() - t0
    return RollbackResult(current_version, target, event,
                          f"version {target} answering after {seconds:.1f} s (swapped in place)", seconds)
