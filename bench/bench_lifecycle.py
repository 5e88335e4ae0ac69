"""The model lifecycle on real serving under load: a shadow's cost, a shadow round trip, a rollback.

    .venv/bin/python bench/bench_lifecycle.py [--duration 10] [--rounds 3] [--family linear]

1. Trains a champion (`--family`, 4,000 synthetic songs) and a challenger (the same family on 8,000
   songs of the same taste: the next data), registers both, serves the champion (`hit-platform serve`
   defaults, inference log into a temp lake).
2. Shadow cost: wrk (2 threads, 16 connections, 200 songs in turn) on /predict, alternating rounds
   without and with the challenger shadowing; requests/s and p99 of the champion's answers, and the
   ratios (target: within 10%, i.e. requests/s >= 0.9x, p99 <= 1.1x). On a busy machine these ratios
   move more than the shadow does, so first, in this process without Ray, the CPU the serving
   process's log work takes per 1,000 answers, alone and with the challenger scoring (the committer
   and the shadow scorer of `serving.main` on journal segments of one-song answers).
3. Shadow round trip with wrk running throughout: the challenger alias set and swapped in, N songs
   shadowed (HIT_SHADOW_MIN_REQUESTS), `shadow_sensor` asks, ml/shadow_evaluation + shadow_gate +
   ml/shadow_promotion run in Dagster, the challenger answers; 0 failed requests is the target.
4. Rollback under load: `hit-platform rollback` back to the first champion; seconds from command to
   its answers, 0 failed requests, and its answer bytes against what it answered before.
Needs `wrk` (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import httpx

from bench_serving import synthetic_songs  # bench/ is on sys.path: the script's folder

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker, code_version
from hit_platform.cli.rollback import rollback
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.shadow import shadow_sensor
from hit_platform.defs.resources import LakeResource, PromotionResource, ServingResource, TrackingResource
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.probabilities import answered
from hit_platform.serving import ServeConfig, process
from hit_platform.serving.inference_log import JournalCommitter, SegmentWriter, Served, encode
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import features_of, load_predictor
from hit_platform.serving.shadow import SCORE_EVERY_COMMITS, ShadowScorer
from hit_platform.settings import Settings
from hit_platform.steps.shadow_comparison import shadowed_songs
from hit_platform_tests.support.load import Wrk, WrkResult

INTEGERS = ("key", "mode", "time_signature", "duration_ms")


def register(settings: Settings, family: str, n: int) -> str:
    """Train `family` on the first n synthetic songs (one taste for all n) and register it."""
    from hit_platform.domain.models import select_best, train_candidates

    X, Y = synthetic_songs(8000, seed=0)
    Xv, Yv = synthetic_songs(1000, seed=0)
    t = time.perf_counter()
    best = select_best(train_candidates(X.head(n), Y[:n], Xv, Yv, seed=0, families=[family]))
    tracker = Tracker(settings)
    tags = {"lake_snapshot_id": "0", "dagster_run_id": "bench", "family": family, **code_version()}
    run_id, uri = tracker.log_candidate(run_name=f"bench-{family}-{n}", params=best.params, metrics={},
                                        pipeline=best.pipeline, input_example=Xv.head(3), tags=tags, figures={},
                                        tables={})
    version = str(tracker.register(uri, run_id, tags={**tags, "mlflow_run_id": run_id}).version)
    print(f"  version {version}: {family} on {n:,} songs, trained in {time.perf_counter() - t:.1f} s")
    return version


def songs(n: int) -> list[dict]:
    X, _ = synthetic_songs(n, seed=9)
    out = []
    for i, row in enumerate(X.to_numpy()):
        s = {c: (bool(v) if c == "is_explicit" else int(v) if c in INTEGERS else float(v))
             for c, v in zip(FEATURE_COLUMNS, row)}
        out.append({**s, "spotify_id": f"bench{i:017d}"})
    return out


def fmt(r: WrkResult) -> str:
    return f"{r.rps:7.0f} req/s  p50 {r.p50:5.1f} ms  p99 {r.p99:5.1f} ms"


def songs_shadowed(settings, champion: str, challenger: str) -> int:
    with Lake(settings).connection(read_only=True) as con:
        return shadowed_songs(con, champion, challenger)


def failed(r: WrkResult) -> int:
    return r.non2xx + r.socket_error_total



def shadow_cpu(settings: Settings, champion: str, challenger: str, *, answers: int = 7_500,
               commits: int = 12) -> tuple[float, float]:
    """CPU of the serving process's log work in ms per 1,000 answers: alone, and with `challenger`
    scoring. `answers` one-song answers a commit (5 s at 1,500 requests/s), each condition on a lake
    of its own; the scorer writes every SCORE_EVERY_COMMITS commits, as in the serving process."""
    tracker = Tracker(settings)
    shadow = load_predictor(tracker, challenger)
    X = features_of(songs(200))
    P = answered(load_predictor(tracker, champion).predict(X))
    spent = []
    for scoring in (False, True):
        tmp = Path(tempfile.mkdtemp(prefix="bench_shadow_cpu_"))
        lake, journal = Lake(Settings(warehouse=tmp / "warehouse")), tmp / "journal"
        scorer = ShadowScorer(lake)
        committer = JournalCommitter(lake, journal, on_committed=scorer.take)
        scorer.set_challenger(shadow if scoring else None)
        committer.commit()  # the tables and the connection, as the serving process has them before load
        cpu = 0.0
        for r in range(commits):
            writer, now = SegmentWriter(journal, fsync=False), datetime.now(timezone.utc)
            for i in range(answers):
                j = i % len(X)
                writer.append(encode(Served(str(uuid.uuid4()), now, "/predict", 200, 1.0, champion, 5, X[j:j + 1],
                                            P[j:j + 1], [(f"bench{j:017d}", None, None, None)])))
            writer.seal()
            t = time.process_time()
            committer.commit()
            if (r + 1) % SCORE_EVERY_COMMITS == 0:
                scorer.score()
            cpu += time.process_time() - t
        committer.close()
        scorer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        spent.append(cpu * 1e6 / (answers * commits))
    return spent[0], spent[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds without and with a shadow")
    ap.add_argument("--family", default="linear", help="hit_platform.domain.models family of both versions")
    ap.add_argument("--min-requests", type=int, default=2000, help="HIT_SHADOW_MIN_REQUESTS of the round trip")
    ap.add_argument("--cost-only", action="store_true", help="only the shadow's cost (section 2)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="bench_lifecycle_"))
    settings = Settings(warehouse=tmp / "warehouse")
    tracker = Tracker(settings)
    print("models:")
    v1 = register(settings, args.family, 4000)
    v2 = register(settings, args.family, 8000)
    tracker.promote(v1)
    alone_cpu, shadow_cpu_ms = shadow_cpu(settings, v1, v2)
    config = ServeConfig(port=free_port())
    endpoint = process.start(settings, config)
    body = songs(200)
    try:
        Wrk(endpoint + "/predict", body, 3).result()  # warm-up

        def shadowing(on: bool) -> None:
            if on:
                tracker.set_challenger(v2)
            else:
                tracker.clear_challenger()
            process.update(settings, config)

        # -- 2. what a shadow costs the champion's answers -------------------------------------------
        plain, shadowed = [], []
        for _ in range(args.rounds):
            for on, runs in ((False, plain), (True, shadowed)):
                shadowing(on)
                runs.append(Wrk(endpoint + "/predict", body, args.duration).result())
        shadowing(False)
        print(f"\n/predict, wrk -t2 -c16 -d{args.duration}s, 200 songs in turn, {args.rounds} alternating rounds")
        for i, (a, b) in enumerate(zip(plain, shadowed)):
            print(f"  round {i + 1}: champion alone {fmt(a)} | with challenger {v2} shadowing {fmt(b)}")
        rps = statistics.median(b.rps / a.rps for a, b in zip(plain, shadowed))
        p99 = statistics.median(b.p99 / a.p99 for a, b in zip(plain, shadowed))
        print(f"  ratio requests/s shadow/alone: {rps:.2f} median of rounds (target >= 0.90)")
        print(f"  ratio p99 shadow/alone       : {p99:.2f} median of rounds (target <= 1.10)")
        print(f"  the serving process's log work, in process, 12 commits of 7,500 answers: {alone_cpu:.1f} ms CPU per "
              f"1,000 answers alone, {shadow_cpu_ms:.1f} ms with the challenger scoring "
              f"(+{shadow_cpu_ms - alone_cpu:.1f} ms)")
        print(f"  failed requests: {sum(failed(r) for r in plain + shadowed)}")
        if args.cost_only:
            return

        # -- 3. the round trip under load -----------------------------------------------------------
        promotion = PromotionResource(mode="shadow", shadow_json=json.dumps(
            {"min_requests": args.min_requests}))
        lake = LakeResource(warehouse=str(settings.warehouse))
        tracking = TrackingResource(warehouse=str(settings.warehouse))
        serving = ServingResource(values_json=json.dumps({"port": config.port}))
        defs = build_definitions(lake, tracking=tracking, serving_config=serving, promotion=promotion)
        instance = dg.DagsterInstance.ephemeral()
        load = Wrk(endpoint + "/predict", body, 40)
        t0 = time.perf_counter()
        shadowing(True)
        loaded = time.perf_counter() - t0
        while True:
            with dg.build_sensor_context(instance=instance) as context:
                request = shadow_sensor(context, lake=lake, tracking=tracking, promotion=promotion)
            if isinstance(request, dg.RunRequest):
                break
            time.sleep(0.5)
        asked = time.perf_counter() - t0
        run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=list(request.asset_selection), tags=request.tags,
            raise_on_error=False)
        done = time.perf_counter() - t0
        meta = {k: v.value for k, v in instance.get_latest_materialization_event(
            dg.AssetKey(["ml", "shadow_evaluation"])).asset_materialization.metadata.items()}
        answering = httpx.get(endpoint + "/healthz", timeout=30).json()["model_version"]
        trip = load.result()
        print(f"\nshadow round trip, wrk -t2 -c16 running throughout ({trip.requests:,} requests)")
        print(f"  challenger {v2} shadowing after {loaded:.1f} s; {args.min_requests:,} shadowed songs and the "
              f"sensor's request after {asked:.1f} s")
        print(f"  shadow_gate: {meta['decision']}")
        print(f"  run {'succeeded' if run.success else 'FAILED'}; version {answering} answering {done:.1f} s after "
              f"the alias was set; failed requests during the trip: {failed(trip)} (target 0)")
        print(f"  shadowed songs in ops.shadow_log: {songs_shadowed(settings, v1, v2):,}")

        # -- 4. rollback under load ----------------------------------------------------------------
        probe = body[:20]

        def answers() -> list[bytes]:
            with httpx.Client(base_url=endpoint, timeout=30) as c:
                out = []
                for s in probe:
                    r = c.post("/predict", json=s)
                    out.append(r.content.replace(r.json()["request_id"].encode(), b""))
                return out

        tracker.promote(v1)  # v1's answers before, then back to v2 to roll back from it
        process.update(settings, config)
        before = answers()
        tracker.promote(v2)
        process.update(settings, config)
        load = Wrk(endpoint + "/predict", body, 20)
        time.sleep(3)
        t = time.perf_counter()
        result = rollback(settings, reason="bench: rollback under load", to=v1)
        seconds = time.perf_counter() - t
        back = load.result()
        same = answers() == before
        print(f"\nrollback {result.from_version} -> {result.to_version} under wrk -t2 -c16: version {v1} answering "
              f"{seconds:.1f} s after the command; failed requests {failed(back)} of {back.requests:,}; answers "
              f"{'byte-identical to' if same else 'DIFFERENT from'} its earlier answers ({len(probe)} songs)")
    finally:
        process.stop(settings, config)
    if args.cost_only:
        return
    shadowed_total = songs_shadowed(settings, v1, v2)
    print(f"\nafter stop: {shadowed_total:,} songs in ops.shadow_log for champion {v1} / challenger {v2}; "
          f"mean |difference| {meta.get('mean_abs_diff', float('nan')):.4f}, top-5 overlap "
          f"{meta.get('top5_overlap', float('nan')):.3f}")


if __name__ == "__main__":
    main()
