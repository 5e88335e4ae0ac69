"""Build what the platform's own rules ask for, in process, until they ask for nothing more.

There is one scheduler: the rules the Dagster daemon evaluates. `build` evaluates the same ones, through
Dagster's public API, and runs what they request:

- new landing files: the landing sensor's own function (`defs/sensors.py`) says which files are new;
  they are ingested in one run (or, with none, whether the lake holds raw rows that no run recorded: an
  ingest run then materializes raw as the lake holds it, so its gates judge them);
- everything else: each asset's automation condition (`defs/automation.py`), evaluated with
  `dagster.evaluate_automation_conditions` to a fixed point (a run, then the conditions again on what it
  changed, until nothing is requested).

Build keeps its own cursors (the sensor's and the conditions'), next to the Dagster instance's files, so
"updated since last time" means since the last build. Where it differs from the daemon, it is on purpose:
a run that failed leaves the cursor where it was, so the next build asks for the same assets again (the
daemon moves on and waits for new data); and it reports what a failed gate holds back, and evaluates those
gates once more, in case the thresholds changed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from hit_platform.adapters.processes import is_alive, this_process
from hit_platform.cli.progress import Progress, steps_of_defs, steps_of
from hit_platform.defs import gate_policy, sensors
from hit_platform.defs.ml.shadow import BY_SENSOR
from hit_platform.defs.raw import QUARANTINED_CHART_ROWS, RAW_CHART_ROWS

INGEST = [RAW_CHART_ROWS, QUARANTINED_CHART_ROWS]
CURSORS_FILE = "hit_platform_build_cursors.json"
BUILD_PROCESS_TAG = "hit/build_process"  # the process that runs a build's run in itself (adapters/processes.py)
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dataclass
class BuildResult:
    selected: list[dg.AssetKey] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    success: bool = True
    materialized: list[dg.AssetKey] = field(default_factory=list)
    checks: list[dg.AssetCheckEvaluation] = field(default_factory=list)
    skipped: list[dg.AssetKey] = field(default_factory=list)  # not run: a failed gate or step upstream
    unchanged: list[dg.AssetKey] = field(default_factory=list)  # ran, found nothing new to write
    # assets left unbuilt because a parent's blocking check did not pass (and what is below them)
    held: list[gate_policy.Hold] = field(default_factory=list)
    held_below: list[dg.AssetKey] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        return self.run_ids[-1] if self.run_ids else None


@dataclass
class Cursors:
    """Where the last build left the landing sensor and the automation conditions.

    The conditions' cursor is kept per scope (`upto`): an evaluation of some assets moves the cursor's
    clock for all of them, so a build of the ingest alone would leave the next build of everything blind to
    the raw version it ingested (the retrain it asks for lost). Each scope remembers its own evaluations;
    a scope evaluated for the first time starts from the last cursor any scope saved (without one, an
    evaluation sees no change since: not a new raw version, nor a changed code version)."""

    path: Path | None
    landing: str | None = None
    automation: dict[str, str] = field(default_factory=dict)
    last: str | None = None  # the cursor saved last, by whichever scope

    def automation_of(self, scope: str) -> str | None:
        return self.automation.get(scope, self.last)

    def evaluated(self, scope: str, cursor: str) -> None:
        self.automation[scope] = self.last = cursor

    @classmethod
    def of(cls, instance: dg.DagsterInstance) -> "Cursors":
        root = getattr(instance, "root_directory", None)
        path = Path(root) / CURSORS_FILE if root else None
        if path is None or not path.exists():
            return cls(path)
        saved = json.loads(path.read_text())
        automation, last = saved.get("automation") or {}, saved.get("last_automation")
        if isinstance(automation, str):  # written before cursors were kept per scope: every scope's
            automation, last = {}, automation
        return cls(path, saved.get("landing"), automation, last)

    def save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"landing": self.landing, "automation": self.automation,
                                       "last_automation": self.last}))
            tmp.replace(self.path)  # a build killed while saving keeps the previous cursors whole


EVERYTHING = "*"


def scope_name(upto: list[dg.AssetKey] | None) -> str:
    """The key a scope's automation cursor is kept under."""
    return EVERYTHING if upto is None else ",".join(sorted(k.to_user_string() for k in upto))


