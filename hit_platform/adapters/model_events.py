"""The champion's history in `ops.model_events`: every move of the registry's `champion` alias, a
promotion by the gates (`ml/champion_model`, `ml/shadow_promotion`) or a rollback by a person
(`hit-platform rollback`), and every candidate set to shadow it (`challenger`),
with who, when, from, to and why. `audit` and the dashboard read it."""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timezone

import duckdb

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import MODEL_EVENTS_DDL

# challenger: a candidate set to shadow the champion; found: the champion alias found where no recorded
# event put it (a process killed between moving it and recording the move, or a hand in the registry)
KINDS = ("promote", "rollback", "challenger", "found")
MOVES = ("promote", "rollback", "found")  # the kinds that move the champion alias
TABLE = "ops.model_events"


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


def promote(lake: Lake, tracker, version: str, from_version: str | None, reason: str, run_id: str, *,
            clear_challenger: bool = False) -> ModelEvent:
    """The champion alias moved to `version` by a Dagster run (the gates passed it), the version tagged with
    that run, the move recorded; with `clear_challenger`, the challenger alias (which pointed at it) removed."""
    event = new_event("promote", tracker.model_name, from_version, version, f"Dagster run {run_id}", reason[:500],
                      run_id)
    tracker.promote(version)
    if clear_challenger:
        tracker.clear_challenger()
    tracker.set_version_tag(version, "promoted_by_dagster_run", run_id)
    return record(lake, event)


def set_challenger(lake: Lake, tracker, version: str, champion: str, reason: str, run_id: str) -> ModelEvent | None:
    """The challenger alias set on `version` to shadow `champion`, and recorded; None when it was already set."""
    shadowing = tracker.challenger_info()
    if shadowing is not None and str(shadowing.version) == str(version):
        return None
    tracker.set_challenger(version)
    return record(lake, new_event("challenger", tracker.model_name, champion, version, f"Dagster run {run_id}",
                                  reason[:500], run_id))


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


def reconcile(lake: Lake, tracker) -> list[ModelEvent]:
    """Record where the aliases are when the history does not say so, before anything moves them again:
    the champion alias on another version than the last recorded move (`found`), a challenger no event
    set. Returns the events recorded (none when the history agrees with the registry)."""
    found = []
    events = history(lake)
    champion, challenger = tracker.champion_info(), tracker.challenger_info()
    moves = [e for e in events if e.kind in MOVES]
    if champion is not None and (not moves or moves[0].to_version != str(champion.version)):
        last = moves[0].to_version if moves else None
        found.append(new_event(
            "found", tracker.model_name, last, str(champion.version), "reconciliation",
            f"the champion alias points at version {champion.version}, but the last recorded move was to "
            f"{last or 'nothing'}: a process died between moving the alias and recording it, or the registry "
            f"was changed by hand"))
    if challenger is not None and not any(e.kind == "challenger" and e.to_version == str(challenger.version)
                                          for e in events):
        found.append(new_event(
            "challenger", tracker.model_name, str(champion.version) if champion else None, str(challenger.version),
            "reconciliation", f"the challenger alias points at version {challenger.version} with no recorded "
                              f"event: a process died between setting it and recording it, or it was set by hand"))
    for event in found:
        record(lake, event)
    return found
