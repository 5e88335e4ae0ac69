"""Build what is missing or stale, and nothing else.

Staleness is Dagster's own: data versions and code versions recorded with every
materialization. The landing folder is an observable source asset; observing it
first makes ingest stale exactly when files arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._time import get_current_datetime

from hit_platform.defs.ingest import LANDING, RAW_CHART_ROWS


@dataclass
class BuildResult:
    selected: list[dg.AssetKey] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    success: bool = True
    materialized: list[dg.AssetKey] = field(default_factory=list)
    checks: list[dg.AssetCheckEvaluation] = field(default_factory=list)
    skipped: list[dg.AssetKey] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        return self.run_ids[-1] if self.run_ids else None


def stale_status(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[dg.AssetKey, StaleStatus]:
    graph: AssetGraph = defs.resolve_asset_graph()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    return {key: resolver.get_status(key) for key in graph.materializable_asset_keys}


def stale_or_missing(defs: dg.Definitions, instance: dg.DagsterInstance,
                     upto: list[dg.AssetKey] | None = None) -> list[dg.AssetKey]:
    """Assets Dagster reports stale or missing; with `upto`, only those keys and their upstream."""
    scope = _scope(defs, upto)
    return sorted((k for k, s in stale_status(defs, instance).items() if s != StaleStatus.FRESH and k in scope),
                  key=lambda k: k.to_user_string())


def _scope(defs: dg.Definitions, upto: list[dg.AssetKey] | None) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    if upto is None:
        return set(graph.materializable_asset_keys)
    selection = dg.AssetSelection.assets(*upto).upstream().required_multi_asset_neighbors()
    return set(selection.resolve(graph)) & set(graph.materializable_asset_keys)


def _run_config(log_level: str, force_ingest: bool = False) -> dict:
    config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if force_ingest:  # ingest materializes even with nothing new, so everything below rebuilds too
        config["ops"] = {"ingest_chart_files": {"config": {"materialize_unchanged": True}}}
    return config


def observe_landing(defs: dg.Definitions, instance: dg.DagsterInstance, log_level: str = "INFO") -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, asset_selection=[LANDING], run_config=_run_config(log_level))


def build(defs: dg.Definitions, instance: dg.DagsterInstance, *, everything: bool = False,
          upto: list[dg.AssetKey] | None = None, log_level: str = "INFO", max_waves: int = 10) -> BuildResult:
    """Observe the landing folder, then materialize every stale or missing asset (with its checks).

    Staleness only shows one step down at a time (an asset turns stale once its
    input got a new data version), so this runs in waves until nothing is stale:
    new landing data -> ingest; new raw rows -> everything below. A wave whose
    gate fails ends the build: what it stopped stays stale for the next one.
    `upto` limits the build to these assets and what they need (e.g. the data half).
    """
    observe_landing(defs, instance, log_level)
    out = BuildResult()
    job = defs.resolve_implicit_global_asset_job_def()
    all_keys = sorted(_scope(defs, upto), key=lambda k: k.to_user_string())
    for wave in range(max_waves):
        forced = everything and wave == 0
        selected = all_keys if forced else stale_or_missing(defs, instance, upto)
        # Once per build: an ingest that found nothing new stays "stale" against the landing
        # folder (a rejected file changed it) but has nothing more to do.
        selected = [k for k in selected if k not in out.selected]
        if not selected:
            break
        result = job.execute_in_process(instance=instance, asset_selection=selected, raise_on_error=False,
                                        run_config=_run_config(log_level, forced and RAW_CHART_ROWS in selected))
        materialized = [e.asset_key for e in result.get_asset_materialization_events()]
        out.run_ids.append(result.run_id)
        out.selected += [k for k in selected if k not in out.selected]
        out.materialized += materialized
        out.checks += [e.event_specific_data for e in result.all_events
                       if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        out.skipped = [k for k in out.selected if k not in out.materialized]
        if not result.success:
            out.success = False
            break
    return out
