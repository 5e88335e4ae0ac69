"""`hit-platform rebuild`: a model version built again from its lake snapshot, or candidates from a past one.

    hit-platform rebuild --model-version V [--allow-code-change]
        reads what the registry says V was built from (its tags: lake snapshot, splits fingerprint, seed,
        family, git commit; its MLflow run: the parameters), refits that from exactly that data by
        DuckLake time travel and compares the prediction bytes with the registered model. The rebuild
        is the `candidates_reproducible` check's (`adapters/model_rebuild.py: reproduce`).
    hit-platform rebuild --snapshot N
        trains candidates from lake snapshot N (`HIT_TRAIN_SNAPSHOT` for one build) and sends them
        through the gates like any candidate: evaluation, promotion gate, champion. Refused when a
        blocking gate refused, or never judged, the data training would read at N (the verdicts the
        gates keep in the lake, `adapters/lake/verdicts.py`): the line names each such check.

Exit codes: 0 identical (or the build passed its gates), 1 something differs (or a gate refused),
2 a request that cannot be carried out (unknown version, expired or missing snapshot, a snapshot whose data its
gates refused or never judged, no lake, other code).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from hit_platform.settings import Settings

Out = Callable[[str], None]


class RebuildRefused(Exception):
    """A rebuild that cannot be carried out as asked; the message says why and what to do."""


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _code(commit: str, dirty: str) -> str:
    from hit_platform.adapters.tracking import UNKNOWN

    if commit == UNKNOWN:
        return "an unknown commit (git could not say)"
    state = {"true": " with uncommitted changes", "false": ", clean"}.get(dirty, " (uncommitted changes unknown)")
    return f"commit {commit[:12]}{state}"


def code_difference(recorded_commit: str, recorded_dirty: str, current: dict[str, str]) -> str | None:
    """What differs between the code a version was built from and this checkout's; None when it is the
    same code version (same commit, same dirty flag, both known)."""
    from hit_platform.adapters.tracking import UNKNOWN

    now = (current["git_commit"], current["git_dirty"])
    if (recorded_commit, recorded_dirty) == now and UNKNOWN not in now:
        return None
    return f"this checkout is {_code(*now)}, the version was built from {_code(recorded_commit, recorded_dirty)}"


def _open_lake(settings: Settings):
    """The lake, once it is sure there is one to read."""
    from hit_platform.adapters.lake.connection import Lake

    lake = Lake(settings)
    try:
        with lake.connection(read_only=True):
            pass
    except FileNotFoundError as exc:
        raise RebuildRefused(str(exc)) from None
    return lake


def rebuild_version(settings: Settings, version: str, *, allow_code_change: bool = False,
                    out: Out = print) -> int:
    """Build model version `version` again from its recorded lake snapshot and compare it with the
    registered model; print "identical" with the figures, or each difference on a line."""
    from hit_platform.adapters.tracking import ModelUnavailable, Tracker, code_version
    from hit_platform.adapters.model_rebuild import NotRebuildable, Registration, reproduce
    from hit_platform.adapters.model_training import SnapshotUnavailable, readable_snapshot

    started = time.perf_counter()
    try:
        lake = _open_lake(settings)
        tracker = Tracker(settings)
        registration = Registration.read(tracker, version)
        recipe = registration.recipe()
        code = code_difference(recipe.git_commit, recipe.git_dirty, code_version())
        if code and not allow_code_change:
            raise RebuildRefused(
                f"model version {recipe.version} cannot be rebuilt with the same code: {code}. Check out "
                f"{recipe.git_commit} to prove it reproduces, or pass --allow-code-change to rebuild it with "
                "this code and see what differs")
        with lake.connection(read_only=True) as con:
            newest = lake.snapshot_id(con)
            readable_snapshot(lake, con, recipe.lake_snapshot_id)
    except (RebuildRefused, NotRebuildable, SnapshotUnavailable) as exc:
        _err(str(exc))
        return 2
    out(f"rebuilding model version {recipe.version} of {tracker.model_name} from lake snapshot "
        f"{recipe.lake_snapshot_id} (time travel; the newest is {newest})")
    try:
        r = reproduce(lake, tracker, recipe, registration)
    except ModelUnavailable as exc:  # the registered model's artifacts are gone or broken
        _err(f"the rebuild has nothing to compare with: {exc}")
        return 2
    m = r.metadata
    if r.passed:
        out("identical")
    else:
        out(f"differs from registered version {recipe.version} ({len(r.differences)} "
            f"difference{'s' if len(r.differences) != 1 else ''}):")
        for d in r.differences:
            out(f"  - {d}")
    params = " ".join(f"{k}={v}" for k, v in sorted(recipe.params.items()))
    hashes = {m["prediction_sha256_rebuilt"], m["prediction_sha256_registered"]}
    at_training = m["prediction_sha256_at_training"]
    rows = [("snapshot", f"{recipe.lake_snapshot_id}"),
            ("family", f"{recipe.family} ({params}), seed {recipe.seed}"),
            ("rows", f"train {m['train_rows']:,}, validation {m['validation_rows']:,}"),
            ("splits", f"fingerprint {m['splits_fingerprint_rebuilt']}"
                       + (", as recorded" if m["splits_fingerprint_rebuilt"] == recipe.splits_fingerprint
                          else f", recorded {recipe.splits_fingerprint}")),
            ("probe rows", f"{m['probe_rows']}")]
    if len(hashes) == 1:
        rows.append(("sha256", f"{m['prediction_sha256_rebuilt']} (rebuilt = registered"
                               + (" = at training)" if at_training == m["prediction_sha256_rebuilt"] else ")")))
    else:
        rows += [("sha256 rebuilt", m["prediction_sha256_rebuilt"]),
                 ("sha256 registered", m["prediction_sha256_registered"])]
    if code:
        rows.append(("code", f"DIFFERENT, rebuilt anyway (--allow-code-change): {code}"))
    else:
        rows.append(("code", _code(recipe.git_commit, recipe.git_dirty) + ", as recorded"
                     + (" (which changes, is not recorded)" if recipe.git_dirty == "true" else "")))
    rows.append(("took", f"{time.perf_counter() - started:.1f} s"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        out(f"  {k:<{width}}  {v}")
    return 0 if r.passed else 1


def train_from_snapshot(settings: Settings, snapshot: int, *, instance=None, out: Out = print, progress=None) -> int:
    """Candidates trained from lake snapshot `snapshot`, then evaluation, promotion gate and champion:
    the build `hit-platform build` runs (up to the champion) with the training pinned to that snapshot."""
    import dagster as dg

    from hit_platform.adapters.tracking import Tracker
    from hit_platform.cli.build import build, report
    from hit_platform.cli.dagster_instance import persistent_instance
    from hit_platform.definitions import build_definitions
    from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
    from hit_platform.adapters.lake.verdicts import UnjudgedData
    from hit_platform.adapters.model_training import SnapshotUnavailable, trainable_snapshot
    from hit_platform.defs import gate_policy
    from hit_platform.defs.ml.training import CANDIDATES

    try:
        lake = _open_lake(settings)
        with lake.connection(read_only=True) as con:
            trainable_snapshot(lake, con, snapshot, gate_policy.split_gates())
            newest = lake.snapshot_id(con)
    except (RebuildRefused, SnapshotUnavailable, UnjudgedData) as exc:
        _err(str(exc))
        return 2
    tracker = Tracker(settings)
    before = tracker.champion_info()
    out(f"== training candidates from lake snapshot {snapshot} (the newest is {newest}), then evaluating and "
        "promoting them as `build` does")
    pinned = settings.override(training={"snapshot": snapshot})
    instance = instance or persistent_instance()
    from hit_platform.cli.progress import Progress

    progress = progress or Progress("quiet")
    with progress.bar():
        result = build(build_definitions(settings=pinned), instance, upto=[CHAMPION],
                       log_level="INFO" if progress.verbose else "CRITICAL", progress=progress)
    passed = report(result, out)

    def latest(key: dg.AssetKey) -> dict:
        event = instance.get_latest_materialization_event(key)
        return {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else {}

    cand = latest(CANDIDATES)
    if cand.get("lake_snapshot_id") != snapshot:
        out(f"no candidate was trained from snapshot {snapshot}: see the runs and gates above")
        return 1
    if CANDIDATES not in result.materialized:
        out(f"   nothing to train: the candidates from snapshot {snapshot} with these settings are up to date")
    version = str(cand["best_model_version"])
    out(f"candidate: model version {version} ({cand['best_family']}) trained from lake snapshot {snapshot}")
    ev = latest(EVALUATION)
    if str(ev.get("candidate_version")) == version:
        out(f"evaluation: {ev['decision']}")
    else:
        out("evaluation: not evaluated (see the gates above)")
    after = tracker.champion_info()
    was = before.version if before else "none"
    out(f"champion: version {after.version if after else 'none'}"
        + ("" if (after.version if after else "none") == was else f" (was {was})"))
    return 0 if passed else 1
