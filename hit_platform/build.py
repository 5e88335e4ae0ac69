"""Build what is missing or stale, and nothing else.

Staleness is Dagster's own: data versions and code versions recorded with every
materialization. The landing folder is an observable source asset; observing it
first makes ingest stale exactly when files arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._time import get_current_datetime

from hit_platform.defs.ingest import LANDING


@dataclass
class BuildResult:
    selected: list[dg.AssetKey]
    run_id: str | None
    success: bool
    materialized: list[dg.AssetKey]
    checks: list[dg.AssetCheckEvaluation]
    skipped: list[dg.AssetKey]


def stale_status(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[dg.AssetKey, StaleStatus]:
    graph: AssetGraph = defs.resolve_asset_graph()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    return {key: resolver.get_status(key) for key in graph.materializable_asset_keys}


def stale_or_missing(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.AssetKey]:
    return sorted((k for k, s in stale_status(defs, instance).items() if s != StaleStatus.FRESH),
                  key=lambda k: k.to_user_string())


def observe_landing(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, asset_selection=[LANDING])


def build(defs: dg.Definitions, instance: dg.DagsterInstance, *, everything: bool = False) -> BuildResult:
    """Observe the landing folder, then materialize every stale or missing asset (with its checks)."""
    observe_landing(defs, instance)
    selected = sorted(defs.resolve_asset_graph().materializable_asset_keys, key=lambda k: k.to_user_string()) \
        if everything else stale_or_missing(defs, instance)
    if not selected:
        return BuildResult([], None, True, [], [], [])
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=selected, raise_on_error=False)
    materialized = [e.asset_key for e in result.get_asset_materialization_events()]
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    skipped = [k for k in selected if k not in materialized]
    return BuildResult(selected, result.run_id, result.success, materialized, checks, skipped)
