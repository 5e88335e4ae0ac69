"""The promotion rules of `decide`, one by one, as pure functions: metric dicts in, a decision out.

Each refusal case makes exactly one rule refuse while the others pass, so a rule that stopped
refusing (or one that refused too much) shows up by name.
"""

from __future__ import annotations

import math

import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.promotion import FINITE_METRICS, PromotionThresholds, decide

NAN = float("nan")
MARGIN, AUC_DROP, LOSS_UP, COUNTRY_DROP = ("min_auc_gain_over_baseline", "max_auc_drop_vs_champion",
                                           "max_log_loss_increase_vs_champion", "max_country_auc_drop_vs_champion")
# The shipped defaults (the settings' `gates` section), written out: the rules are given plain values.
CALIBRATION, POOLED = "max_calibration_error", "max_pooled_calibration_error"
DEFAULTS = {MARGIN: 0.05, AUC_DROP: 0.005, LOSS_UP: 0.01, COUNTRY_DROP: 0.05, CALIBRATION: 0.01, POOLED: 0.01}


def thresholds(**kw) -> PromotionThresholds:
    return PromotionThresholds(**{**DEFAULTS, **kw})


def metrics(auc: float = 0.75, loss: float = 0.25, *, countries: dict[str, float] | None = None,
            mean_auc: float | None = None) -> dict:
    """A metric dict shaped like `models.evaluate`'s: `auc` in every country but `countries`; the mean
    AUC is the mean over the finite countries (as evaluate computes it) unless given."""
    per = {c: auc for c in COUNTRIES} | (countries or {})
    finite = [v for v in per.values() if math.isfinite(v)]
    if mean_auc is None and not countries:
        mean_auc = auc  # exactly, not a float sum of 72 equal values
    elif mean_auc is None:
        mean_auc = sum(finite) / len(finite) if finite else NAN
    return {"mean_roc_auc": mean_auc, "mean_log_loss": loss, "roc_auc": per,
            "mean_pr_auc": 0.5, "mean_brier": 0.1}


BASELINE = metrics(0.5, 0.375)  # the per-country prior: AUC 0.5 everywhere


def refused_only_by(d, rule: str) -> None:
    assert not d.promote and d.summary.startswith("refuse: ")
    assert d.refused_by == [rule], d.summary
    if rule != FINITE_METRICS:  # a threshold rule is named in its reason (NaN has no threshold to name)
        assert rule in d.summary


def test_a_clearly_better_candidate_promotes():
    d = decide(metrics(0.8, 0.2), BASELINE, metrics(0.75, 0.25), thresholds())
    assert d.promote and d.refused_by == [] and d.summary.startswith("promote: ")
    assert "beats the baseline by +0.3000" in d.summary


# -- each rule alone ---------------------------------------------------------------------

def test_the_baseline_margin_alone_refuses():
    champion = candidate = metrics(0.52, 0.3)  # as good as the champion, but barely above the baseline
    d = decide(candidate, BASELINE, champion, thresholds())
    refused_only_by(d, MARGIN)
    assert "beats the baseline's 0.5000 by only +0.0200" in d.summary


def test_a_mean_auc_drop_vs_the_champion_alone_refuses():
    # 0.01 lower in every country: within the per-country tolerance, beyond the mean one
    d = decide(metrics(0.79, 0.25), BASELINE, metrics(0.80, 0.25), thresholds())
    refused_only_by(d, AUC_DROP)
    assert "below the champion's 0.8000" in d.summary


def test_a_log_loss_increase_vs_the_champion_alone_refuses():
    d = decide(metrics(0.75, 0.3), BASELINE, metrics(0.75, 0.25), thresholds())
    refused_only_by(d, LOSS_UP)
    assert "mean log loss 0.3000 is 0.0500 above the champion's 0.2500" in d.summary


def test_one_country_dropping_alone_refuses():
    # US falls from 0.75 to 0.5: the mean falls only 0.0035 (within 0.005), the country 0.25
    candidate = metrics(0.75, 0.25, countries={"US": 0.5})
    assert 0 < 0.75 - candidate["mean_roc_auc"] < DEFAULTS[AUC_DROP]
    d = decide(candidate, BASELINE, metrics(0.75, 0.25), thresholds())
    refused_only_by(d, COUNTRY_DROP)
    assert "AUC in US is 0.2500 below the champion's" in d.summary


