"""`hit-platform alerts`, `monitor`, `rollback` and `rebuild`: keeping watch on the champion and
putting it right, and the champion's summary the demo shows."""

from __future__ import annotations

import argparse
import json
import sys

from hit_platform.settings import Settings


def print_champion(settings: Settings) -> None:
    """The champion's version and run, its test metrics against the baseline and the oracle, and how to
    open it in MLflow."""
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.lake.tables import evaluations
    from hit_platform.adapters.tracking import Tracker

    tracker = Tracker(settings)
    info = tracker.champion_info()
    if info is None:
        print("\nno champion model yet")
        return
    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        judged = evaluations(con, candidate_version=info.version, promoted_only=True)
    print(f"\nchampion: {info.name} version {info.version} (MLflow run {info.run_id})")
    if judged:
        e = judged[-1]
        print(f"  family {e.candidate_family}; on {e.test_songs:,} test songs: mean ROC AUC "
              f"{e.candidate_mean_roc_auc:.4f} (baseline {e.baseline_mean_roc_auc:.4f}), "
              f"mean log loss {e.candidate_mean_log_loss:.4f}")
        if e.oracle_mean_roc_auc is not None:
            print(f"  vs the oracle (the best possible): AUC {e.candidate_mean_roc_auc:.4f} / "
                  f"{e.oracle_mean_roc_auc:.4f} = {e.auc_ratio_to_oracle:.3f}, "
                  f"log loss ratio {e.log_loss_ratio_to_oracle:.3f}")
    store = settings.tracking_uri
    print(f"  open it in MLflow: .venv/bin/mlflow ui --backend-store-uri {store} "
          f"--default-artifact-root {settings.mlflow_artifacts} --host 127.0.0.1 --port 5000")


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.cli.rebuild import rebuild_version, train_from_snapshot

    if args.snapshot is not None:
        return train_from_snapshot(settings, args.snapshot, out=args.progress.say, progress=args.progress)
    return rebuild_version(settings, args.model_version, allow_code_change=args.allow_code_change)


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.alerts import list_alerts
    from hit_platform.adapters.lake.connection import Lake

    alerts = list_alerts(Lake(settings), limit=args.limit, kind=args.kind)
    if not alerts:
        print("no alerts")
    for a in alerts:
        print(f"{a['raised_at']:%Y-%m-%d %H:%M:%S}  {a['severity']:<7}  {a['kind']:<15}  {a['where']}  "
              f"{a['what']}" + (f"  (run {a['dagster_run_id']})" if a["dagster_run_id"] else ""))
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.cli.dagster_instance import persistent_instance
    from hit_platform.cli.rollback import rollback
    from hit_platform.serving.process import ServingError

    def waiting(holder: str) -> None:
        print(f"another alias move is under way (process {holder}): waiting for it to finish", file=sys.stderr,
              flush=True)

    try:  # a refusal (RollbackRefused) is said in one line by `main`
        result = rollback(settings, reason=args.reason, to=args.to, instance=persistent_instance(), on_wait=waiting)
    except ServingError as exc:  # the alias moved and is recorded; the running process did not follow
        print(f"rolled back in the registry, but serving did not follow: {exc}", file=sys.stderr)
        return 1
    for e in result.finished:  # what a killed command or run had left half done
        print(f"finished first: {e.kind} {e.from_version or 'none'} -> {e.to_version} by {e.who}: {e.reason}")
    if result.event is None:
        print(result.serving)
        return 0
    e = result.event
    print(f"rolled back: champion version {result.from_version} -> {result.to_version} by {e.who} "
          f"({e.event_at:%Y-%m-%d %H:%M:%S} UTC): {e.reason}")
    print(f"serving: {result.serving}")
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.steps.performance_estimates import latest

    with Lake(settings).reading() as con:
        df = latest(con, source=args.source, metric=args.metric) if con else pd.DataFrame()
    if df.empty:
        print("no performance estimates yet: ops/performance_estimate makes them (it runs with the monitors: "
              "`hit-platform build`, or `dagster dev`'s automation)")
        return 0
    df = df.head(args.limit) if args.limit else df
    if args.json:
        for r in df.to_dict("records"):
            print(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else None if v != v else v)
                              for k, v in r.items()}, default=str))
        return 0
    first = df.iloc[0]
    name = "ROC AUC" if args.metric == "roc_auc" else "log loss"
    span = ("" if first["source"] == "batch" else
            f" of {first['window_start']:%Y-%m-%d %H:%M} - {first['window_end']:%Y-%m-%d %H:%M} UTC")
    print(f"estimated {name} of model version {first['model_version']} without labels: {first['songs']:,} "
          f"{first['source']} songs{span} (estimated {first['estimated_at']:%Y-%m-%d %H:%M:%S} UTC), worst first")
    print(f"{'country':<8} {'estimate':>8}  {'90% interval':<16} {'test':>6} {'change':>7}  realized (songs)")
    for r in df.itertuples():
        real = "" if r.realized is None or r.realized != r.realized else f"{r.realized:.3f} ({int(r.realized_songs):,})"
        print(f"{r.country:<8} {r.estimate:8.3f}  [{r.lower:.3f}, {r.upper:.3f}]   {r.reference:6.3f} "
              f"{r.estimate - r.reference:+7.3f}  {real}")
    return 0
