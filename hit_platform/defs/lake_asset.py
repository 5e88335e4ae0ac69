"""What every lake-table asset does the same way: write in one transaction, report the snapshots."""

from collections.abc import Callable

import dagster as dg
import duckdb

from hit_platform.adapters.lake.connection import Lake
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
    """
    the_lake = lake.lake()
    with the_lake.connection() as con:
        read = the_lake.snapshot_id(con)
        extra = the_lake.write(build, con=con, what=", ".join(tables.values()))
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


def commit(lake: Lake, write: Callable[[duckdb.DuckDBPyConnection], object], what: str) -> int:
    """Run `write` in one lake transaction (retried whole on a conflict); the snapshot it left."""
    with lake.connection() as con:
        lake.write(write, con=con, what=what)
        return lake.snapshot_id(con)
