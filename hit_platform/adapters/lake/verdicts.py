"""The quality gates' verdicts, kept in the lake (`ops.gate_verdicts`), and the rule they make: whatever
reads a lake table at a snapshot reads only a version of it that each of its blocking gates passed.

A gate on a lake table (`defs/gate_checks.run_gate`) records, in the same lake, which version of the
table it judged: the snapshot that wrote that version (`table_version`), beside the snapshot it read, the
check, the asset, its verdict and the Dagster run. So the rule is asked of the lake itself, at any
snapshot: time travel (`rebuild --snapshot N`), the evaluation of a candidate at the snapshot it was
trained on, or the lake's head. A write Dagster never recorded (a run killed between its commit and its
report) is a version no gate judged, and a verdict reported to Dagster by hand is not in the lake.

A version of a table is named by the lake snapshot that wrote it: its creation (a `CREATE OR REPLACE`
makes a new table), or the newest snapshot at or before the one read that inserted into it, deleted from
it or altered it (DuckLake's `snapshots()` lists each snapshot's changes by table id; the table's id at a
snapshot is in DuckLake's catalog, `ducklake_table`). DuckLake's own upkeep (the maintenance job's merge of
small files, rewrite of deleted rows, flush of inlined rows) writes the same rows again and is no new
version: judged rows stay judged, and compacting raw never looks like rows no ingest recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import TypeVar

import duckdb

from hit_platform.adapters.lake.tables import GATE_VERDICTS_DDL, table_exists

T = TypeVar("T")


@dataclass(frozen=True)
class GateVerdict:
    """One row of ops.gate_verdicts: a check's verdict on one version of one lake table."""

    check_name: str
    asset: str  # the check's asset, e.g. core/song_labels
    lake_table: str  # core.song_labels
    lake_snapshot_id: int  # the snapshot the check read
    table_version: int | None  # the snapshot that wrote the version of the table it judged
    data_version: str | None  # the asset's Dagster data version when it was judged
    blocking: bool
    passed: bool
    description: str
    dagster_run_id: str | None


@dataclass(frozen=True)
class Unjudged:
    """A version of a table that a blocking check refused, or never judged."""

    check: str  # asset:check, e.g. core/song_labels:labels_bias
    table: str
    table_version: int | None
    refused: bool
    why: str  # the refusal's run and description; "" when never judged

    def verdict_text(self) -> str:
        """What happened to the version, without the check's name."""
        version = (f"as written at lake snapshot {self.table_version}" if self.table_version is not None
                   else "(no such table at that snapshot)")
        verb = "refused" if self.refused else "never judged"
        return f"{verb} {self.table} {version}" + (f" ({self.why})" if self.why else "")

    def __str__(self) -> str:
        return f"{self.check} {self.verdict_text()}"


class UnjudgedData(ValueError):
    """A read of lake data that a blocking gate refused or never judged, at the snapshot it would read."""

    def __init__(self, snapshot: int, found: list[Unjudged], purpose: str = "read"):
        self.snapshot, self.found = snapshot, found
        super().__init__(f"lake snapshot {snapshot} cannot be {purpose}: "
                         + "; ".join(" ".join(str(u).split()) for u in found))


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("SELECT current_database()").fetchall()[0][0]


# the changes DuckLake's upkeep writes (ducklake_merge_adjacent_files, _rewrite_data_files, _flush_inlined_data):
# the same rows, rewritten. Any other change (a kind a later DuckLake adds included) makes a new version.
UPKEEP_CHANGES = ("merge_adjacent", "rewrite_delete", "flushed_inlined")


