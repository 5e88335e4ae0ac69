"""The champion's history in `ops.model_events`: every move of the registry's `champion` alias, a
promotion by the gates (`ml/champion_model`, `ml/shadow_promotion`) or a rollback by a person
(`hit-platform rollback`), and every candidate set to shadow it (`challenger`),
with who, when, from, to and why. `audit` and the dashboard read it.

Every alias move goes through `move`: one at a time (a file lock per model), only if the aliases are still
where the decision saw them (compare-and-set), its intent recorded before the registry changes, so a move
cut short by a kill is finished by the next mover (`reconcile`) as what it was."""

from __future__ import annotations

import fcntl
import getpass
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import ALIAS_MOVES_DDL, MODEL_EVENTS_DDL
from hit_platform.adapters.processes import this_process

# challenger: a candidate set to shadow the champion; found: the champion alias found where no recorded
# event put it (a process killed between moving it and recording the move, or a hand in the registry)
KINDS = ("promote", "rollback", "challenger", "found")
MOVES = ("promote", "rollback", "found")  # the kinds that move the champion alias
TABLE = "ops.model_events"
MOVES_TABLE = "ops.alias_moves"  # each move's intent and its end (see `move`)


@dataclass(frozen=True)
class ModelEvent:
    event_id: str
    event_at: datetime
    kind: str
    model_name: str
    from_version: str | None
    to_version: str
    who: str
    reason: str
    dagster_run_id: str | None

    def line(self) -> str:
        moved = f"{self.from_version or 'none'} -> {self.to_version}"
        run = f" (Dagster run {self.dagster_run_id})" if self.dagster_run_id else ""
        return f"{self.event_at:%Y-%m-%d %H:%M:%S} UTC  {self.kind:<8} {moved:<10} by {self.who}{run}: {self.reason}"


def current_user() -> str:
    """Who is acting: the OS user and the host, as a person at a terminal would be named."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without passwd entry)
        user = "unknown user"
    return f"{user}@{socket.gethostname()}"


def new_event(kind: str, model_name: str, from_version: str | None, to_version: str, who: str, reason: str,
              dagster_run_id: str | None = None) -> ModelEvent:
    if kind not in KINDS:
        raise ValueError(f"model event kind {kind!r} is not one of {KINDS}")
    return ModelEvent(str(uuid.uuid4()), datetime.now(timezone.utc), kind, model_name,
                      None if from_version is None else str(from_version), str(to_version), who, reason,
                      dagster_run_id)


def insert(con: duckdb.DuckDBPyConnection, event: ModelEvent) -> None:
    """Record the event inside a transaction the caller holds."""
    con.execute(MODEL_EVENTS_DDL)
    con.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [getattr(event, f.name) for f in fields(ModelEvent)])


def record(lake: Lake, event: ModelEvent) -> ModelEvent:
    lake.write(lambda con: insert(con, event), what=TABLE)
    return event


# -- moving an alias: one at a time, compare-and-set, intent first ---------------------------------------

class AliasMoved(RuntimeError):
    """The alias is no longer where the decision to move it saw it: nothing moved (decide again)."""


class AliasLockTimeout(RuntimeError):
    """Another process kept the alias lock too long: nothing moved."""


LOCK_TIMEOUT_S = 600.0  # a rollback swaps serving outside the lock; a move itself takes seconds
_held = threading.local()  # the lock files this thread holds: a mover may call another (reconcile) inside


def lock_path(tracker) -> Path:
    return tracker.settings.warehouse / "locks" / f"aliases-{tracker.model_name}.lock"


@contextmanager
def alias_lock(tracker, *, timeout: float = LOCK_TIMEOUT_S,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Every move of the model's aliases (champion, challenger) holds this lock, from reading where they are
    to recording the move: a file lock under the warehouse, released by the kernel when its process dies.
    `on_wait(holder)` is told once when another process holds it (holder: its `host/pid/start`)."""
    path = lock_path(tracker)
    held = _held.__dict__.setdefault("paths", set())
    if path in held:  # this thread holds it already
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text().strip() or "unknown"
                if time.monotonic() > deadline:
                    raise AliasLockTimeout(f"the aliases of {tracker.model_name!r} stayed locked by process {holder} "
                                           f"for {timeout:.0f} s ({path}): nothing moved") from None
                if not told and on_wait is not None:
                    on_wait(holder)
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{this_process()}\n".encode(), 0)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _alias_of(kind: str) -> str:
    return "challenger" if kind == "challenger" else "champion"


