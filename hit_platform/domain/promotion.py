"""The promotion rules: a candidate judged on the test split (against the baseline, the champion and
the oracle), what the champion asset does with a candidate that passed, and a challenger judged on
live traffic before it replaces the champion.

Pure functions (arrays and values in, numbers and a decision out); the Dagster assets in
`defs/ml/evaluation.py` and `defs/ml/shadow.py` feed them, carry out what they decide and store it.
The thresholds come in as plain values (`PromotionThresholds`, `ShadowThresholds`): the settings'
`gates` and `shadow` sections convert to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

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
    max_pooled_calibration_error: float


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
        noise floor of a calibrated model on these songs) <= the threshold, champion or not;
      - max_pooled_calibration_error: the same of all its (song, country) predictions taken together,
        which sees a bias every country shares (too timid everywhere) that no country's few hits show.
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

    rule, tol = "max_pooled_calibration_error", t.max_pooled_calibration_error
    excess = candidate.get("pooled_ece_excess")
    if excess is not None:  # metric dicts made before the pooled error was measured have none
        if not _finite(excess) or excess > tol + SLACK:
            d.refuse(rule, f"pooled excess calibration error {excess:.4f} (ECE of all countries' predictions "
                           f"together {candidate.get('pooled_ece', NAN):.4f}) is above {rule} {tol}: "
                           "its probabilities are off in every country alike")
        else:
            d.reasons.append(f"calibrated across countries: pooled ECE {candidate.get('pooled_ece', NAN):.4f}, "
                             f"{excess:+.4f} over sampling noise")

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


# -- the champion: what becomes of a candidate that passed --------------------------------------------

def promotion_refusal(ev: dict, gate: str | None, champion_version: str | None) -> str | None:
    """Why the champion must not move to the candidate of evaluation record `ev` (its metadata: promote,
    decision, candidate_version, candidate_family), or None when it may. `gate`: the promotion gate's
    verdict on that evaluation (None: it passed; asked only when the evaluation says promote)."""
    if not ev.get("promote"):
        verdict = f"its evaluation decided: {ev.get('decision', 'no decision recorded')}"
    elif gate is None:
        return None
    else:
        verdict = f"ml/model_evaluation:promotion_gate {gate}"
    keeps = f"the champion stays version {champion_version}" if champion_version else "there is no champion yet"
    return (f"refused to promote model version {ev.get('candidate_version')} ({ev.get('candidate_family')}): "
            f"{verdict}. {keeps.capitalize()}. To proceed: train a better candidate or change the thresholds "
            f"(HIT_GATE_*), then `hit-platform build`, which evaluates it again with its gate.")


@dataclass(frozen=True)
class RolledBack:
    """A person's rollback away from a version: when, who and why (an `ops.model_events` row has them)."""

    event_at: datetime
    who: str
    reason: str


@dataclass(frozen=True)
class ChampionMove:
    """What `ml/champion_model` does with a candidate that passed its evaluation and gate.

    kind: "none" (it is the champion already), "keep" (a person rolled back from it: the champion stays),
    "challenger" (shadow promotion: it shadows the champion on live traffic first), "promote" (the champion
    alias moves to it). `why`: the reason the champion stays, for "keep" and "challenger"."""

    kind: str
    why: str | None = None


def champion_move(candidate: str, champion: str | None, mode: str, rolled_back: RolledBack | None) -> ChampionMove:
    """Promote, unless the candidate is the champion already, or a person rolled back from it (`rollback
    --to` brings it back, the gates do not), or `mode` is "shadow" and there is a champion to shadow."""
    if champion is not None and str(champion) == str(candidate):
        return ChampionMove("none")
    if rolled_back is not None:
        back = rolled_back
        return ChampionMove("keep", f"version {candidate} was rolled back from on {back.event_at:%Y-%m-%d %H:%M:%S} "
                                    f"UTC by {back.who} ({back.reason}): not promoted again; "
                                    f"`hit-platform rollback --to {candidate}` brings it back")
    if champion is not None and mode == "shadow":
        return ChampionMove("challenger", f"HIT_PROMOTION_MODE=shadow: version {candidate} passed the gates and is the "
                                          f"challenger; ml/shadow_promotion makes it champion once "
                                          f"ml/shadow_evaluation:shadow_gate passes")
    return ChampionMove("promote")