@dataclass
class Plan:
    """What the rules ask for now: landing files to ingest, then assets."""

    files: list[str]
    assets: list[dg.AssetKey]
    landing_cursor: str | None
    automation_cursor: str | None


def _sorted(keys) -> list[dg.AssetKey]:
    return sorted(set(keys), key=lambda k: k.to_user_string())


def _scope(defs: dg.Definitions, upto: list[dg.AssetKey] | None) -> set[dg.AssetKey]:
    """What a build may materialize: everything (or `upto` and its upstream) except what live traffic,
    not data, drives (the shadow judgement: its sensor runs it)."""
    graph = defs.resolve_asset_graph()
    everything = set(graph.materializable_asset_keys) - BY_SENSOR
    if upto is None:
        return everything
    selection = dg.AssetSelection.assets(*upto).upstream().required_multi_asset_neighbors()
    return set(selection.resolve(graph)) & everything


def new_landing_files(defs: dg.Definitions, instance: dg.DagsterInstance,
                      cursor: str | None) -> tuple[list[str], str | None, bool]:
    """The files the landing sensor would start ingest runs for, its cursor after looking, and whether it
    asks for an ingest run that lands no file (the lake holds raw rows no run recorded: they are judged)."""
    lake = defs.resources["lake"]
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": lake})
    found = sensors.landing_sensor(context, lake=lake)
    requests = found if isinstance(found, list) else []
    files = [name for r in requests for name in r.run_config["ops"]["ingest_chart_files"]["config"]["files"]]
    return files, context.cursor, any(sensors.RECONCILE_TAG in r.tags for r in requests)


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, scope: set[dg.AssetKey],
             cursor: str | None) -> tuple[list[dg.AssetKey], str]:
    """The assets in `scope` whose automation condition asks for a run now (the daemon's evaluation)."""
    result = dg.evaluate_automation_conditions(
        defs, instance, asset_selection=dg.AssetSelection.assets(*scope) | dg.AssetSelection.checks_for_assets(*scope),
        cursor=dg.deserialize_value(cursor) if cursor else None)
    requested = [k for k in scope if result.get_num_requested(k)]
    return _with_multi_asset_neighbors(defs, requested), dg.serialize_value(result.cursor)


def plan(defs: dg.Definitions, instance: dg.DagsterInstance, upto: list[dg.AssetKey] | None = None) -> Plan:
    """What a build would run first, without running it (nor moving its cursors)."""
    cursors = Cursors.of(instance)
    files, landing, reconcile = new_landing_files(defs, instance, cursors.landing)
    assets, automation = evaluate(defs, instance, _scope(defs, upto), cursors.automation_of(scope_name(upto)))
    return Plan(files, _sorted((INGEST if files or reconcile else []) + assets), landing, automation)


def pending(defs: dg.Definitions, instance: dg.DagsterInstance,
            upto: list[dg.AssetKey] | None = None) -> list[dg.AssetKey]:
    """The assets a build would run now (see `plan`)."""
    return plan(defs, instance, upto).assets


