"""Exact attributions, the library alone: cost per family for one song x 72 countries, and a batch.

    .venv/bin/python bench/bench_explain.py [--songs 6000] [--calls 50] [--batch 10000] [--mlp-sizes 8,16,32,64]

Trains each family the way the platform does (its grid's first point; the MLP at both grid widths)
on songs of the generator's demo world, labels drawn from the world's true probabilities, then:
  1. one song x 72 countries: p50 / p99 ms of `Explainer.explain` over --calls songs (the explainer
     prepared once, as serving will hold it), per family, blend under platt and under isotonic
     (target: well under 50 ms, isotonic aside);
  2. the MLP's enumeration at several background sizes (what FAMILY_BACKGROUND["mlp"] was chosen from);
  3. songs/s of `explain` on a batch of --batch songs per family (the enumerating families, mlp and blend,
     on --enumerating-batch songs: their cost per song is flat; isotonic on 10 songs);
  4. additivity: the largest |base + sum - served value| seen in 3;
  5. served (unless --no-served; --served-only skips 2-4): the demo champion's family (blend of trees and
     mlp32; its calibration is chosen per run on validation: none, temperature or platt in the demo runs
     seen; any of them is one affine map of the log-odds per country: platt is served here, trained above)
     logged with its declared background and served by `hit-platform serve`'s process on 127.0.0.1 (or the
     champion of --tracking-uri, which must have a background):
     `/explain` one song x 72 countries p50/p99 under `wrk -c4` (target: p99 under 50 ms), and `/predict`
     under the same wrk before /explain was ever called, after it was used, and while one /explain client
     runs beside it (two cores shared: that one is CPU sharing, not work added to /predict), in alternating
     rounds, with the ratios. Needs `wrk`.
Run it under `nice` on a shared machine; it prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import Explainer, background_sample
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.calibration import CountryCalibration
from hit_platform.domain.models.candidates import FAMILIES, LINEAR_GRID, MLP_GRID, TREES_GRID, with_calibration
from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.songs import make_catalogue
from hit_platform.generator.taste import ALL_CHARTS
from hit_platform.generator.true_oracle import build_oracle


def demo_songs(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:  # the generator's config wants a folder; nothing is written
        cfg = GeneratorConfig(seed=seed, songs=n, out_dir=Path(tmp))
    X = make_catalogue(cfg.seed, cfg.songs).matrix()
    world = build_oracle(cfg, X).world_probabilities(X)[:, [ALL_CHARTS.index(c) for c in COUNTRIES]]
    Y = np.random.default_rng(seed + 1).random(world.shape) < world
    return pd.DataFrame(X, columns=list(FEATURE_COLUMNS)), Y


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms"


def train_models(X: pd.DataFrame, Y: np.ndarray, calibrations=("platt", "isotonic")) -> tuple[dict, pd.DataFrame]:
    """Each family trained the platform's way on the first 70% of the songs ({name: pipeline}: prior,
    linear, trees, mlp at each grid width, blend of trees and mlp32, and that blend under each of
    `calibrations` fitted on the other 30%, "blend+platt"...), and the training songs."""
    n_train = int(0.7 * len(X))
    train_X, train_Y, val_X, val_Y = X.iloc[:n_train], Y[:n_train], X.iloc[n_train:], Y[n_train:]
    t = time.perf_counter()
    models = {
        "prior": FAMILIES["prior"].build({}, 0).fit(train_X, train_Y),
        "linear": FAMILIES["linear"].build(dict(LINEAR_GRID[1]), 0).fit(train_X, train_Y),
        "trees": FAMILIES["trees"].build(dict(TREES_GRID[0]), 0).fit(train_X, train_Y),
    }
    for point in MLP_GRID:
        models[f"mlp{point['hidden']}"] = FAMILIES["mlp"].build(dict(point), 0).fit(train_X, train_Y)
    blend = FAMILIES["blend"].build({"trees_weight": 0.5}, 0, {"trees": models["trees"], "mlp": models["mlp32"]})
    P_val = blend.predict_proba(val_X)
    models["blend"] = blend
    for method in calibrations:
        models[f"blend+{method}"] = with_calibration(blend, CountryCalibration(method).fit(P_val, val_Y))
    trees = models["trees"][-1]
    print(f"trained on {n_train} demo-world songs in {time.perf_counter() - t:.0f} s: trees {trees.n_iter_} rounds, "
          f"{sum(len(p[0].nodes) for p in trees.hgb_._predictors)} nodes")
    return models, train_X


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=6000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--mlp-sizes", default="8,16,32,64")
    parser.add_argument("--enumerating-batch", type=int, default=1000,
                        help="songs in the batch of a family that enumerates coalitions (mlp, blend): their "
                             "cost per song is flat, so songs/s on fewer songs is the same")
    parser.add_argument("--no-served", action="store_true", help="skip section 5 (the served route)")
    parser.add_argument("--served-only", action="store_true", help="sections 1 and 5 only")
    parser.add_argument("--tracking-uri", help="section 5 serves this MLflow store's champion instead")
    parser.add_argument("--duration", type=int, default=10, help="section 5: seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="section 5: alternating rounds")
    args = parser.parse_args()

    X, Y = demo_songs(args.songs)
    models, train_X = train_models(X, Y)

    background = background_sample(train_X, 64, seed=0)
    rng = np.random.default_rng(1)
    songs = X.iloc[rng.permutation(len(X))[:args.calls]].to_numpy()

    print(f"\n1. one song x 72 countries, {args.calls} songs: wall (and CPU) time of Explainer.explain, after "
          f"its one-off setup")
    explainers = {}
    for name, model in models.items():
        calls = args.calls if "isotonic" not in name else min(args.calls, 5)
        t = time.perf_counter()
        explainers[name] = explainer = Explainer(model, background)
        setup = time.perf_counter() - t
        explainer.explain(songs[:1])  # warm
        wall, cpu = [], []
        for i in range(calls):
            t, c = time.perf_counter(), time.process_time()
            explainer.explain(songs[i:i + 1])
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(f"  {name:15s} {percentiles(wall)}  (CPU p50 {np.median(cpu) * 1000:7.2f} ms)  setup {setup * 1000:6.0f} ms  "
              f"background {explainer.size}{'' if explainer.maps.affine.all() else f'/{explainer.enumerated_size}'}"
              f"  ({calls} songs)")

    if args.served_only:
        return served_route(args, models["blend+platt"], train_X, songs)

    print("\n2. the MLP's enumeration by background size (one song x 72 countries)")
    for name in [m for m in models if m.startswith("mlp")]:
        for size in [int(s) for s in args.mlp_sizes.split(",")]:
            explainer = Explainer(models[name], background, size=size)
            wall, cpu = [], []
            for i in range(min(args.calls, 20)):
                t, c = time.perf_counter(), time.process_time()
                explainer.explain(songs[i:i + 1])
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            print(f"  {name:6s} B={size:3d}  {percentiles(wall)}  (CPU p50 {np.median(cpu) * 1000:7.2f} ms)")

    print(f"\n3./4. batch of {args.batch} songs")
    batch = X.iloc[np.random.default_rng(2).integers(0, len(X), args.batch)].reset_index(drop=True)
    for name, model in models.items():
        n = 10 if "isotonic" in name else \
            min(args.batch, args.enumerating_batch) if name.startswith(("mlp", "blend")) else args.batch
        t = time.perf_counter()
        a = explainers[name].explain(batch.iloc[:n])
        seconds = time.perf_counter() - t
        print(f"  {name:15s} {n / seconds:9.1f} songs/s  ({n} songs, {seconds:.1f} s)  max |base + sum - value| "
              f"{a.max_gap:.2e}")
    if not args.no_served:
        served_route(args, models["blend+platt"], train_X, songs)


def api_song(x: np.ndarray) -> dict:
    """A feature row as the API takes it (is_explicit a JSON boolean)."""
    song = {c: float(v) for c, v in zip(FEATURE_COLUMNS, x)}
    song["is_explicit"] = bool(song["is_explicit"])
    return song


def served_route(args, model, train_X: pd.DataFrame, songs: np.ndarray) -> None:
    """Section 5: /explain and /predict of the serving process under wrk -c4."""
    import os
    import shutil

    import httpx

    from hit_platform.adapters.model_explanations import background_tags, declare_background, log_background
    from hit_platform.adapters.tracking import Tracker
    from hit_platform.serving import process
    from hit_platform.serving.loopback import free_port
    from hit_platform.settings import ServeConfig, Settings
    from hit_platform_tests.support.load import Wrk, wrk

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    settings = Settings(warehouse=Path(tempfile.mkdtemp(prefix="bench_explain_")) / "warehouse",
                        mlflow={"tracking_uri": args.tracking_uri})
    tracker = Tracker(settings)
    if not args.tracking_uri:
        tags = {"lake_snapshot_id": "0", "dagster_run_id": "bench", "family": "blend"}
        run_id, uri = tracker.log_candidate(run_name="bench-explain-blend", params={}, metrics={}, pipeline=model,
                                            input_example=train_X.head(3), tags=tags, figures={}, tables={})
        background = declare_background(train_X, "blend", 0)
        log_background(tracker, run_id, background)
        tracker.promote(tracker.register(uri, run_id, tags={**tags, **background_tags(background)}).version)
    config = ServeConfig(port=free_port())
    endpoint = process.start(settings, config)
    song = api_song(songs[0])
    d, c = args.duration, 4
    try:
        first = httpx.post(f"{endpoint}/explain", json=song, timeout=60)
        first.raise_for_status()
        print(f"\n5. served: model version {first.json()['model_version']} ({first.json()['family']}) at {endpoint}, "
              f"{config.replicas} replica(s); wrk -t2 -c{c} -d{d}s, {args.rounds} alternating rounds; load average "
              f"before {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        answer = first.json()
        answer["countries"] = {c: answer["countries"][c] for c in ("BR", "CZ")}  # trimmed, for the README
        print(f"  curl -s -X POST '{endpoint}/explain?country=BR&country=CZ' -H 'content-type: application/json' "
              f"-d '{json.dumps(song)}'\n  {json.dumps(answer)}")
        runs = {"predict, before any /explain": [], "explain (72 countries)": [], "predict, after /explain was used":
                [], "predict, one /explain client beside it": []}
        # a second serving process of the same champion (its own warehouse) whose /explain is never called
        fresh, fresh_settings = ServeConfig(port=free_port()), Settings(
            warehouse=settings.warehouse.parent / "before", mlflow={"tracking_uri": settings.tracking_uri})
        fresh_endpoint = process.start(fresh_settings, fresh)
        try:
            wrk(f"{fresh_endpoint}/predict", song, 3, connections=c)
            wrk(f"{endpoint}/predict", song, 3, connections=c)
            wrk(f"{endpoint}/explain", song, 3, connections=c)
            for _ in range(args.rounds):
                runs["predict, before any /explain"].append(wrk(f"{fresh_endpoint}/predict", song, d, connections=c))
                runs["explain (72 countries)"].append(wrk(f"{endpoint}/explain", song, d, connections=c))
                runs["predict, after /explain was used"].append(wrk(f"{endpoint}/predict", song, d, connections=c))
                beside = Wrk(f"{endpoint}/explain", song, d, threads=1, connections=1)
                runs["predict, one /explain client beside it"].append(wrk(f"{endpoint}/predict", song, d,
                                                                         connections=c))
                beside.result()
        finally:
            process.stop(fresh_settings, fresh)
        for label, rs in runs.items():
            for r in rs:
                print(f"  {label:40s} {r.line()}")
        med = {label: (float(np.median([r.p50 for r in rs])), float(np.median([r.p99 for r in rs])))
               for label, rs in runs.items()}
        base = med["predict, before any /explain"]
        for label in ("predict, after /explain was used", "predict, one /explain client beside it"):
            print(f"  {label}: p50 {med[label][0] / base[0]:.2f}x, p99 {med[label][1] / base[1]:.2f}x of before")
        p50, p99 = med["explain (72 countries)"]
        print(f"  /explain one song x 72 countries: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 50 ms: "
              f"{'met' if p99 < 50 else 'NOT met'}); load average after {os.getloadavg()[0]:.1f}")
    finally:
        process.stop(settings, config)


if __name__ == "__main__":
    main()
