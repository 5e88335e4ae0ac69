"""The gate policy: no asset is built on a parent that its blocking checks did not pass.

Dagster stops the children of a failed blocking check only inside the run that
evaluated it. A later run that leaves the check out (a second `hit-platform
build`, `dagster asset materialize --select ml/champion_model`, the UI's
"Materialize" on one asset) would build on what the gate refused. So the rule
is kept by every asset itself, whatever the run: before its body runs, each
parent's blocking checks must have passed *for that parent's latest
materialization*. A failed, missing, unfinished or out-of-date evaluation holds
the asset, with an error that names the check, its verdict and how to release
it. `definitions.py` applies this to every asset at once; `cli/build.py` asks the
same question up front to report what it leaves unbuilt.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg
# Private: Dagster exports no public type for a check evaluation's status (the instance API returns it).
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

# Monitors and the dashboard report on what the gates judged (a refused candidate, failing labels) and
# build nothing that trains or serves on it: the policy does not hold them.
OBSERVER_GROUPS = frozenset({"ops"})

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


def blocking_checks(assets: Iterable, checks: Iterable) -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """Every asset that has blocking checks -> those checks (ERROR severity blocks; WARN never does)."""
    out: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for d in [*assets, *checks]:
        for spec in getattr(d, "check_specs", []):
            if spec.blocking:
                out.setdefault(spec.asset_key, []).append(spec.key)
    return out


def verdict(instance: dg.DagsterInstance, check: dg.AssetCheckKey) -> Verdict | None:
    """None when `check` passed for its asset's latest materialization; else why it did not."""
    latest = instance.fetch_materializations(check.asset_key, limit=1).records
    if not latest:
        return Verdict(False, f"{check.asset_key.to_user_string()} has never been materialized", False)
    # The latest *finished* evaluation: a run that planned the check but skipped it (its asset made no
    # new version) leaves a planned record that judges nothing. No public instance method filters by
    # status; the event log storage's does.
    done = instance.event_log_storage.get_asset_check_execution_history(
        check, limit=1, status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED})
    evaluation = done[0].event.asset_check_evaluation if done and done[0].event else None
    if evaluation is None:
        return Verdict(False, "never evaluated")
    record = done[0]
    target = evaluation.target_materialization_data
    if target is None or target.storage_id != latest[0].storage_id:
        return Verdict(False, f"not evaluated on the latest materialization of "
                              f"{check.asset_key.to_user_string()} (run {latest[0].run_id})")
    if evaluation.passed or evaluation.severity == dg.AssetCheckSeverity.WARN:
        return None
    return Verdict(True, f"failed in run {record.run_id}: {evaluation.description or 'no description'}")


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


def held_error(found: list[Hold]) -> dg.Failure:
    lines = "\n".join(f"- {h}" for h in found)
    return dg.Failure(description=f"refused: a blocking gate did not pass what this asset would be built on\n"
                                  f"{lines}\nTo release it: {RELEASE}.",
                      metadata={"held_by": ", ".join(f"{h.check.asset_key.to_user_string()}:{h.check.name}"
                                                     for h in found)},
                      allow_retries=False)


def guard(asset: dg.AssetsDefinition, checks: Mapping[dg.AssetKey, list[dg.AssetCheckKey]]) -> dg.AssetsDefinition:
    """The same asset, refusing to run while any parent's blocking check has not passed its latest version.

    Dagster has no public hook that runs before an asset's body in every run, so the body is wrapped:
    `OpDefinition.dagster_internal_init` and `AssetsDefinition.dagster_internal_init` rebuild the op and
    the asset with everything else unchanged (specs, resources, code versions).
    """
    gated_parents = {key: [p for p in deps if p in checks and p not in asset.keys]
                     for key, deps in asset.asset_deps.items()}
    if not any(gated_parents.values()):
        return asset
    op = asset.op
    body = op.compute_fn.decorated_fn

    def refuse_if_held() -> None:
        context = dg.AssetExecutionContext.get()
        parents = {p for key in context.selected_asset_keys for p in gated_parents.get(key, [])}
        found = [h for key in sorted(context.selected_asset_keys, key=str)
                 for h in holds(context.instance, key, sorted(parents, key=str), checks)]
        if found:
            raise held_error(found)

    if inspect.isgeneratorfunction(body):
        @functools.wraps(body)
        def wrapped(*args, **kwargs):
            refuse_if_held()
            yield from body(*args, **kwargs)
    else:
        @functools.wraps(body)
        def wrapped(*args, **kwargs):
            refuse_if_held()
            return body(*args, **kwargs)

    wrapped.gate_policy_guarded = True
    new_op = dg.OpDefinition.dagster_internal_init(
        name=op.name, ins={i.name: dg.In.from_definition(i) for i in op.input_defs},
        outs={o.name: dg.Out.from_definition(o) for o in op.output_defs},
        compute_fn=op.compute_fn._replace(decorated_fn=wrapped), config_schema=op.config_schema,
        description=op.description, tags=op.tags, required_resource_keys=op.required_resource_keys,
        code_version=op._version,  # noqa: SLF001 (no public getter)
        retry_policy=op.retry_policy, version=None, pool=op.pool)
    return dg.AssetsDefinition.dagster_internal_init(**{**asset.get_attributes_dict(), "node_def": new_op})


def is_guarded(asset: dg.AssetsDefinition) -> bool:
    """Whether the gate policy guards this asset (observers and assets without gated parents are not)."""
    return bool(asset.is_executable and getattr(asset.op.compute_fn.decorated_fn, "gate_policy_guarded", False))


def is_observer(asset: dg.AssetsDefinition) -> bool:
    return {s.group_name for s in asset.specs} <= OBSERVER_GROUPS


def apply(assets: list, checks: list) -> list:
    """Every executable asset guarded by its parents' blocking checks (see the module docstring), but
    for the observers (OBSERVER_GROUPS)."""
    by_parent = blocking_checks(assets, checks)
    return [guard(a, by_parent)
            if isinstance(a, dg.AssetsDefinition) and a.is_executable
            and not is_observer(a) else a
            for a in assets]