def held_now(defs: dg.Definitions, instance: dg.DagsterInstance,
             scope: set[dg.AssetKey]) -> tuple[list[gate_policy.Hold], list[dg.AssetKey]]:
    """Assets in `scope` behind a parent version that the parent's blocking checks did not pass, and what
    is below them (monitors excepted: they report on what is held)."""
    graph = defs.resolve_asset_graph()
    checks = gate_policy.blocking_checks(defs.assets or [], defs.asset_checks or [])
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    guarded = {k for a in assets if gate_policy.is_guarded(a) for k in a.keys} & scope
    observers = {k for a in assets if gate_policy.is_observer(a) for k in a.keys}
    found = [h for key in _sorted(guarded) if _behind_a_gated_parent(instance, key, graph.get(key).parent_keys, checks)
             for h in gate_policy.holds(instance, key, _sorted(graph.get(key).parent_keys), checks)
             if h.verdict.judged_version_exists]
    if "lake" in (defs.resources or {}):  # the lake's own versions of the parents: a write no run recorded
        seen = {(h.asset, h.check) for h in found}
        lake_gates = gate_policy.blocking_checks(defs.assets or [], defs.asset_checks or [], lake_only=True)
        parents = {k: graph.get(k).parent_keys for k in _sorted(guarded)}
        found += [h for h in gate_policy.lake_holds(defs.resources["lake"].lake(), parents, lake_gates)
                  if (h.asset, h.check) not in seen]
    held = {h.asset for h in found}
    below = set(dg.AssetSelection.assets(*held).downstream().resolve(graph)) - held if held else set()
    return found, _sorted((below - observers) & scope)


def _behind_a_gated_parent(instance: dg.DagsterInstance, key: dg.AssetKey, parents, checks) -> bool:
    """Whether a gated parent of `key` has a newer materialization than `key` (or `key` has none)."""
    own = instance.fetch_materializations(key, limit=1).records
    for parent in parents:
        if parent in checks:
            latest = instance.fetch_materializations(parent, limit=1).records
            if latest and (not own or latest[0].storage_id > own[0].storage_id):
                return True
    return False


def _with_multi_asset_neighbors(defs: dg.Definitions, keys: list[dg.AssetKey]) -> list[dg.AssetKey]:
    """A multi-asset runs whole: ingest writes raw and quarantine together."""
    if not keys:
        return keys
    whole = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors().resolve(defs.resolve_asset_graph())
    return _sorted(whole)


def recheck(defs: dg.Definitions, instance: dg.DagsterInstance, checks: set[dg.AssetCheckKey],
            log_level: str = "INFO") -> list[dg.AssetCheckEvaluation]:
    """Evaluate `checks` again on their assets' latest versions, in a run of their own."""
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(),
                                                                  asset_check_selection=checks)
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=_run_config(log_level))
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def _run_config(log_level: str, ingest: dict | None = None) -> dict:
    config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if ingest:
        config["ops"] = {"ingest_chart_files": {"config": ingest}}
    return config