def test_several_rules_refusing_are_all_named():
    d = decide(metrics(0.52, 0.3), BASELINE, metrics(0.75, 0.25), thresholds())
    assert not d.promote and set(d.refused_by) == {MARGIN, AUC_DROP, LOSS_UP, COUNTRY_DROP}


# -- no champion -------------------------------------------------------------------------

def test_without_a_champion_the_baseline_margin_alone_decides():
    d = decide(metrics(0.75, 0.25), BASELINE, None, thresholds())
    assert d.promote and d.summary == "promote: beats the baseline by +0.2500 mean AUC; no champion yet"
    refused = decide(metrics(0.52, 0.25), BASELINE, None, thresholds())
    refused_only_by(refused, MARGIN)
    assert refused.summary.endswith("; no champion yet")


# -- ties and edge values ------------------------------------------------------------------

def test_a_candidate_equal_to_the_champion_promotes():
    champion = metrics(0.75, 0.25, countries={"US": 0.625})
    d = decide(dict(champion), BASELINE, champion, thresholds())
    assert d.promote, d.summary
    assert "mean AUC +0.0000 vs the champion" in d.summary and "mean log loss +0.0000 vs the champion" in d.summary


# (rule, thresholds, candidate, champion) with the difference exactly at the threshold, in values
# that binary floating point holds exactly (0.75 - 0.625 is exactly 0.125)
AT_THE_EDGE_EXACT = {
    MARGIN: (thresholds(**{MARGIN: 0.25}), metrics(0.75), None),
    AUC_DROP: (thresholds(**{AUC_DROP: 0.125, COUNTRY_DROP: 0.5}), metrics(0.625), metrics(0.75)),
    LOSS_UP: (thresholds(**{LOSS_UP: 0.125}), metrics(0.75, 0.375), metrics(0.75, 0.25)),
    COUNTRY_DROP: (thresholds(**{COUNTRY_DROP: 0.125, AUC_DROP: 0.5}),
                   metrics(0.75, countries={"US": 0.625}), metrics(0.75)),
}
# the same in decimal values whose float difference lands just beyond the threshold
# (0.85 - 0.8 = 0.04999999999999993, 0.81 - 0.805 = 0.0050000000000000044, ...): `decide` allows
# float noise, so a value written at the threshold passes as written
AT_THE_EDGE_DECIMAL = {
    MARGIN: (thresholds(), metrics(0.85), None, metrics(0.8)),
    AUC_DROP: (thresholds(), metrics(0.805), metrics(0.81), BASELINE),
    LOSS_UP: (thresholds(), metrics(0.75, 0.31), metrics(0.75, 0.3), BASELINE),
    COUNTRY_DROP: (thresholds(**{AUC_DROP: 0.5}), metrics(0.81, countries={"US": 0.76}), metrics(0.81), BASELINE),
}
BEYOND = 1e-6  # far above float noise, far below any difference that matters


def _nudge(rule: str, m: dict, by: float) -> dict:
    """The candidate moved `by` towards refusal on this rule."""
    m = {**m, "roc_auc": dict(m["roc_auc"])}
    if rule == LOSS_UP:
        m["mean_log_loss"] += by
    elif rule == COUNTRY_DROP:
        m["roc_auc"]["US"] -= by
    else:
        m["mean_roc_auc"] -= by
    return m


@pytest.mark.parametrize("rule", list(AT_THE_EDGE_EXACT))
def test_exactly_at_the_threshold_passes_and_just_beyond_refuses(rule):
    t, candidate, champion = AT_THE_EDGE_EXACT[rule]
    at = decide(candidate, BASELINE, champion, t)
    assert at.promote, at.summary
    refused_only_by(decide(_nudge(rule, candidate, BEYOND), BASELINE, champion, t), rule)


@pytest.mark.parametrize("rule", list(AT_THE_EDGE_DECIMAL))
def test_decimal_values_at_the_threshold_pass_despite_float_noise(rule):
    t, candidate, champion, baseline = AT_THE_EDGE_DECIMAL[rule]
    at = decide(candidate, baseline, champion, t)
    assert at.promote, at.summary
    refused_only_by(decide(_nudge(rule, candidate, BEYOND), baseline, champion, t), rule)


# -- NaN -------------------------------------------------------------------------------------

