"""The gate policy: no asset is built on a parent that its blocking checks did not pass.

Dagster stops the children of a failed blocking check only inside the run that
evaluated it. A later run that leaves the check out (a second `hit-platform
build`, `dagster asset materialize --select ml/champion_model`, the UI's
"Materialize" on one asset) would build on what the gate refused. So the rule
is kept by every asset itself, whatever the run: `@gated`, beneath `@dg.asset`
where the asset is defined, makes its body first ask whether each parent's
blocking checks passed *that parent's latest materialization*. A failed,
missing, unfinished or out-of-date evaluation holds the asset, with an error
that names the check, its verdict and how to release it. `cli/build.py` asks
the same question up front to report what it leaves unbuilt.

Dagster's record is not the whole story: the lake can hold a version of a parent that no run recorded (a
run killed between its commit and its report), and a verdict can be reported by hand. So a gate on a lake
table (`LAKE_GATE`, `gate_checks.run_gate`) also records its verdict in the lake with the version it judged
(`adapters/lake/verdicts.py`), and an asset is held as well when the lake's version of a parent table is
one that a blocking gate refused or never judged (`lake_holds`); what reads a table at a past snapshot
asks the same rule at that snapshot (`lake_gates`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.verdicts import UnjudgedData, unjudged
from hit_platform.private_apis import latest_check_verdict
from hit_platform.steps.datasets import SPLIT_TABLES

# Monitors and the dashboard report on what the gates judged (a refused candidate, failing labels), and
# maintenance folds, compacts and expires what is stored (never a row's content): neither builds anything
# that trains or serves on judged data, so the policy does not hold them.
OBSERVER_GROUPS = frozenset({"ops", "maintenance"})

# The metadata of a check that judges its asset's own lake table (key prefix = schema, name = table) and
# records each verdict there (`gate_checks.run_gate`).
LAKE_GATE = {"verdicts": "ops.gate_verdicts"}

RELEASE = ("fix the data (or the thresholds, HIT_GATE_*) and rebuild: `hit-platform build`, which runs "
           "the check again with its asset")


@dataclass(frozen=True)
class Verdict:
    """Why a check does not clear its asset's latest version: it failed, or it has not judged it."""

    failed: bool
    text: str
    judged_version_exists: bool = True  # False: the asset itself was never materialized

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Hold:
    """`asset` may not be built: `check` on its parent did not pass the parent's latest version."""

    asset: dg.AssetKey
    check: dg.AssetCheckKey
    verdict: Verdict

    def __str__(self) -> str:
        return (f"{self.asset.to_user_string()} is held by "
                f"{self.check.asset_key.to_user_string()}:{self.check.name} ({self.verdict})")


def blocking_checks(assets: Iterable, checks: Iterable,
                    lake_only: bool = False) -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """Every asset that has blocking checks -> those checks (ERROR severity blocks; WARN never does); with
    `lake_only`, only the checks that judge the asset's lake table (`LAKE_GATE`)."""
    out: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for d in [*assets, *checks]:
        for spec in getattr(d, "check_specs", []):
            if lake_only and not is_lake_gate(spec):
                continue
            if spec.blocking and spec.key not in out.get(spec.asset_key, []):
                out.setdefault(spec.asset_key, []).append(spec.key)
    return out


def verdict(instance: dg.DagsterInstance, check: dg.AssetCheckKey) -> Verdict | None:
    """None when `check` passed for its asset's latest materialization; else why it did not."""
    latest = instance.fetch_materializations(check.asset_key, limit=1).records
    if not latest:
        return Verdict(False, f"{check.asset_key.to_user_string()} has never been materialized", False)
    found = latest_check_verdict(instance, check)
    if found is None:
        return Verdict(False, "never evaluated")
    run_id, evaluation = found
    target = evaluation.target_materialization_data
    if target is None or target.storage_id != latest[0].storage_id:
        return Verdict(False, f"not evaluated on the latest materialization of "
                              f"{check.asset_key.to_user_string()} (run {latest[0].run_id})")
    if evaluation.passed or evaluation.severity == dg.AssetCheckSeverity.WARN:
        return None
    return Verdict(True, f"failed in run {run_id}: {evaluation.description or 'no description'}")


def holds(instance: dg.DagsterInstance, asset: dg.AssetKey, parents: Iterable[dg.AssetKey],
          checks: Mapping[dg.AssetKey, list[dg.AssetCheckKey]]) -> list[Hold]:
    """What holds `asset` back: the failing blocking checks of its parents."""
    out = []
    for parent in parents:
        for check in checks.get(parent, []):
            why = verdict(instance, check)
            if why is not None:
                out.append(Hold(asset, check, why))
    return out


def is_lake_gate(spec: dg.AssetCheckSpec) -> bool:
    metadata = spec.metadata or {}
    return all(str(getattr(metadata.get(k), "value", metadata.get(k))) == v for k, v in LAKE_GATE.items())


def lake_table(key: dg.AssetKey) -> str:
    """The lake table of an asset whose gates judge one: its key prefix is the schema."""
    return ".".join(key.path)


def lake_holds(lake: Lake, parents_by_asset: Mapping[dg.AssetKey, Iterable[dg.AssetKey]],
               gates: Mapping[dg.AssetKey, list[dg.AssetCheckKey]]) -> list[Hold]:
    """What holds each asset back in the lake as it is now: a parent table whose version at the lake's head
    a blocking gate (of `gates`, the lake gates by asset) refused or never judged."""
    wanted = sorted({p for ps in parents_by_asset.values() for p in ps if gates.get(p)}, key=str)
    if not wanted:
        return []
    with lake.reading() as con:
        if con is None:  # no lake yet: nothing read from it
            return []
        found = {u.check: u for u in unjudged(con, lake.snapshot_id(con),
                                              {lake_table(p): [c.name for c in gates[p]] for p in wanted})}
    return [Hold(asset, check, Verdict(u.refused, u.verdict_text()))
            for asset, parents in parents_by_asset.items() for p in sorted(parents, key=str)
            for check in gates.get(p, []) if (u := found.get(check.to_user_string()))]


