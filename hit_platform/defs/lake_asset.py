"""What every lake-table asset does the same way: write in one transaction, report the snapshots."""

from collections.abc import Callable

import dagster as dg
import duckdb

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.verdicts import UnjudgedData, refuse_unjudged, table_version
from hit_platform.defs import gate_policy
from hit_platform.defs.resources import LakeResource
from hit_platform.steps.datasets import reread_sql
from hit_platform.steps.transforms import row_count, table_columns


def table_schema_metadata(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in table_columns(con, table)])


def build_lake_tables(context: dg.AssetExecutionContext, lake: LakeResource,
                      build: Callable[[duckdb.DuckDBPyConnection], dict],
                      tables: dict[dg.AssetKey, str]) -> list[dg.MaterializeResult]:
    """Run `build` in one lake transaction; one MaterializeResult per (asset key -> table).

    Metadata: the lake snapshot read (before) and written (after), so any
    version of the table can be re-read with `AT (VERSION => n)`, row counts,
    the column schema, and whatever `build` returned.

    Inside that transaction, before `build` reads anything, the parents' tables as that transaction sees
    them must be versions their blocking gates passed (`gate_policy.parents_lake_gates`): a file another
    run committed since the gate policy asked is not read unjudged.
    """
    the_lake, gates = lake.lake(), gate_policy.parents_lake_gates(context)

    def judged_then_built(con: duckdb.DuckDBPyConnection) -> dict:
        refuse_unjudged(con, the_lake.snapshot_id(con), gates, "read")
        return build(con)

    with the_lake.connection() as con:
        read = the_lake.snapshot_id(con)
        try:
            extra = the_lake.write(judged_then_built, con=con, what=", ".join(tables.values()))
        except UnjudgedData as exc:
            raise gate_policy.unjudged_error(exc) from None
        written = the_lake.snapshot_id(con)
        results = []
        for key, table in tables.items():
            meta = {"lake_table": table, "lake_snapshot_read": read, "lake_snapshot_id": written,
                    "dagster/row_count": row_count(con, table),
                    "dagster/column_schema": table_schema_metadata(con, table),
                    "reread_sql": reread_sql(table, written)}
            meta.update(extra.get(table, {}))
            results.append(dg.MaterializeResult(asset_key=key, metadata=meta))
    context.log.info(f"wrote {', '.join(tables.values())} at lake snapshot {written}")
    return results


def unrecorded_version(instance: dg.DagsterInstance, con: duckdb.DuckDBPyConnection, key: dg.AssetKey,
                       snapshot: int) -> int | None:
    """The version of `key`'s lake table at `snapshot` (the snapshot that wrote it) when no materialization of
    `key` recorded it: a commit whose run died before it reported anything (`kill -9` between the two).
    None when Dagster's latest materialization of `key` knows that version (or the table does not exist)."""
    version = table_version(con, ".".join(key.path), snapshot)
    if version is None:
        return None
    latest = instance.get_latest_materialization_event(key)
    recorded = latest.asset_materialization.metadata.get("lake_snapshot_id") if latest else None
    return version if recorded is None or version > int(recorded.value) else None


def commit(lake: Lake, write: Callable[[duckdb.DuckDBPyConnection], object], what: str) -> int:
    """Run `write` in one lake transaction (retried whole on a conflict); the snapshot it left."""
    with lake.connection() as con:
        lake.write(write, con=con, what=what)
        return lake.snapshot_id(con)