def _mark(lake: Lake, event: ModelEvent, state: str, clears_challenger: bool = False) -> None:
    def write(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(ALIAS_MOVES_DDL)
        con.execute(f"INSERT INTO {MOVES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [event.event_id, event.event_at if state == "intent" else datetime.now(timezone.utc), state,
                     event.kind, event.model_name, event.from_version, event.to_version, clears_challenger,
                     event.who, event.reason, event.dagster_run_id, this_process()])
    lake.write(write, what=MOVES_TABLE)


def _apply(tracker, event: ModelEvent, clears_challenger: bool) -> None:
    if event.kind == "challenger":
        tracker.set_challenger(event.to_version)
        return
    tracker.promote(event.to_version)
    if clears_challenger:
        tracker.clear_challenger()


def move(lake: Lake, tracker, kind: str, to_version: str, *, champion: str | None, who: str, reason: str,
         run_id: str | None = None, challenger: object = ..., clears_challenger: bool = False,
         report: Callable[[ModelEvent], None] | None = None) -> ModelEvent:
    """Move an alias (`kind` promote or rollback: the champion; challenger: the challenger) to `to_version`, if it
    is still where the decision saw it: `champion` (and `challenger`, unless left out) must be where the aliases
    point now, or AliasMoved. Under the alias lock: the intent recorded first (kind, from, to, who, why), then
    the registry moved, then the event recorded, `report`ed (Dagster), and the intent marked done. A process
    killed midway leaves an intent that `reconcile` finishes with its real kind, or cancels if nothing moved."""
    event = new_event(kind, tracker.model_name, champion, to_version, who, reason[:500], run_id)
    with alias_lock(tracker):
        now = tracker.champion_info(), tracker.challenger_info()
        now = tuple(str(i.version) if i else None for i in now)
        saw = (None if champion is None else str(champion),
               now[1] if challenger is ... else None if challenger is None else str(challenger))
        if now != saw:
            raise AliasMoved(f"the aliases of {tracker.model_name!r} moved since the decision to {kind} version "
                             f"{to_version}: it saw champion {saw[0]}, challenger {saw[1]}; they are now champion "
                             f"{now[0]}, challenger {now[1]}. Nothing moved: decide again")
        _mark(lake, event, "intent", clears_challenger)
        try:
            _apply(tracker, event, clears_challenger)
            record(lake, event)
        except Exception:  # not recorded: no move that is not in the history (a kill is finished by reconcile)
            if event.kind == "challenger" and saw[1]:
                tracker.set_challenger(saw[1])
            elif event.kind == "challenger":
                tracker.clear_challenger()
            elif saw[0] is not None:
                tracker.promote(saw[0])
                if clears_challenger and saw[1]:
                    tracker.set_challenger(saw[1])
            _mark(lake, event, "cancelled")
            raise
        _finish(lake, event, report)
    return event


def _finish(lake: Lake, event: ModelEvent, report: Callable[[ModelEvent], None] | None) -> None:
    if report is not None and event.kind in MOVES:
        report(event)
    _mark(lake, event, "done")


def promote(lake: Lake, tracker, version: str, from_version: str | None, reason: str, run_id: str, *,
            clear_challenger: bool = False, report: Callable[[ModelEvent], None] | None = None) -> ModelEvent:
    """The champion alias moved from `from_version` to `version` by a Dagster run (the gates passed it), the
    version tagged with that run, the move recorded; with `clear_challenger`, the challenger alias (which
    pointed at it) removed. AliasMoved when the champion is no longer `from_version`."""
    event = move(lake, tracker, "promote", version, champion=from_version, who=f"Dagster run {run_id}",
                 reason=reason, run_id=run_id, challenger=version if clear_challenger else ...,
                 clears_challenger=clear_challenger, report=report)
    tracker.set_version_tag(version, "promoted_by_dagster_run", run_id)
    return event


def set_challenger(lake: Lake, tracker, version: str, champion: str, reason: str, run_id: str) -> ModelEvent | None:
    """The challenger alias set on `version` to shadow `champion`, and recorded; None when it was already set."""
    with alias_lock(tracker):
        shadowing = tracker.challenger_info()
        if shadowing is not None and str(shadowing.version) == str(version):
            return None
        return move(lake, tracker, "challenger", version, champion=champion, who=f"Dagster run {run_id}",
                    reason=reason, run_id=run_id, challenger=shadowing.version if shadowing else None)


def champion_metadata(event: ModelEvent) -> dict:
    """What Dagster is told of a champion move made outside a run of ml/champion_model (a rollback, a shadow
    promotion, or one of them finished by reconciliation): ml/champion_model's new value."""
    return {"model_uri": f"models:/{event.model_name}@champion", "model_version": event.to_version,
            "previous_version": event.from_version or "none", "kind": event.kind, "who": event.who,
            "reason": event.reason, "model_event_id": event.event_id}


