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
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from hit_platform.private_apis import latest_check_verdict

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


def _parents_blocking_checks(context: dg.AssetExecutionContext) -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """The blocking checks of the parents of the assets this step builds."""
    by_asset = platform_blocking_checks()
    own = set(context.assets_def.keys)
    return {parent.asset_key: by_asset[parent.asset_key]
            for spec in context.assets_def.specs if spec.key in context.selected_asset_keys
            for parent in spec.deps if parent.asset_key in by_asset and parent.asset_key not in own}


def refuse_if_held(context: dg.AssetExecutionContext) -> None:
    """Raise `held_error` when a blocking check of a parent did not pass that parent's latest version."""
    checks = _parents_blocking_checks(context)
    found = [h for key in sorted(context.selected_asset_keys, key=str)
             for h in holds(context.instance, key, sorted(checks, key=str), checks)]
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
