"""What the global importance per country costs each candidate, and the training step it is part of.

    .venv/bin/python bench/bench_importance.py [--songs 32] [--step] [--catalogue 14000]

1. per family (blend under platt and isotonic too), on demo-world songs (`bench_explain.demo_songs`):
   wall and CPU seconds of `global_importance` over --songs validation songs, as `log_importances` runs it
   (one BLAS thread);
2. --step: `train_and_register` (the work of ml/candidate_models: every family, its MLflow runs, backgrounds,
   importances, the registered version) on --catalogue demo-world songs split 70/15/15, in a temp MLflow
   store, with each candidate's importance seconds: the step's cost without them is the total minus those.
Run it under `nice` on a shared machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bench_explain import demo_songs  # bench/ is the script's folder


def per_family(songs: int) -> None:
    from hit_platform.adapters.model_explanations import declare_background
    from hit_platform.domain.explain import Explainer, global_importance
    from hit_platform.domain.models.calibration import CountryCalibration
    from hit_platform.domain.models.candidates import FAMILIES, LINEAR_GRID, MLP_GRID, TREES_GRID, with_calibration

    X, Y = demo_songs(6000)
    tr, va = slice(0, 4000), slice(4000, 6000)
    fitted = {"prior": FAMILIES["prior"].build({}, 0), "linear": FAMILIES["linear"].build(dict(LINEAR_GRID[0]), 0),
              "trees": FAMILIES["trees"].build(dict(TREES_GRID[0]), 0), "mlp": FAMILIES["mlp"].build(dict(MLP_GRID[0]), 0)}
    for p in fitted.values():
        p.fit(X.iloc[tr], Y[tr])
    fitted["blend"] = FAMILIES["blend"].build({"trees_weight": 0.5}, 0, fitted)
    P = fitted["blend"].predict_proba(X.iloc[va])
    for method in ("platt", "isotonic"):
        fitted[f"blend+{method}"] = with_calibration(fitted["blend"], CountryCalibration(method).fit(P, Y[va]))
    val = X.iloc[va].reset_index(drop=True)
    for name, p in fitted.items():
        background = declare_background(X.iloc[tr], name.split("+")[0], 0)
        wall, cpu = time.perf_counter(), time.process_time()
        with threadpool_limits(limits=1, user_api="blas"):  # as log_importances runs it
            imp = global_importance(Explainer(p, background), np.arange(len(val)), val, songs, 0)
        print(f"{name:15s} {songs} songs: wall {time.perf_counter() - wall:6.2f} s  cpu "
              f"{time.process_time() - cpu:6.2f} s  top feature {imp.top_feature()}", flush=True)


def step(catalogue: int, songs: int) -> None:
    from hit_platform.adapters.model_training import TrainingData, train_and_register
    from hit_platform.adapters.tracking import Tracker
    from hit_platform.settings import Settings
    from hit_platform.steps.datasets import Dataset

    X, Y = demo_songs(catalogue)
    ids = np.array([f"s{i}" for i in range(catalogue)])
    order = np.random.default_rng(0).permutation(catalogue)
    tr, va = order[: int(.7 * catalogue)], order[int(.7 * catalogue): int(.85 * catalogue)]
    split = lambda name, rows: Dataset(name, ids[rows], X.iloc[rows].reset_index(drop=True), Y[rows], 1)  # noqa: E731
    data = TrainingData(1, 1, split("train", tr), split("validation", va), "bench", False)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(Settings(warehouse=Path(tmp) / "warehouse"))
        t0 = time.perf_counter()
        t = train_and_register(tracker, data, seed=0, families=None, workers=2, splits_data_version="bench",
                               dagster_run_id="bench", importance_songs=songs)
        total = time.perf_counter() - t0
    spent = sum(t.importance_seconds.values())
    print(f"train_and_register: {len(tr)} train, {len(va)} validation songs: {total:.1f} s, of which importances "
          f"{spent:.1f} s ({spent / total:.1%}); per candidate "
          f"{ {k: round(v, 2) for k, v in t.importance_seconds.items()} }; calibration "
          f"{ {r.family: r.params.get('calibration') for r in t.results} }", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=32)
    parser.add_argument("--step", action="store_true", help="also time train_and_register (several minutes)")
    parser.add_argument("--catalogue", type=int, default=14000)
    args = parser.parse_args()
    per_family(args.songs)
    if args.step:
        step(args.catalogue, args.songs)


if __name__ == "__main__":
    main()
