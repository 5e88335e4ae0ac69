"""`hit-platform rollback`: the champion alias back to the previous champion (or to a named version that
was champion before), recorded in `ops.model_events`, reported to Dagster, and swapped into the running
serving process in place.

A version that was never champion is refused: it goes through the gates instead. The version rolled
back from is not promoted again by `ml/champion_model` (see there); a later rollback `--to` it can.

A rollback is an alias move like a promotion (`model_events.move`: one lock, compare-and-set, intent first).
Killed after moving the alias, it is finished by the next `rollback` (or promotion run) as a rollback, and
the next `rollback` brings serving to the champion even when it has nothing to move.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
    finished: list[model_events.ModelEvent] = field(default_factory=list)  # moves cut short, finished first


def previous_champion(tracker: Tracker, lake: Lake, current: str) -> str | None:
    """The champion `current` replaced when it was promoted; for a version promoted before the history was
    kept, the latest older version that was champion."""
    for e in model_events.history(lake, current):
        if e.kind == "promote" and e.to_version == current:
            return e.from_version
    older = [v for v in tracker.champion_versions() if int(v) < int(current)]
    return older[-1] if older else None


def rollback(settings: Settings, *, reason: str, to: str | None = None, who: str | None = None,
             instance: dg.DagsterInstance | None = None, update_timeout: float = 120.0,
             on_wait: Callable[[str], None] | None = None) -> RollbackResult:
    """Move the champion alias back (see the module docstring), under the alias lock and only from the champion
    it read there (`model_events.move`); then bring a running serving process to the champion, also when nothing
    moved (a rollback killed before its swap left serving on the version rolled back from). `on_wait(holder)`:
    told when another alias move holds the lock."""
    from hit_platform.defs.ml.evaluation import CHAMPION
    from hit_platform.serving import process

    if not reason.strip():
        raise RollbackRefused("--reason is required: say why, it is kept with the rollback")
    tracker, lake = Tracker(settings), Lake(settings)
    report = None if instance is None else (lambda e: instance.report_runless_asset_event(
        dg.AssetMaterialization(CHAMPION, metadata=model_events.champion_metadata(e))))
    t0 = time.monotonic()
    try:
        finished, current_version, target, event = _move(tracker, lake, to, who, reason, report, on_wait)
    except (model_events.AliasMoved, model_events.AliasLockTimeout) as exc:
        raise RollbackRefused(str(exc)) from exc
    result = RollbackResult(current_version, target, event, "", finished=finished)
    if event is None:
        result.serving = f"version {target} is already the champion: nothing moved; "
    st = process.status(settings)
    if not st.running:
        result.serving += f"no serving process runs; `hit-platform serve` will serve version {target}"
        return result
    process.update(settings, timeout=update_timeout)  # a no-op when it answers with the champion already
    result.swap_seconds = time.monotonic() - t0
    result.serving += (f"serving answers with version {target}" if st.model_version == target else
                       f"version {target} answering after {result.swap_seconds:.1f} s (swapped in place)")
    return result


def _move(tracker: Tracker, lake: Lake, to: str | None, who: str | None, reason: str, report, on_wait):
    """(moves finished first, the champion before, the target, the rollback event or None), under the alias lock."""
    with model_events.alias_lock(tracker, on_wait=on_wait):
        # a move a killed process left half done first, with its real kind (a rollback stays a rollback)
        finished = model_events.reconcile(lake, tracker, report)
        current = tracker.champion_info()
        if current is None:
            raise RollbackRefused(f"no champion alias on {tracker.model_name!r} in {tracker.uri}: nothing to roll back")
        current_version = str(current.version)
        target = str(to) if to is not None else previous_champion(tracker, lake, current_version)
        if target is None:
            raise RollbackRefused(f"version {current_version} is the first champion: there is no earlier one to roll "
                                  "back to")
        event = None
        if target != current_version:
            _refuse_unless_was_champion(tracker, target)
            tracker.load_version(target)  # it must load before the alias points at it
            event = model_events.move(lake, tracker, "rollback", target, champion=current_version,
                                      who=who or model_events.current_user(), reason=reason.strip(), report=report)
    return finished, current_version, target, event


def _refuse_unless_was_champion(tracker: Tracker, target: str) -> None:
    if not target.isdigit():
        raise RollbackRefused(f"--to {target!r}: a model version is a number")
    if not tracker.was_champion(target):
        raise RollbackRefused(
            f"version {target} of {tracker.model_name!r} was never champion, so it is not a rollback: a new "
            f"version goes through the gates (`hit-platform build` evaluates the latest candidate; "
            f"`hit-platform rebuild --snapshot N` trains one from a past snapshot). Versions that were champion: "
            f"{', '.join(tracker.champion_versions()) or 'none'}")