def history(lake: Lake, version: str | None = None, limit: int | None = None) -> list[ModelEvent]:
    """The events, newest first; with `version`, those that moved the alias to or from it."""
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:  # no lake yet: no history
        return []
    with con:
        if not lake.table_exists(con, "ops", "model_events"):
            return []
        where, params = ("WHERE to_version = ? OR from_version = ?", [str(version)] * 2) if version else ("", [])
        rows = con.execute(f"SELECT {', '.join(f.name for f in fields(ModelEvent))} FROM {TABLE} {where} "
                           f"ORDER BY event_at DESC {'LIMIT ' + str(int(limit)) if limit else ''}", params).fetchall()
    return [ModelEvent(*r) for r in rows]


def rolled_back_from(lake: Lake, version: str, since: datetime | None = None) -> ModelEvent | None:
    """The latest rollback away from `version` (after `since`), if any."""
    for e in history(lake, version):
        if e.kind == "rollback" and e.from_version == str(version) and (since is None or e.event_at > since):
            return e
    return None


def pending(lake: Lake) -> list[tuple[ModelEvent, bool]]:
    """The moves whose intent was recorded and that were never marked done or cancelled: (event, clears the
    challenger), oldest first. Read under the alias lock, they are moves cut short (the process that made
    each held the lock until it was done, or died)."""
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:
        return []
    with con:
        if not lake.table_exists(con, "ops", "alias_moves"):
            return []
        rows = con.execute(f"""
            SELECT move_id, moved_at, kind, model_name, from_version, to_version, who, reason, dagster_run_id,
                   clears_challenger FROM {MOVES_TABLE} WHERE state = 'intent' AND move_id NOT IN
                (SELECT move_id FROM {MOVES_TABLE} WHERE state IN ('done', 'cancelled')) ORDER BY moved_at""").fetchall()
    return [(ModelEvent(*r[:9]), bool(r[9])) for r in rows]


def _finish_intents(lake: Lake, tracker, report: Callable[[ModelEvent], None] | None) -> list[ModelEvent]:
    """Finish each move cut short (its process died between its intent and its end), with its real kind: when the
    registry moved, the event recorded (if it is not) and reported; when it did not, the intent cancelled."""
    finished = []
    recorded_ids = {e.event_id for e in history(lake)}
    for event, clears in pending(lake):
        now = tracker.alias_info(_alias_of(event.kind))
        if event.event_id in recorded_ids:
            pass  # recorded; only its report (and its mark) is missing
        elif now is not None and str(now.version) == event.to_version:
            _apply(tracker, event, clears)  # again, idempotent: its registry tags, the challenger cleared
            record(lake, replace(event, reason=f"{event.reason} [finished by reconciliation: the process that moved "
                                               f"the alias died before recording it]"[:1000]))
        else:
            _mark(lake, event, "cancelled")  # the registry never moved
            continue
        _finish(lake, event, report)
        finished.append(event)
    return finished


def reconcile(lake: Lake, tracker, report: Callable[[ModelEvent], None] | None = None) -> list[ModelEvent]:
    """Before anything moves an alias again, under the alias lock: finish the moves a killed process left half
    done (`ops.alias_moves` intents, with their real kind: a rollback stays a rollback, `report`ed like it),
    then record where the aliases are when the history still does not say so: the champion alias on another
    version than the last recorded move (`found`, a hand in the registry), a challenger no event set. Returns
    the events recorded or finished (none when the history agrees with the registry)."""
    with alias_lock(tracker):
        done = _finish_intents(lake, tracker, report)
        found = []
        events = history(lake)
        champion, challenger = tracker.champion_info(), tracker.challenger_info()
        moves = [e for e in events if e.kind in MOVES]
        if champion is not None and (not moves or moves[0].to_version != str(champion.version)):
            last = moves[0].to_version if moves else None
            found.append(new_event(
                "found", tracker.model_name, last, str(champion.version), "reconciliation",
                f"the champion alias points at version {champion.version}, but the last recorded move was to "
                f"{last or 'nothing'}: the registry was changed by hand, or by a process that recorded nothing"))
        if challenger is not None and not any(e.kind == "challenger" and e.to_version == str(challenger.version)
                                              for e in events):
            found.append(new_event(
                "challenger", tracker.model_name, str(champion.version) if champion else None,
                str(challenger.version), "reconciliation",
                f"the challenger alias points at version {challenger.version} with no recorded event: it was set by "
                f"hand, or by a process that recorded nothing"))
        for event in found:
            record(lake, event)
    return done + found