def fail_runs_of_dead_builds(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs a build ran in its own process that died with them (`kill -9`, power loss).

    The daemon's run monitoring does this for the runs it launched; a build's runs live in the build's
    process, and no one else would. Left "started", they would stay in progress for ever, and the
    automation conditions never ask for an asset in progress.
    """
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED, tags={"trigger": "build"})):
        token = run.tags.get(BUILD_PROCESS_TAG)
        if token and is_alive(token) is False:
            instance.report_run_failed(run, f"the build process that ran it ({token}) is gone: marked failed so "
                                            "the next build asks for its assets again")
            dead.append(run.run_id)
    return dead


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, out: BuildResult, selected: list[dg.AssetKey],
         run_config: dict, tags: dict, progress: Progress) -> bool:
    job = defs.resolve_implicit_global_asset_job_def()
    steps, run_id = steps_of_defs(defs), str(uuid.uuid4())
    progress.plan(steps_of(steps, selected))
    with progress.following(instance, run_id, steps):
        result = job.execute_in_process(instance=instance, asset_selection=selected, raise_on_error=False,
                                        run_config=run_config, run_id=run_id,
                                        tags={**tags, BUILD_PROCESS_TAG: this_process()})
    out.run_ids.append(result.run_id)
    out.selected += [k for k in selected if k not in out.selected]
    out.materialized += [e.asset_key for e in result.get_asset_materialization_events()]
    out.checks += [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    succeeded = {label for e in result.all_events if e.event_type_value == "STEP_SUCCESS"
                 for label in steps.assets.get(e.step_key, [])}
    out.unchanged += [k for k in selected if k not in out.materialized and k.to_user_string() in succeeded
                      and k not in out.unchanged]
    out.skipped = [k for k in out.selected if k not in out.materialized and k not in out.unchanged]
    out.success = out.success and result.success
    return result.success


def build(defs: dg.Definitions, instance: dg.DagsterInstance, *, everything: bool = False,
          upto: list[dg.AssetKey] | None = None, log_level: str = "INFO", max_rounds: int = 20,
          progress: Progress | None = None) -> BuildResult:
    """Ingest what the landing sensor finds new, then run what the automation conditions request, round
    after round, until they request nothing (see the module docstring). `upto` limits the build to these
    assets and what they need (e.g. the data half); `everything` first materializes every asset in scope,
    ingest included, whatever the rules say. `progress` tells each asset as it starts and ends (default:
    nothing).

    A failed gate stops the round it is in. What it holds is reported in `held` (with what is below it in
    `held_below`); its checks are evaluated once more, since a verdict can change without a new version of
    its asset (the thresholds changed), and what they release is built in the rounds that follow.
    """
    fail_runs_of_dead_builds(instance)
    progress = progress or Progress("quiet")
    cursors, scope, out = Cursors.of(instance), _scope(defs, upto), BuildResult()
    named = scope_name(upto)
    files, landing, reconcile = new_landing_files(defs, instance, cursors.landing)
    if everything:
        ok = _run(defs, instance, out, _sorted(scope), _run_config(log_level, {"materialize_unchanged": True}),
                  {"trigger": "build", "build": "--all"}, progress)
    elif files or reconcile:  # without files: raw rows the lake holds and no run recorded, judged now
        ok = _run(defs, instance, out, INGEST, _run_config(log_level, {"files": files}),
                  {"trigger": "build", "landing_files": ",".join(files)[:200] or "(none: reconcile)"}, progress)
    else:
        ok = True
    if ok:
        cursors.landing = landing
        cursors.save()
    rechecked = False
    while ok:
        for _ in range(max_rounds):
            requested, automation = evaluate(defs, instance, scope, cursors.automation_of(named))
            if not requested:
                cursors.evaluated(named, automation)
                break
            # A failed run leaves the cursor as it was: the next build asks for what this one could not build.
            if not _run(defs, instance, out, requested, _run_config(log_level), {"trigger": "build"}, progress):
                break
            cursors.evaluated(named, automation)
            cursors.save()  # a build killed later starts the next one from here
        out.held, out.held_below = held_now(defs, instance, scope)
        stuck = {h.check for h in out.held}
        if rechecked or not stuck or not out.success:
            break
        rechecked = True
        evaluations = recheck(defs, instance, stuck, log_level)
        out.checks += evaluations
        if not any(e.passed for e in evaluations):  # still held: say so as of the new verdicts
            out.held, out.held_below = held_now(defs, instance, scope)
            break
    if not ok:
        out.held, out.held_below = held_now(defs, instance, scope)
    cursors.save()
    return out


def report(result: BuildResult, out=print) -> bool:
    """Print what a build did: its runs, what a failed gate stopped or holds, every gate's verdict.
    True when every run succeeded and no failed gate holds anything back."""
    if not result.selected and not result.held:
        out("   nothing to build: every asset is up to date with its inputs and code")
        return True
    if result.run_ids:
        out(f"   dagster run {result.run_id}: {'success' if result.success else 'FAILED'}")
        out("   materialized: " + (", ".join(k.to_user_string() for k in result.materialized) or "nothing"))
    if result.unchanged:
        out("   ran and found nothing new to write (nothing below them is stale): "
            + ", ".join(k.to_user_string() for k in result.unchanged))
    if result.skipped:
        out("   not materialized (stopped by a failing gate or step upstream): "
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
