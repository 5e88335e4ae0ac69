"""The best candidate judged on the test split, at the lake snapshot it was trained on: scored beside the
per-country prior baseline, the champion and the generator's oracle (`domain.promotion.judge`), the
decision appended to `ml.evaluations` and tagged on the model version, the candidate's test calibration
logged to its own MLflow run. `ml/model_evaluation` (`defs/ml/evaluation.py`) runs it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.verdicts import refuse_unjudged
from hit_platform.adapters.lake.tables import Evaluation, append_evaluation, evaluations
from hit_platform.adapters.tracking import ABANDONED, ModelVersionInfo, Tracker, flat_metrics
from hit_platform.domain.promotion import Judgement, PromotionThresholds, judge
from hit_platform.domain.recorded_decision import unpromotable, unrecorded
from hit_platform.steps.datasets import load_split
from hit_platform.steps.oracle import oracle_matrix


@dataclass
class Evaluated:
    record: Evaluation  # the row appended to ml.evaluations
    judgement: Judgement
    champion: ModelVersionInfo | None  # the champion when the candidate was judged
    written: int  # the lake snapshot that holds the row


def evaluate_candidate(lake: Lake, tracker: Tracker, candidate: dict, thresholds: PromotionThresholds,
                       oracle: Path, run_id: str, gates: Mapping[str, Iterable[str]] | None = None) -> Evaluated:
    """Judge the best candidate an ml/candidate_models materialization recorded (`candidate`: the plain
    values of its metadata) and record the judgement; `oracle`: where the generator's oracle is, if any.
    With `gates` ({table: blocking checks}), `verdicts.UnjudgedData` unless they passed the test split's
    tables at the candidate's snapshot."""
    snapshot, version = candidate["lake_snapshot_id"], candidate["best_model_version"]
    with lake.connection(read_only=True) as con:
        if gates is not None:
            refuse_unjudged(con, snapshot, gates, "evaluated on")
        test = load_split(con, "test", snapshot)
    current = tracker.champion_info()
    champion = current if current is not None and current.version != version else None  # not against itself
    P_test = tracker.load_version(version).predict_proba(test.X)
    j = judge(test.Y, P_test,
              tracker.load_uri(candidate["baseline_model_uri"]).predict_proba(test.X),
              tracker.load_version(champion.version).predict_proba(test.X) if champion else None,
              oracle_matrix(oracle, test.spotify_ids), thresholds)
    record = Evaluation(
        datetime.now(timezone.utc), run_id, snapshot, version, candidate["best_run_id"], candidate["best_family"],
        len(test), j.candidate["mean_roc_auc"], j.candidate["mean_pr_auc"], j.candidate["mean_log_loss"],
        j.candidate["mean_brier"], j.baseline["mean_roc_auc"], j.baseline["mean_log_loss"],
        champion.version if champion else None, *(_means(j.champion) + _means(j.oracle)),
        j.auc_ratio_to_oracle, j.log_loss_ratio_to_oracle, j.decision.promote, j.decision.summary,
        json.dumps(j.candidate["roc_auc"]))
    _log_test_calibration(tracker, candidate["best_run_id"], candidate["best_family"], test.Y, P_test, j.candidate)
    with lake.connection() as con:
        lake.write(lambda c: append_evaluation(c, record), con=con, what="ml.evaluations")
        written = lake.snapshot_id(con)
    tracker.set_version_tag(version, "evaluation", j.decision.summary[:500])
    return Evaluated(record, j, current, written)


def decision_values(e: Evaluation) -> dict:
    """An ml.evaluations row as ml/model_evaluation's metadata names it: what the gate and the champion read."""
    values = {"candidate_version": e.candidate_version, "candidate_family": e.candidate_family,
              "lake_snapshot_id": e.lake_snapshot_id, "test_songs": e.test_songs, "promote": bool(e.promote),
              "decision": e.decision, "test_mean_roc_auc": e.candidate_mean_roc_auc,
              "test_mean_log_loss": e.candidate_mean_log_loss, "test_mean_pr_auc": e.candidate_mean_pr_auc,
              "baseline_mean_roc_auc": e.baseline_mean_roc_auc, "baseline_mean_log_loss": e.baseline_mean_log_loss,
              "judged_against": e.champion_version}
    if e.champion_version is not None:
        values |= {"champion_mean_roc_auc": e.champion_mean_roc_auc, "champion_mean_log_loss": e.champion_mean_log_loss}
    if e.oracle_mean_roc_auc is not None:
        values |= {"oracle_mean_roc_auc": e.oracle_mean_roc_auc, "oracle_mean_log_loss": e.oracle_mean_log_loss,
                   "auc_ratio_to_oracle": e.auc_ratio_to_oracle, "log_loss_ratio_to_oracle": e.log_loss_ratio_to_oracle}
    return values


DECIDED_BY = ("candidate_version", "promote", "decision")  # what a materialization's metadata must agree on


def recorded_decision(lake: Lake, tracker: Tracker, run_id: str, run_known: bool,
                      claimed: dict) -> tuple[dict | None, str | None]:
    """(the decision, why it decides nothing) of the latest ml/model_evaluation, made by Dagster run `run_id`
    ("" when reported by hand; `run_known`: the instance ran it) with metadata `claimed`: the values of the
    ml.evaluations row that run wrote, never the metadata; refused unless the run exists, wrote the row,
    the metadata agrees with it, and a candidate it promotes is registered and not abandoned."""
    row = None
    if run_id:
        with lake.reading() as con:
            mine = [e for e in evaluations(con) if e.dagster_run_id == run_id] if con else []
        row = decision_values(mine[-1]) if mine else None
    why = unrecorded("ml/model_evaluation", "ml.evaluations", run_id, run_known, row, claimed, DECIDED_BY)
    if why is None and row["promote"]:
        version = str(row["candidate_version"])
        why = unpromotable(version, tracker.model_name, tracker.version_tags(version), ABANDONED)
    return row, why


def _log_test_calibration(tracker: Tracker, run_id: str, family: str, Y, P, metrics: dict) -> None:
    """The candidate's calibration on the test split, into its own MLflow run: ECE per country and its
    means (test_ece_US, test_mean_ece, test_mean_ece_excess), the pooled ECE of all countries together
    (test_pooled_ece, test_pooled_ece_excess) and the per-country reliability curves."""
    from hit_platform.adapters.reports import plots  # matplotlib: only when an evaluation runs

    fig = plots.reliability_by_country(Y, P, f"{family}: reliability by country (test)")
    try:
        ece = {k: metrics[k] for k in ("ece", "mean_ece", "mean_ece_excess", "pooled_ece", "pooled_ece_excess")}
        tracker.log_to_run(run_id, flat_metrics("test", ece), {"reliability_by_country_test": fig})
    finally:
        plots.close(fig)


def _means(metrics: dict | None) -> tuple:
    return (metrics["mean_roc_auc"], metrics["mean_log_loss"]) if metrics else (None, None)