def champion_moved_since(candidate: str, judged_against: str | None, champion: str | None) -> ChampionMove | None:
    """"keep" when the champion is no longer the one the candidate was judged against (`judged_against`: None
    when there was none, or it was the candidate itself): a rollback meanwhile is not overwritten by a
    decision made before it."""
    if champion is None or str(champion) == str(candidate) or str(champion) == str(judged_against):
        return None
    return ChampionMove("keep", f"version {candidate} was judged against champion {judged_against or 'none'}, but "
                                f"the champion is now version {champion}: not promoted on that judgement; "
                                f"materialize ml/model_evaluation to judge it against the champion of now")


# -- shadow: a challenger judged on live traffic ----------------------------------------------------

@dataclass(frozen=True)
class ShadowThresholds:
    """What a challenger must show on the songs it shadowed before it replaces the champion. The values and
    their meaning are set in one place, the settings' `shadow` section (`HIT_SHADOW_*`)."""

    min_requests: int
    max_mean_abs_diff: float
    min_top5_overlap: float
    max_prediction_psi: float
    min_labelled_songs: int
    max_auc_drop: float

    @classmethod
    def of(cls, section) -> "ShadowThresholds":
        """The plain values of a section that has these fields (the settings' `shadow` section)."""
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})


@dataclass
class ShadowComparison:
    """The challenger against the champion on the same live songs (`steps/shadow_comparison.py` measures it)."""

    champion_version: str
    challenger_version: str
    songs: int = 0  # distinct songs (by their features), each weighted once whatever a client repeated
    answers: int = 0  # shadowed answers, repeats of one song included
    requests: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    mean_abs_diff: dict[str, float] = field(default_factory=dict)
    prediction_psi: dict[str, float] = field(default_factory=dict)
    top5_agreement: dict[str, float] = field(default_factory=dict)  # share of songs where the country's top-5 place agrees
    top5_overlap: float = float("nan")  # mean share of the champion's top 5 also in the challenger's
    labelled_songs: int = 0
    champion_roc_auc: float | None = None
    challenger_roc_auc: float | None = None

    def judge(self, t: ShadowThresholds) -> tuple[bool, list[str]]:
        """(passed, the reasons it did not): enough songs, agreement within the thresholds, and, once enough
        shadowed songs have labels, no loss of ROC AUC beyond the tolerance."""
        pair = f"challenger {self.challenger_version} vs champion {self.champion_version}"
        if self.songs < t.min_requests:
            return False, [f"{pair}: {self.songs} shadowed songs, fewer than HIT_SHADOW_MIN_REQUESTS="
                           f"{t.min_requests}; waiting for live traffic"]
        reasons = []
        worst = max(self.mean_abs_diff, key=self.mean_abs_diff.get)
        if self.mean_abs_diff[worst] > t.max_mean_abs_diff:
            reasons.append(f"mean |difference| in {worst} is {self.mean_abs_diff[worst]:.3f} > "
                           f"HIT_SHADOW_MAX_MEAN_ABS_DIFF={t.max_mean_abs_diff:g}")
        if self.top5_overlap < t.min_top5_overlap:
            reasons.append(f"top-5 overlap {self.top5_overlap:.3f} < HIT_SHADOW_MIN_TOP5_OVERLAP={t.min_top5_overlap:g}")
        worst = max(self.prediction_psi, key=self.prediction_psi.get)
        if self.prediction_psi[worst] > t.max_prediction_psi:
            reasons.append(f"prediction PSI in {worst} is {self.prediction_psi[worst]:.3f} > "
                           f"HIT_SHADOW_MAX_PREDICTION_PSI={t.max_prediction_psi:g}")
        if self.labelled_songs >= t.min_labelled_songs and self.champion_roc_auc is not None:
            drop = self.champion_roc_auc - self.challenger_roc_auc
            if drop > t.max_auc_drop:
                reasons.append(f"on {self.labelled_songs} labelled shadowed songs the challenger's mean ROC AUC "
                               f"{self.challenger_roc_auc:.4f} is {drop:.4f} below the champion's "
                               f"{self.champion_roc_auc:.4f} (HIT_SHADOW_MAX_AUC_DROP={t.max_auc_drop:g})")
        return not reasons, [f"{pair}: {r}" for r in reasons]

    def summary(self, t: ShadowThresholds) -> str:
        passed, reasons = self.judge(t)
        if passed:
            labels = (f"; on {self.labelled_songs} labelled songs mean ROC AUC {self.challenger_roc_auc:.4f} vs "
                      f"{self.champion_roc_auc:.4f}" if self.champion_roc_auc is not None else "")
            return (f"challenger {self.challenger_version} agrees with champion {self.champion_version} on "
                    f"{self.songs} shadowed songs: worst mean |difference| {max(self.mean_abs_diff.values()):.3f}, "
                    f"top-5 overlap {self.top5_overlap:.3f}, worst PSI {max(self.prediction_psi.values()):.3f}"
                    f"{labels}: promote")
        return "; ".join(reasons)

    def metadata(self) -> dict:
        def worst(d: dict, n: int = 5, reverse: bool = True) -> dict:
            return {c: round(v, 4) for c, v in sorted(d.items(), key=lambda kv: kv[1], reverse=reverse)[:n]}

        out = {"champion_version": self.champion_version, "challenger_version": self.challenger_version,
               "shadowed_songs": self.songs, "shadowed_answers": self.answers, "shadowed_requests": self.requests,
               "first_shadowed_at": str(self.first_at), "last_shadowed_at": str(self.last_at),
               "labelled_songs": self.labelled_songs}
        if self.songs:
            out.update({"max_mean_abs_diff": max(self.mean_abs_diff.values()),
                        "mean_abs_diff": float(np.mean(list(self.mean_abs_diff.values()))),
                        "top5_overlap": self.top5_overlap, "max_prediction_psi": max(self.prediction_psi.values()),
                        "min_top5_agreement": min(self.top5_agreement.values()),
                        "worst_mean_abs_diff": worst(self.mean_abs_diff), "worst_prediction_psi": worst(self.prediction_psi),
                        "worst_top5_agreement": worst(self.top5_agreement, reverse=False)})
        if self.champion_roc_auc is not None:
            out.update({"champion_mean_roc_auc": self.champion_roc_auc,
                        "challenger_mean_roc_auc": self.challenger_roc_auc})
        return out