@pytest.mark.parametrize("champion", [None, metrics(0.75, 0.25)], ids=["no champion", "champion"])
@pytest.mark.parametrize("metric", ["mean_roc_auc", "mean_log_loss"])
def test_a_nan_candidate_metric_never_promotes(metric, champion):
    candidate = metrics(0.8, 0.2) | {metric: NAN}
    d = decide(candidate, BASELINE, champion, thresholds())
    refused_only_by(d, FINITE_METRICS)
    assert f"the candidate's {metric} is NaN" in d.summary


def test_a_nan_baseline_refuses_the_margin():
    d = decide(metrics(0.8), metrics(NAN), None, thresholds())
    refused_only_by(d, MARGIN)
    assert "the baseline's mean AUC is NaN" in d.summary


def test_countries_nan_on_either_side_are_skipped():
    # US and FR would each refuse by far, but their AUC is NaN on one side: not compared
    candidate = metrics(0.75, countries={"US": NAN, "FR": 0.25}, mean_auc=0.75)
    champion = metrics(0.75, countries={"US": 0.95, "FR": NAN}, mean_auc=0.75)
    d = decide(candidate, BASELINE, champion, thresholds())
    assert d.promote, d.summary
    # counted: countries where the champion has an AUC the candidate lacks (US; FR had nothing to compare)
    assert "worst country" in d.summary and "1 country skipped (NaN)" in d.summary


def test_a_candidate_without_a_single_comparable_country_does_not_pass_the_country_rule():
    # a finite mean, but every country NaN, while the champion has finite AUCs everywhere
    candidate = metrics(NAN, 0.25, mean_auc=0.75)
    d = decide(candidate, BASELINE, metrics(0.75, 0.25), thresholds())
    refused_only_by(d, COUNTRY_DROP)
    assert f"the candidate's is NaN in all {len(COUNTRIES)} countries where the champion's is finite" in d.summary


def test_a_champion_that_cannot_be_measured_does_not_block():
    champion = metrics(NAN, NAN)  # every country NaN, so its means too
    d = decide(metrics(0.75, 0.25), BASELINE, champion, thresholds())
    assert d.promote, d.summary
    assert "the champion's mean AUC is NaN: not compared" in d.summary
    assert "the champion's mean log loss is NaN: not compared" in d.summary


@pytest.mark.parametrize("champion", [None, "champion"])
def test_a_candidate_whose_probabilities_are_off_is_refused_with_or_without_a_champion(champion):
    champ = metrics(0.75, 0.25) if champion else None
    off = {**metrics(0.8, 0.2), "mean_ece": 0.04, "mean_ece_excess": 0.03}
    refused_only_by(decide(off, BASELINE, champ, thresholds()), CALIBRATION)
    at_threshold = {**metrics(0.8, 0.2), "mean_ece": 0.02, "mean_ece_excess": 0.01}
    d = decide(at_threshold, BASELINE, champ, thresholds())
    assert d.promote and "calibrated: mean ECE 0.0200, +0.0100 over sampling noise" in d.summary
    refused_only_by(decide({**at_threshold, "mean_ece_excess": NAN}, BASELINE, champ, thresholds()), CALIBRATION)
    # a metric dict without calibration (judged before it was measured) is not refused for it
    assert decide(metrics(0.8, 0.2), BASELINE, champ, thresholds()).promote


@pytest.mark.parametrize("champion", [None, "champion"])
def test_a_bias_every_country_shares_is_refused_by_the_pooled_rule_alone(champion):
    """Each country's excess within its bound (its few hits cannot show more), all of them together off."""
    champ = metrics(0.75, 0.25) if champion else None
    calibrated_per_country = {"mean_ece": 0.012, "mean_ece_excess": 0.002}
    timid = {**metrics(0.8, 0.2), **calibrated_per_country, "pooled_ece": 0.022, "pooled_ece_excess": 0.016}
    d = decide(timid, BASELINE, champ, thresholds())
    refused_only_by(d, POOLED)
    assert "pooled excess calibration error 0.0160" in d.summary and f"above {POOLED} 0.01" in d.summary
    at_threshold = {**timid, "pooled_ece_excess": 0.01}
    d = decide(at_threshold, BASELINE, champ, thresholds())
    assert d.promote and "calibrated across countries: pooled ECE 0.0220, +0.0100 over sampling noise" in d.summary
    refused_only_by(decide({**timid, "pooled_ece_excess": NAN}, BASELINE, champ, thresholds()), POOLED)
