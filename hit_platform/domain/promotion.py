"""Judging a candidate on the test split: against the baseline, the champion and the oracle.

Pure functions (arrays in, numbers and a decision out); the Dagster assets in
`defs/ml/evaluation.py` feed them and store what they return in `ml.evaluations`. The thresholds
come in as plain values (`PromotionThresholds`): the settings' `gates` section converts to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hit_platform.domain.models.metrics import evaluate


@dataclass(frozen=True)
class PromotionThresholds:
    """What a candidate must show to be promoted; each rule of `decide` is named by its field.
    The values and their meaning are set in one place, the settings' `gates` section (`HIT_GATE_*`)."""

    min_auc_gain_over_baseline: float
    max_auc_drop_vs_champion: float
    max_country_auc_drop_vs_champion: float
    max_log_loss_increase_vs_champion: float
    max_calibration_error: float


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    refused_by: list[str] = field(default_factory=list)  # the rules that refused (PromotionThresholds field names)

    @property
    def summary(self) -> str:
        return ("promote: " if self.promote else "refuse: ") + "; ".join(self.reasons)

    def refuse(self, rule: str, reason: str) -> None:
        self.promote = False
        self.refused_by.append(rule)
        self.reasons.append(reason)


# Float noise allowed when a difference is compared with a threshold: metrics are means over
# thousands of songs, so differences this small are arithmetic, not model (0.80 - 0.75 is
# 0.05000000000000004). It puts a value written exactly at a threshold on the passing side.
SLACK = 1e-9

# A candidate metric that is NaN refuses before any threshold is looked at.
FINITE_METRICS = "finite_metrics"
NAN = float("nan")


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def decide(candidate: dict, baseline: dict, champion: dict | None, t: PromotionThresholds) -> Decision:
    """Promote only when the candidate clearly beats the baseline and is not worse than the
    champion beyond the tolerances, overall and in every country.

    The rules, each named in its reason by its `PromotionThresholds` field:
      - min_auc_gain_over_baseline: candidate mean AUC - baseline mean AUC >= the margin;
      - max_auc_drop_vs_champion: champion mean AUC - candidate mean AUC <= the tolerance;
      - max_log_loss_increase_vs_champion: candidate mean log loss - champion's <= the tolerance;
      - max_country_auc_drop_vs_champion: in every country where both AUCs are finite,
        champion AUC - candidate AUC <= the tolerance;
      - max_calibration_error: the candidate's mean excess calibration error (ECE minus the
        noise floor of a calibrated model on these songs) <= the threshold, champion or not.
    Without a champion only the baseline margin applies (the reason says "no champion yet").

    Edges: a value exactly at its threshold passes (a gain equal to the margin, a drop or an
    increase equal to the tolerance), up to SLACK of float noise, so 0.80 vs 0.75 meets a 0.05
    margin. A candidate equal to the champion passes every champion rule.

    NaN never promotes: a NaN candidate mean AUC or mean log loss refuses (`finite_metrics`), and a
    NaN baseline mean AUC refuses the margin (it cannot be shown). A champion's NaN mean is not
    compared: a champion that cannot be measured on these rows does not block a candidate that
    can. Countries where either side's AUC is NaN are skipped; but if the champion has finite AUCs
    and not one of them can be compared with the candidate's, the per-country rule refuses.
    """
    d = Decision(True)
    nan = [k for k in ("mean_roc_auc", "mean_log_loss") if not _finite(candidate.get(k))]
    if nan:
        d.refuse(FINITE_METRICS, f"the candidate's {' and '.join(nan)} {'are' if len(nan) > 1 else 'is'} NaN: "
                                 "a model that cannot be measured is never promoted")
        return d
    auc = candidate["mean_roc_auc"]

    rule, tol = "max_calibration_error", t.max_calibration_error
    excess = candidate.get("mean_ece_excess")
    if excess is not None:  # metric dicts made before calibration was measured have none
        if not _finite(excess) or excess > tol + SLACK:
            d.refuse(rule, f"mean excess calibration error {excess:.4f} (ECE {candidate.get('mean_ece', NAN):.4f}) "
                           f"is above {rule} {tol}: its probabilities are not what they say")
        else:
            d.reasons.append(f"calibrated: mean ECE {candidate.get('mean_ece', NAN):.4f}, {excess:+.4f} over "
                             "sampling noise")

    rule, need = "min_auc_gain_over_baseline", t.min_auc_gain_over_baseline
    if not _finite(baseline.get("mean_roc_auc")):
        d.refuse(rule, f"the baseline's mean AUC is NaN: the candidate cannot be shown to beat it ({rule} {need})")
    else:
        gain = auc - baseline["mean_roc_auc"]
        if gain < need - SLACK:
            d.refuse(rule, f"mean AUC {auc:.4f} beats the baseline's {baseline['mean_roc_auc']:.4f} by only "
                           f"{gain:+.4f} (need {rule} {need})")
        else:
            d.reasons.append(f"beats the baseline by {gain:+.4f} mean AUC")
    if champion is None:
        d.reasons.append("no champion yet")
        return d

    # how much worse the candidate is: a lower mean AUC, a higher mean log loss
    for rule, key, label, worse_if in (("max_auc_drop_vs_champion", "mean_roc_auc", "mean AUC", "below"),
                                       ("max_log_loss_increase_vs_champion", "mean_log_loss", "mean log loss",
                                        "above")):
        tol, ours, theirs = getattr(t, rule), candidate[key], champion.get(key)
        if not _finite(theirs):
            d.reasons.append(f"the champion's {label} is NaN: not compared")
            continue
        worse = theirs - ours if worse_if == "below" else ours - theirs
        if worse > tol + SLACK:
            d.refuse(rule, f"{label} {ours:.4f} is {worse:.4f} {worse_if} the champion's {theirs:.4f} ({rule} {tol})")
        else:
            d.reasons.append(f"{label} {ours - theirs:+.4f} vs the champion")

    rule, tol = "max_country_auc_drop_vs_champion", t.max_country_auc_drop_vs_champion
    drops = country_drops(candidate, champion)
    champion_finite = [c for c, v in champion.get("roc_auc", {}).items() if _finite(v)]
    if not drops:
        if champion_finite:  # nothing to compare is not the same as nothing worse
            d.refuse(rule, f"no country's AUC can be compared with the champion's: the candidate's is NaN in all "
                           f"{len(champion_finite)} countries where the champion's is finite ({rule} {tol})")
    else:
        worst = max(drops, key=drops.get)
        n = len(champion_finite) - len(drops)  # the champion's countries the candidate has no AUC for
        skipped = f", {n} {'country' if n == 1 else 'countries'} skipped (NaN)" if n else ""
        if drops[worst] > tol + SLACK:
            d.refuse(rule, f"AUC in {worst} is {drops[worst]:.4f} below the champion's ({rule} {tol} in any "
                           f"country{skipped})")
        else:
            d.reasons.append(f"worst country {worst} {0.0 - drops[worst]:+.4f} AUC vs the champion{skipped}")
    return d


