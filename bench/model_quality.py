"""What bench_models.py and bench_zoo.py share: a lake's splits, the platform's candidate search on them, and
the test songs' figures against the generator's oracle.

    train, val, test = load_splits(settings)
    search = train_like_the_platform(train, val)      # train_candidates + select_best, with HIT_TRAIN_* settings
    P_oracle, labels = oracle_matrix(settings.oracle, test.spotify_ids)
    q = against_oracle(test, search, P_oracle)         # champion's ratios, spread, bias; each family's own AUC
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss, which Linux carries over
    from the parent across fork+exec (every child would report at least the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def load_splits(settings=None):
    """(train, validation, test) Datasets from the lake of `settings` (default: the environment's)."""
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.steps.datasets import load_split

    with Lake(settings).connection(read_only=True) as con:
        return tuple(load_split(con, s) for s in ("train", "validation", "test"))


def oracle_matrix(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of the oracle for these songs, (n, 72) in COUNTRIES order."""
    o = pd.read_parquet(path, columns=["spotify_id", "country", "probability", "label"])
    o = o[o["spotify_id"].isin(set(ids))]
    P = o.pivot(index="spotify_id", columns="country", values="probability").loc[ids, list(COUNTRIES)]
    L = o.pivot(index="spotify_id", columns="country", values="label").loc[ids, list(COUNTRIES)]
    return P.to_numpy(dtype=np.float64), L.to_numpy(dtype=bool)


@dataclass
class Search:
    results: list       # CandidateResult per family, as ml/candidate_models trains them
    best: object        # the one select_best registers
    seconds: float      # wall clock of the whole search


def train_like_the_platform(train, val, settings=None) -> Search:
    """Every family trained and chosen as ml/candidate_models does: train_candidates with the training
    settings' families, seed and workers (HIT_TRAIN_*), then select_best."""
    from hit_platform.defs.resources import TrainingResource
    from hit_platform.domain.models import select_best, train_candidates
    from hit_platform.settings import get_settings

    s = (settings or get_settings()).training
    training = TrainingResource(families=s.families, seed=s.seed, workers=s.workers, budget_s=s.budget_s)
    t = time.perf_counter()
    results = train_candidates(train.X, train.Y, val.X, val.Y, seed=training.seed,
                               families=training.family_names(), workers=training.workers,
                               budget_s=training.budget_s)
    return Search(results, select_best(results), time.perf_counter() - t)


def against_oracle(test, search: Search, P_oracle: np.ndarray) -> dict:
    """The champion on the test songs against the oracle, and what every family expects of itself.

    auc_ratio, log_loss_ratio   mean per-country ROC AUC and log loss, champion / oracle (the lake's labels)
    worst_auc_ratio             the lowest country's AUC ratio
    spread, true_spread         std over test songs of the champion's probabilities and of the truth's,
                                averaged over countries; bias = mean(champion - truth)
    expected_auc, true_auc      per family: the AUC its own probabilities expect (estimated_roc_auc) and
                                the AUC its scores get on average when labels follow the truth"""
    from hit_platform.domain.models import evaluate
    from hit_platform.domain.performance_estimate import estimated_roc_auc, expected_roc_auc

    oracle = evaluate(test.Y, P_oracle)
    per_family, champion = {}, None
    for r in search.results:
        P = r.pipeline.predict_proba(test.X)
        m = evaluate(test.Y, P)
        per_family[r.family] = {"auc_ratio": m["mean_roc_auc"] / oracle["mean_roc_auc"],
                                "log_loss_ratio": m["mean_log_loss"] / oracle["mean_log_loss"],
                                "expected_auc": float(np.nanmean(estimated_roc_auc(P))),
                                "true_auc": float(np.nanmean(expected_roc_auc(P, P_oracle)))}
        if r is search.best:
            champion, best_m = P, m
    ratios = np.array([best_m["roc_auc"][c] / oracle["roc_auc"][c] for c in COUNTRIES])
    return {"family": search.best.family, "auc": best_m["mean_roc_auc"], "oracle_auc": oracle["mean_roc_auc"],
            "auc_ratio": per_family[search.best.family]["auc_ratio"],
            "log_loss_ratio": per_family[search.best.family]["log_loss_ratio"],
            "worst_auc_ratio": float(np.nanmin(ratios)), "worst_country": COUNTRIES[int(np.nanargmin(ratios))],
            "spread": float(champion.std(axis=0).mean()), "true_spread": float(P_oracle.std(axis=0).mean()),
            "bias": float((champion - P_oracle).mean()), "families": per_family}
