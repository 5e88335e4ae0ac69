"""Label-free performance estimation proven against the generator's hidden truth (issue #16, drills).

    .venv/bin/python bench/bench_monitoring.py [--songs 30000] [--served 3000] [--family mlp]

One generated world (all 72 countries); its songs split into train / validation / a pool of
songs that will be "served". A model is trained (train_candidates), calibrated per country on
validation (choose_calibration), then:
  1. calibration: per-country ECE on validation before and after (mean, worst country) and the
     log-loss ratio to the oracle (the world's true probabilities) before and after;
  2. covariate shift: a week of served songs drawn from the pool with weights that favour
     energetic, danceable songs (the countries' tastes unchanged). The estimate (no labels) is
     compared with the realized ROC AUC on those songs' sampled labels, per country with at
     least --min-positives positives: the share within +-0.03 (target >= 90%), the coverage of
     the 90% intervals, and the five worst countries;
  3. no shift: a week drawn uniformly from the pool; countries whose estimated AUC falls more
     than 0.05 below the model's validation AUC (the monitor's rule) should be none.
The concept-shift drill (one region's taste changes: invisible to the estimate, caught by the
delayed-label monitor) needs the generator's taste shift and is not here yet.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path
import tempfile

import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models import select_best, train_candidates
from hit_platform.domain.models.calibration import choose_calibration, expected_calibration_error, mean_log_loss
from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.performance_estimate import estimate
from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.dump import hidden_truth
from hit_platform.generator.oracle import conditional_probability

MAX_AUC_DROP = 0.05


def world(songs: int, seed: int):
    cfg = GeneratorConfig(out_dir=Path(tempfile.gettempdir()) / "bench_monitoring" / "landing", seed=seed, songs=songs,
                          history_days=120, increments=0, start_date=date(2026, 1, 1))
    truth = hidden_truth(cfg)
    cat, keep = truth.catalogue, truth.in_dump
    X = pd.DataFrame({**{c: cat.features[c] for c in FEATURE_COLUMNS if c in cat.features},
                      "is_explicit": cat.is_explicit.astype(float), "duration_ms": cat.duration_ms.astype(float)})
    X = X[list(FEATURE_COLUMNS)].astype(float)[keep].reset_index(drop=True)
    Y = truth.labels[keep][:, 1:]
    Q = conditional_probability(truth.prob)[keep][:, 1:]
    return X, Y, Q


def compare(name: str, P: np.ndarray, Y: np.ndarray, ece: np.ndarray, min_positives: int) -> dict:
    e = estimate(P, calibration_error=ece, level=0.9)
    real = np.array(list(evaluate(Y, P)["roc_auc"].values()))
    enough = Y.sum(axis=0) >= min_positives
    err = np.abs(e.roc_auc - real)
    covered = (real >= e.roc_auc_lower) & (real <= e.roc_auc_upper)
    print(f"\n{name}: {len(P):,} served songs, {int(enough.sum())} countries with >= {min_positives} positives")
    print(f"  estimated vs realized ROC AUC: within +-0.03 in {(err[enough] <= 0.03).mean():.0%} of them "
          f"(target >= 90%), mean |error| {err[enough].mean():.4f}")
    print(f"  90% intervals cover the realized AUC in {covered[enough].mean():.0%} of them")
    worst = np.argsort(-np.where(enough, err, -1))[:5]
    for j in worst:
        print(f"    {COUNTRIES[j]}  estimate {e.roc_auc[j]:.3f} [{e.roc_auc_lower[j]:.3f}, {e.roc_auc_upper[j]:.3f}]  "
              f"realized {real[j]:.3f}  ({int(Y[:, j].sum())} positives)")
    return {"estimate": e, "realized": real, "enough": enough}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=30_000)
    ap.add_argument("--served", type=int, default=3_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--family", default="mlp")
    ap.add_argument("--min-positives", type=int, default=30)
    args = ap.parse_args()
    t = time.perf_counter()
    X, Y, Q = world(args.songs, args.seed)
    rng = np.random.default_rng(args.seed)
    part = rng.permutation(len(X))
    n = len(X)
    train, val, pool = part[: int(0.5 * n)], part[int(0.5 * n): int(0.7 * n)], part[int(0.7 * n):]
    print(f"world: {n:,} songs in the dump ({time.perf_counter() - t:.1f} s); train {len(train):,}, "
          f"validation {len(val):,}, pool to serve {len(pool):,}")
    t = time.perf_counter()
    best = select_best(train_candidates(X.iloc[train], Y[train], X.iloc[val], Y[val], seed=0,
                                        families=[args.family]))
    print(f"trained {best.family} in {time.perf_counter() - t:.1f} s")
    P_val_raw = best.pipeline.predict_proba(X.iloc[val])
    choice = choose_calibration(P_val_raw, Y[val])
    P_val = choice.calibration.transform(P_val_raw)
    ece_raw, ece = expected_calibration_error(Y[val], P_val_raw), expected_calibration_error(Y[val], P_val)
    print(f"\n1. calibration chosen on validation (cross-fitted log loss {choice.val_log_loss}): {choice.method}")
    print(f"  ECE before: mean {ece_raw.mean():.4f}, worst {COUNTRIES[ece_raw.argmax()]} {ece_raw.max():.4f}")
    print(f"  ECE after (in-sample): mean {ece.mean():.4f}, worst {COUNTRIES[ece.argmax()]} {ece.max():.4f}")
    P_pool_raw = best.pipeline.predict_proba(X.iloc[pool])
    P_pool = choice.calibration.transform(P_pool_raw)
    oracle_loss = mean_log_loss(Y[pool], Q[pool])
    print(f"  log-loss ratio to the oracle on the pool: before {mean_log_loss(Y[pool], P_pool_raw) / oracle_loss:.3f}, "
          f"after {mean_log_loss(Y[pool], P_pool) / oracle_loss:.3f}")
    val_auc = np.array(list(evaluate(Y[val], P_val)["roc_auc"].values()))

    Xp = X.iloc[pool]
    lift = np.exp(2.5 * ((Xp["energy"] - Xp["energy"].mean()) / Xp["energy"].std()
                         + (Xp["danceability"] - Xp["danceability"].mean()) / Xp["danceability"].std()) / 2)
    shifted = rng.choice(len(pool), size=min(args.served, len(pool)), replace=False, p=lift / lift.sum())
    print(f"  covariate shift: mean energy {Xp['energy'].iloc[shifted].mean():.3f} served vs "
          f"{Xp['energy'].mean():.3f} in the pool")
    compare("2. covariate shift", P_pool[shifted], Y[pool][shifted], ece, args.min_positives)

    plain = rng.choice(len(pool), size=min(args.served, len(pool)), replace=False)
    r = compare("3. no shift", P_pool[plain], Y[pool][plain], ece, args.min_positives)
    drops = r["enough"] & (r["estimate"].roc_auc < val_auc - MAX_AUC_DROP)
    print(f"  countries whose estimated AUC is more than {MAX_AUC_DROP} below validation: {int(drops.sum())} "
          f"(alerts expected: 0)")


if __name__ == "__main__":
    main()