def country_drops(candidate: dict, champion: dict) -> dict[str, float]:
    """Champion AUC - candidate AUC in each country where both are finite."""
    cand = candidate.get("roc_auc", {})
    return {c: float(v - cand[c]) for c, v in champion.get("roc_auc", {}).items()
            if _finite(v) and _finite(cand.get(c))}


def worst_country_drop(candidate: dict, champion: dict) -> tuple[str | None, float]:
    drops = country_drops(candidate, champion)
    if not drops:
        return None, 0.0
    c = max(drops, key=drops.get)
    return c, drops[c]


@dataclass
class Judgement:
    """A candidate's test metrics next to the baseline's, the champion's and the oracle's, and the decision."""

    candidate: dict
    baseline: dict
    champion: dict | None
    oracle: dict | None
    decision: Decision

    @property
    def auc_ratio_to_oracle(self) -> float | None:
        return self.candidate["mean_roc_auc"] / self.oracle["mean_roc_auc"] if self.oracle else None

    @property
    def log_loss_ratio_to_oracle(self) -> float | None:
        return self.candidate["mean_log_loss"] / self.oracle["mean_log_loss"] if self.oracle else None


def judge(Y, P_candidate, P_baseline, P_champion, P_oracle, t: PromotionThresholds) -> Judgement:
    """Score each set of (n, 72) probabilities on the labels Y and decide; a missing champion or
    oracle is None."""
    candidate, baseline = evaluate(Y, P_candidate), evaluate(Y, P_baseline)
    champion = evaluate(Y, P_champion) if P_champion is not None else None
    oracle = evaluate(Y, P_oracle) if P_oracle is not None else None
    return Judgement(candidate, baseline, champion, oracle, decide(candidate, baseline, champion, t))
