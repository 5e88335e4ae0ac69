"""Build what is missing or stale, and nothing else.

Staleness is Dagster's own: data versions and code versions recorded with every
materialization. The landing folder is an observable source asset; observing it
first makes ingest stale exactly when files arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
# Private: Dagster has no public API for "which assets are stale" (the UI asks GraphQL, which uses these).
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._time import get_current_datetime

from hit_platform.defs import gate_policy
from hit_platform.defs.landing import LANDING
from hit_platform.defs.ml.shadow import BY_SENSOR
from hit_platform.defs.raw import RAW_CHART_ROWS


@dataclass
class BuildResult:
    selected: list[dg.AssetKey] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    success: bool = True
    materialized: list[dg.AssetKey] = field(default_factory=list)
    checks: list[dg.AssetCheckEvaluation] = field(default_factory=list)
    skipped: list[dg.AssetKey] = field(default_factory=list)
    # stale assets left unbuilt because a parent's blocking check did not pass (and what is below them)
    held: list[gate_policy.Hold] = field(default_factory=list)
    held_below: list[dg.AssetKey] = field(default_factory=list)

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
    """What a build may materialize: everything (or `upto` and its upstream) except what live traffic,
    not data, drives (the shadow judgement: its sensor runs it), unless named in `upto`."""
    graph = defs.resolve_asset_graph()
    if upto is None:
        return set(graph.materializable_asset_keys) - BY_SENSOR
    selection = dg.AssetSelection.assets(*upto).upstream().required_multi_asset_neighbors()
    return set(selection.resolve(graph)) & set(graph.materializable_asset_keys) - (BY_SENSOR - set(upto))


def without_held(defs: dg.Definitions, instance: dg.DagsterInstance, selected: list[dg.AssetKey],
                 in_run: bool = True) -> tuple[list[dg.AssetKey], list[gate_policy.Hold], list[dg.AssetKey]]:
    """`selected` minus what the gate policy refuses now, and everything below it.

    With `in_run`, a parent in the same selection does not hold its child: its checks run with it,
    Dagster stops the child there if one fails, and the child's own policy reads the new verdict.
    """
    graph = defs.resolve_asset_graph()
    checks = gate_policy.blocking_checks(defs.assets or [], defs.asset_checks or [])
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    guarded = {k for a in assets if gate_policy.is_guarded(a) for k in a.keys}
    observers = {k for a in assets if gate_policy.is_observer(a) for k in a.keys}
    chosen = set(selected) if in_run else set()
    found = [h for key in selected if key in guarded
             for h in gate_policy.holds(instance, key, [p for p in graph.get(key).parent_keys if p not in chosen],
                                        checks)]
    held = {h.asset for h in found}
    below = set(dg.AssetSelection.assets(*held).downstream().resolve(graph)) - held if held else set()
    below -= observers  # monitors still run: they report on what is held
    keep = [k for k in selected if k not in held and k not in below]
    return keep, found, sorted(below & set(selected), key=lambda k: k.to_user_string())


def _with_multi_asset_neighbors(defs: dg.Definitions, keys: list[dg.AssetKey]) -> list[dg.AssetKey]:
    if not keys:
        return keys
    graph = defs.resolve_asset_graph()
    whole = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors().resolve(graph)
    return sorted(whole, key=lambda k: k.to_user_string())


def recheck(defs: dg.Definitions, instance: dg.DagsterInstance, checks: set[dg.AssetCheckKey],
            log_level: str = "INFO") -> list[dg.AssetCheckEvaluation]:
    """Evaluate `checks` again on their assets' latest versions, in a run of their own."""
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(),
                                                                  asset_check_selection=checks)
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=_run_config(log_level))
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


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

    What a failed gate holds (see `gate_policy`) is left out and reported in `held`, with what is
    below it in `held_below`. A verdict can change without a new version of its asset (the
    thresholds changed), so the checks that hold something are evaluated again, once per build;
    what they release is built in a second round of waves.
    """
    observe_landing(defs, instance, log_level)
    out = BuildResult()
    tried: set[dg.AssetKey] = set()
    rechecked = False
    while True:
        _waves(defs, instance, out, tried, everything and not out.run_ids, upto, log_level, max_waves)
        unbuilt = [k for k in stale_or_missing(defs, instance, upto) if k not in out.materialized]
        _, out.held, out.held_below = without_held(defs, instance, unbuilt, in_run=False)
        stuck = {h.check for h in out.held if h.verdict.judged_version_exists}
        if rechecked or not stuck or not out.success:
            return out
        rechecked = True
        evaluations = recheck(defs, instance, stuck, log_level)
        out.checks += evaluations
        if not any(e.passed for e in evaluations):  # still held: say so as of the new verdicts
            _, out.held, out.held_below = without_held(defs, instance, unbuilt, in_run=False)
            return out
        tried -= {h.asset for h in out.held} | set(out.held_below)  # released: may be selected again


def _waves(defs: dg.Definitions, instance: dg.DagsterInstance, out: BuildResult, tried: set[dg.AssetKey],
           everything: bool, upto: list[dg.AssetKey] | None, log_level: str, max_waves: int) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    all_keys = sorted(_scope(defs, upto), key=lambda k: k.to_user_string())
    for wave in range(max_waves):
        forced = everything and wave == 0
        selected = all_keys if forced else stale_or_missing(defs, instance, upto)
        # Once per build: an ingest that found nothing new stays "stale" against the landing
        # folder (a rejected file changed it) but has nothing more to do.
        selected = [k for k in selected if k not in tried]
        # A multi-asset runs whole: ingest writes raw and quarantine together, even when only one of
        # them is stale (a file without bad rows leaves quarantine stale against the landing folder).
        selected, _, _ = without_held(defs, instance, _with_multi_asset_neighbors(defs, selected))
        if not selected:
            return
        result = job.execute_in_process(instance=instance, asset_selection=selected, raise_on_error=False,
                                        run_config=_run_config(log_level, forced and RAW_CHART_ROWS in selected))
        tried.update(selected)
        out.run_ids.append(result.run_id)
        out.selected += [k for k in selected if k not in out.selected]
        out.materialized += [e.asset_key for e in result.get_asset_materialization_events()]
        out.checks += [e.event_specific_data for e in result.all_events
                       if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        out.skipped = [k for k in out.selected if k not in out.materialized]
        if not result.success:
            out.success = False
            return


def report(result: BuildResult, out=print) -> bool:
    """Print what a build did: its runs, what a failed gate stopped or holds, every gate's verdict.
    True when every run succeeded and no failed gate holds anything back."""
    if not result.selected and not result.held:
        out("   nothing is stale: every asset is up to date with its inputs and code")
        return True
    if result.run_ids:
        out(f"   dagster run {result.run_id}: {'success' if result.success else 'FAILED'}")
        out("   materialized: " + (", ".join(k.to_user_string() for k in result.materialized) or "nothing"))
    if result.skipped:
        out("   not materialized (stopped by a failing gate upstream): "
            + ", ".join(k.to_user_string() for k in result.skipped))
    if result.held:
        out("   left unbuilt, held by a failed gate (a rerun does not release them; fix the data or the "
            "thresholds HIT_GATE_*, then build again):")
        for h in result.held:
            out(f"     {h}")
        if result.held_below:
            out("     and below them: " + ", ".join(k.to_user_string() for k in result.held_below))
    if result.checks:
        out("   quality gates:")
    for c in sorted(result.checks, key=lambda c: (c.asset_key.to_user_string(), c.check_name)):
        mark = "pass" if c.passed else ("WARN" if c.severity.value == "WARN" else "FAIL")
        out(f"     [{mark}] {c.asset_key.to_user_string()}:{c.check_name} - {c.description}")
    return result.success and not result.held
