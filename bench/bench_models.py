"""Model families on the demo lake: quality against the generator's oracle, training cost, latency.

    .venv/bin/python bench/bench_models.py [--sizes 3000,7000,0] [--calls 2000] [--skip-sizes]

Reads the demo lake (warehouse/, read-only; another with HIT_WAREHOUSE, e.g. a zoo world's kept by
`bench_zoo.py --keep DIR`) and the generator's oracle (<warehouse>/generator/oracle.parquet: the true
per-country probability of each song, the best any model can do), then
  1. trains every family as the platform does (model_quality.train_like_the_platform: train split,
     tuned on validation)
     and prints fit seconds, validation and TEST mean ROC AUC and log loss;
  2. for the best (select_best): test mean AUC / oracle mean AUC and test log loss /
     oracle log loss on the same test songs and countries
     (targets: AUC ratio >= 0.97, log-loss ratio <= 1.05);
  3. training time and peak RSS of train_candidates at several train sizes
     (a fresh subprocess per size, which first loads train+validation
     from a pickle: "RSS before"; 0 = the whole train split);
  4. in-process prediction time of each family's pipeline for ONE song (a one-row
     DataFrame, all 72 countries; median over --calls calls; target < 1 ms) and for 10k songs.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from model_quality import load_splits, oracle_matrix, peak_rss_mb, train_like_the_platform  # bench/ is the script's folder



def child(data_path: str, n_songs: int) -> None:
    """Subprocess: train every family on the first n_songs of a shuffled train split; print JSON."""
    from hit_platform.domain.models import train_candidates

    with open(data_path, "rb") as f:
        train, val = pickle.load(f)
    rss_before = peak_rss_mb()
    idx = np.random.default_rng(0).permutation(len(train.X))[:n_songs] if n_songs else np.arange(len(train.X))
    t = time.perf_counter()
    results = train_candidates(train.X.iloc[idx].reset_index(drop=True), train.Y[idx], val.X, val.Y, seed=0)
    seconds = time.perf_counter() - t
    print(json.dumps({"songs": len(idx), "seconds": seconds, "rss_before_mb": rss_before,
                      "peak_rss_mb": peak_rss_mb(),
                      "family_seconds": {r.family: r.fit_seconds for r in results}}))


def latency(pipeline, X: pd.DataFrame, calls: int) -> tuple[float, float]:
    """(median ms of one-song calls, seconds for 10k songs)."""
    n = len(X)
    rows = [X.iloc[[i % n]] for i in range(calls)]
    for r in rows[:20]:
        pipeline.predict_proba(r)  # warm-up
    times = np.empty(calls)
    for i, r in enumerate(rows):
        t = time.perf_counter()
        pipeline.predict_proba(r)
        times[i] = time.perf_counter() - t
    big = pd.concat([X] * (10_000 // n + 1), ignore_index=True).iloc[:10_000]
    t = time.perf_counter()
    P = pipeline.predict_proba(big)
    batch = time.perf_counter() - t
    assert P.shape == (10_000, 72)
    return float(np.median(times) * 1e3), batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="3000,7000,0", help="train sizes for the scaling runs (0 = all)")
    ap.add_argument("--skip-sizes", action="store_true", help="skip the scaling runs")
    ap.add_argument("--calls", type=int, default=2000, help="one-song calls for the latency median")
    ap.add_argument("--child", nargs=2, metavar=("DATA", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))

    from hit_platform.domain.models import evaluate
    from hit_platform.settings import get_settings

    print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f} "
          "(other processes share the cores: timings are wall clock)")
    t = time.perf_counter()
    train, val, test = load_splits()
    print(f"data: train {len(train)}, validation {len(val)}, test {len(test)} songs "
          f"(loaded in {time.perf_counter() - t:.1f} s)")

    # 1. every family, as ml/candidate_models trains them (HIT_TRAIN_* families, seed, workers)
    search = train_like_the_platform(train, val)
    results, best, total = search.results, search.best, search.seconds
    print(f"\n== candidates (train_candidates, all families: {total:.1f} s wall, "
          f"peak RSS {peak_rss_mb():.0f} MB) ==")
    print(f"{'family':8s} {'fit s':>7s} {'val AUC':>8s} {'val LL':>8s} {'test AUC':>9s} {'test LL':>8s}  params")
    test_m = {}
    for r in results:
        m = evaluate(test.Y, r.pipeline.predict_proba(test.X))
        test_m[r.family] = m
        mark = "  <- best" if r is best else ""
        print(f"{r.family:8s} {r.fit_seconds:7.1f} {r.val_metrics['mean_roc_auc']:8.4f} "
              f"{r.val_metrics['mean_log_loss']:8.4f} {m['mean_roc_auc']:9.4f} {m['mean_log_loss']:8.4f}  "
              f"{json.dumps(r.params)}{mark}")
    print("search (validation):")
    for r in results:
        for s in r.search:
            print(f"  {r.family:8s} {json.dumps(s)}")

    # 2. the best against the oracle
    P_oracle, oracle_labels = oracle_matrix(get_settings().oracle, test.spotify_ids)
    differ = int((oracle_labels != test.Y).sum())
    o = evaluate(test.Y, P_oracle)
    b = test_m[best.family]
    print(f"\n== best ({best.family}) vs the oracle, {len(test)} test songs x 72 countries ==")
    print(f"(labels are the lake's; {differ} of {test.Y.size} differ from the generator's, "
          "rows refused by quality gates)")
    print(f"mean ROC AUC : model {b['mean_roc_auc']:.4f}  oracle {o['mean_roc_auc']:.4f}  "
          f"ratio {b['mean_roc_auc'] / o['mean_roc_auc']:.4f}  (target >= 0.97)")
    print(f"mean log loss: model {b['mean_log_loss']:.4f}  oracle {o['mean_log_loss']:.4f}  "
          f"ratio {b['mean_log_loss'] / o['mean_log_loss']:.4f}  (target <= 1.05)")
    print(f"mean PR AUC  : model {b['mean_pr_auc']:.4f}  oracle {o['mean_pr_auc']:.4f}")
    for f in ("prior", "linear", "trees", "mlp"):
        if f in test_m:
            m = test_m[f]
            print(f"  {f:8s} test AUC ratio {m['mean_roc_auc'] / o['mean_roc_auc']:.4f}, "
                  f"log-loss ratio {m['mean_log_loss'] / o['mean_log_loss']:.4f}")
    print(f"trees - linear, test mean AUC: {test_m['trees']['mean_roc_auc'] - test_m['linear']['mean_roc_auc']:+.4f}")

    # 3. scaling
    if not args.skip_sizes:
        print("\n== training cost vs train size (train_candidates, all families, fresh process each) ==")
        print(f"{'songs':>6s} {'wall s':>7s} {'peak RSS MB':>12s} {'RSS before MB':>14s}  per family s")
        with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
            data_path = Path(tmp) / "data.pkl"
            with open(data_path, "wb") as f:
                pickle.dump((train, val), f)
            for size in (int(s) for s in args.sizes.split(",")):
                out = subprocess.run([sys.executable, __file__, "--child", str(data_path), str(size)],
                                     check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                fams = ", ".join(f"{k} {v:.0f}" for k, v in r["family_seconds"].items())
                print(f"{r['songs']:6d} {r['seconds']:7.1f} {r['peak_rss_mb']:12.0f} {r['rss_before_mb']:14.0f}  {fams}")

    # 4. latency
    print(f"\n== prediction latency (in process; one song = one-row DataFrame, 72 countries; "
          f"median of {args.calls} calls) ==")
    for r in results:
        one_ms, batch_s = latency(r.pipeline, test.X, args.calls)
        mark = "  <- best (target < 1 ms)" if r is best else ""
        print(f"{r.family:8s} one song {one_ms * 1000:8.1f} us   10k songs {batch_s:6.2f} s{mark}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; bench process peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