def table_version(con: duckdb.DuckDBPyConnection, table: str, snapshot: int) -> int | None:
    """The lake snapshot that wrote `table` as it is at `snapshot` (see the module docstring); None when the
    table does not exist at `snapshot`."""
    schema, name = table.split(".")
    catalog = _catalog(con)
    meta = f'"__ducklake_metadata_{catalog}"'
    found = con.execute(f"""
        SELECT t.table_id, t.begin_snapshot FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema s USING (schema_id)
        WHERE s.schema_name = $schema AND t.table_name = $name
          AND s.begin_snapshot <= $n AND (s.end_snapshot IS NULL OR s.end_snapshot > $n)
          AND t.begin_snapshot <= $n AND (t.end_snapshot IS NULL OR t.end_snapshot > $n)""",
                        {"n": snapshot, "schema": schema, "name": name}).fetchall()
    if not found:
        return None
    table_id, created = found[0]
    changed = con.execute(f"""
        SELECT max(snapshot_id) FROM "{catalog}".snapshots()
        WHERE snapshot_id BETWEEN $created AND $n
          AND list_contains(flatten(map_values(map_from_entries(list_filter(map_entries(changes),
                                                                            e -> NOT list_contains($upkeep, e.key))))),
                            $id)""",
                          {"created": created, "n": snapshot, "id": str(table_id),
                           "upkeep": list(UPKEEP_CHANGES)}).fetchall()[0][0]
    return max(int(created), int(changed)) if changed is not None else int(created)


def judged_on_one_snapshot(con: duckdb.DuckDBPyConnection, table: str, gate: Callable[..., T],
                           *args) -> tuple[T, int, int | None]:
    """`gate(con, *args)` in one read transaction, so every query it makes sees one snapshot of the lake;
    returns its result, that snapshot, and the version of `table` there (what the verdict is about)."""
    con.execute("BEGIN TRANSACTION")
    try:
        result = gate(con, *args)
        snapshot = int(con.execute(f'SELECT max(snapshot_id) FROM "{_catalog(con)}".snapshots()').fetchall()[0][0])
        return result, snapshot, table_version(con, table, snapshot)
    finally:
        con.execute("ROLLBACK")


def record(con: duckdb.DuckDBPyConnection, verdict: GateVerdict) -> None:
    """Append one verdict (creating the table first). Call inside `Lake.write`."""
    con.execute(GATE_VERDICTS_DDL)
    names = ["judged_at", *(f.name for f in fields(GateVerdict))]
    con.execute(f"INSERT INTO ops.gate_verdicts ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [datetime.now(timezone.utc), *(getattr(verdict, f.name) for f in fields(GateVerdict))])


def unjudged(con: duckdb.DuckDBPyConnection, snapshot: int,
             gates: Mapping[str, Iterable[str]]) -> list[Unjudged]:
    """For each lake table of `gates` (table -> the names of its blocking checks), the checks whose newest
    verdict on the version of the table the lake holds at `snapshot` is a refusal, or that have none. The
    verdicts are read as the connection sees the lake now: a version judged after `snapshot` counts."""
    have = table_exists(con, "ops", "gate_verdicts")
    out = []
    for table, checks in gates.items():
        checks = list(checks)
        if not checks:
            continue
        version = table_version(con, table, snapshot)
        latest = {}
        if have and version is not None:
            latest = {r[0]: r[1:] for r in con.execute("""
                SELECT check_name, arg_max(passed, judged_at), arg_max(description, judged_at),
                       arg_max(dagster_run_id, judged_at)
                FROM ops.gate_verdicts WHERE lake_table = ? AND table_version = ? GROUP BY 1""",
                                                         [table, version]).fetchall()}
        asset = table.replace(".", "/")
        for check in checks:
            found = latest.get(check)
            if found is None:
                out.append(Unjudged(f"{asset}:{check}", table, version, False, ""))
            elif not found[0]:
                run = f"in run {found[2]}: " if found[2] else ""
                out.append(Unjudged(f"{asset}:{check}", table, version, True, f"{run}{found[1]}"))
    return out


def refuse_unjudged(con: duckdb.DuckDBPyConnection, snapshot: int, gates: Mapping[str, Iterable[str]],
                    purpose: str = "read") -> None:
    """Raise `UnjudgedData` unless every blocking check of `gates` passed its table as it is at `snapshot`."""
    found = unjudged(con, snapshot, gates)
    if found:
        raise UnjudgedData(snapshot, found, purpose)


def verdicts(con: duckdb.DuckDBPyConnection, table: str | None = None) -> list[dict]:
    """The verdicts recorded (of one table, or all), oldest first: for audits and tests."""
    if not table_exists(con, "ops", "gate_verdicts"):
        return []
    where, params = ("WHERE lake_table = ?", [table]) if table else ("", [])
    cur = con.execute(f"SELECT * FROM ops.gate_verdicts {where} ORDER BY judged_at", params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]