def lake_gates(keys: Iterable[dg.AssetKey]) -> dict[str, list[str]]:
    """{lake table: the names of its blocking lake gates} for these assets (the platform's definitions):
    what `adapters.lake.verdicts` asks of a snapshot before those tables are read at it."""
    gates = platform_lake_gates()
    return {lake_table(k): [c.name for c in gates[k]] for k in keys if gates.get(k)}


def split_gates() -> dict[str, list[str]]:
    """`lake_gates` of the tables a split is read from (`steps.datasets.SPLIT_TABLES`): what training and
    evaluation ask of the snapshot they read."""
    return lake_gates(dg.AssetKey(t.split(".")) for t in SPLIT_TABLES)


def unjudged_error(exc: UnjudgedData) -> dg.Failure:
    return dg.Failure(description=f"refused: {exc}\nTo release it: {RELEASE}.",
                      metadata={"held_by": ", ".join(u.check for u in exc.found)}, allow_retries=False)


@contextmanager
def unjudged_refused() -> Iterator[None]:
    """`with unjudged_refused():` a read the lake's verdicts refuse (`UnjudgedData`) fails the step as a hold."""
    try:
        yield
    except UnjudgedData as exc:
        raise unjudged_error(exc) from None


def held_error(found: list[Hold]) -> dg.Failure:
    lines = "\n".join(f"- {h}" for h in found)
    return dg.Failure(description=f"refused: a blocking gate did not pass what this asset would be built on\n"
                                  f"{lines}\nTo release it: {RELEASE}.",
                      metadata={"held_by": ", ".join(f"{h.check.asset_key.to_user_string()}:{h.check.name}"
                                                     for h in found)},
                      allow_retries=False)


@functools.cache
def platform_blocking_checks() -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """Every blocking check the platform defines, by asset (whatever resources a Definitions gives them)."""
    from hit_platform.defs import asset_modules

    modules = asset_modules()
    return blocking_checks(dg.load_assets_from_modules(modules), dg.load_asset_checks_from_modules(modules))


@functools.cache
def platform_lake_gates() -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """The platform's blocking checks that judge their asset's lake table, by asset."""
    from hit_platform.defs import asset_modules

    modules = asset_modules()
    return blocking_checks(dg.load_assets_from_modules(modules), dg.load_asset_checks_from_modules(modules),
                           lake_only=True)


def _parents_blocking_checks(context: dg.AssetExecutionContext) -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """The blocking checks of the parents of the assets this step builds."""
    by_asset = platform_blocking_checks()
    own = set(context.assets_def.keys)
    return {parent.asset_key: by_asset[parent.asset_key]
            for spec in context.assets_def.specs if spec.key in context.selected_asset_keys
            for parent in spec.deps if parent.asset_key in by_asset and parent.asset_key not in own}


def parents_lake_gates(context: dg.AssetExecutionContext) -> dict[str, list[str]]:
    """{lake table: its blocking lake gates} of the parents of the assets this step builds: what the step
    may read only in versions those gates passed."""
    own = set(context.assets_def.keys)
    return lake_gates({dep.asset_key for spec in context.assets_def.specs if spec.key in context.selected_asset_keys
                       for dep in spec.deps if dep.asset_key not in own})


def refuse_if_held(context: dg.AssetExecutionContext) -> None:
    """Raise `held_error` when a blocking check of a parent did not pass that parent's latest version, or
    (for an asset that reads the lake) the lake's version of a parent table."""
    checks = _parents_blocking_checks(context)
    selected = sorted(context.selected_asset_keys, key=str)
    found = [h for key in selected for h in holds(context.instance, key, sorted(checks, key=str), checks)]
    lake = getattr(context.resources, "lake", None)
    if lake is not None:
        held = {(h.asset, h.check) for h in found}
        found += [h for h in lake_holds(lake.lake(), {key: checks for key in selected}, platform_lake_gates())
                  if (h.asset, h.check) not in held]
    if found:
        raise held_error(found)


def gated(body):
    """Beneath `@dg.asset`: the body runs only when every blocking check of the asset's parents passed the
    parent's latest materialization (see the module docstring). The body's first parameter is its context."""
    first = next(iter(inspect.signature(body).parameters), None)
    if first != "context":
        raise TypeError(f"@gated {body.__qualname__}: its first parameter must be `context`, the asset's context")

    if inspect.isgeneratorfunction(body):
        @functools.wraps(body)
        def wrapped(context, *args, **kwargs):
            refuse_if_held(context)
            yield from body(context, *args, **kwargs)
    else:
        @functools.wraps(body)
        def wrapped(context, *args, **kwargs):
            refuse_if_held(context)
            return body(context, *args, **kwargs)

    wrapped.gate_policy_guarded = True
    return wrapped


def is_guarded(asset: dg.AssetsDefinition) -> bool:
    """Whether the gate policy guards this asset (`@gated`; observers are never guarded)."""
    return bool(asset.is_executable and not is_observer(asset)
                and getattr(asset.op.compute_fn.decorated_fn, "gate_policy_guarded", False))


def is_observer(asset: dg.AssetsDefinition) -> bool:
    return {s.group_name for s in asset.specs} <= OBSERVER_GROUPS