def shadow_promotion_refusal(ev: dict, gate: str | None, now: tuple[str | None, str | None]) -> str | None:
    """Why the challenger of shadow evaluation record `ev` (its metadata: promote, decision, champion_version,
    challenger_version) must not replace the champion, or None when it may. `gate`: shadow_gate's verdict on
    that evaluation (None: it passed); `now`: the (champion, challenger) versions the aliases point at now."""
    if not ev["promote"] or gate is not None:
        return (f"refused to promote challenger {ev['challenger_version']}: {gate or ev['decision']}. "
                f"The champion stays {ev['champion_version']}; the challenger keeps shadowing it.")
    judged = (ev["champion_version"], ev["challenger_version"])
    if now != judged:
        return (f"the aliases moved since ml/shadow_evaluation judged champion {judged[0]} and challenger "
                f"{judged[1]} (now champion {now[0]}, challenger {now[1]}): evaluate again")
    return None


# A failed judgement is judged again once the distinct shadowed songs grew by this factor: new songs can
# change it, and a challenger that keeps failing is not judged (and alerted on) every sensor tick.
SHADOW_RETRY_GROWTH = 1.25


def shadow_run_key(champion: str, challenger: str, songs: int, min_requests: int) -> str:
    """The shadow sensor's run key: one judgement per pair and per step of growth of the distinct shadowed
    songs (HIT_SHADOW_MIN_REQUESTS, then each SHADOW_RETRY_GROWTH times more), so a judgement that failed is
    retried when enough new songs arrive, and never twice on the same songs."""
    step, need = 0, max(1, min_requests)
    while need * SHADOW_RETRY_GROWTH ** (step + 1) <= songs:
        step += 1
    return f"shadow:{champion}:{challenger}:{step}"
