"""What becomes of a candidate that passed, and of a challenger judged on live traffic: pure rules, values
in, a move or a refusal out (the assets in defs/ml carry them out)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from hit_platform.domain.promotion import (RolledBack, ShadowThresholds, champion_move, promotion_refusal,
                                           shadow_promotion_refusal)

AT = datetime(2026, 12, 6, 9, 30, tzinfo=timezone.utc)


def test_a_passed_candidate_is_promoted_unless_it_is_the_champion_already():
    assert champion_move("7", None, "immediate", None).kind == "promote"
    assert champion_move("7", "6", "immediate", None).kind == "promote"
    assert champion_move("7", "7", "shadow", RolledBack(AT, "ann@box", "bad")).kind == "none"


def test_a_version_a_person_rolled_back_from_is_not_promoted_again_by_the_gates():
    move = champion_move("7", "6", "shadow", RolledBack(AT, "ann@box", "answers nonsense in JP"))
    assert move.kind == "keep"
    assert "rolled back from on 2026-12-06 09:30:00 UTC by ann@box (answers nonsense in JP)" in move.why
    assert "`hit-platform rollback --to 7` brings it back" in move.why


def test_in_shadow_mode_a_passed_candidate_shadows_the_champion_first():
    move = champion_move("7", "6", "shadow", None)
    assert move.kind == "challenger" and move.why.startswith("HIT_PROMOTION_MODE=shadow: version 7")
    assert champion_move("1", None, "shadow", None).kind == "promote"  # no champion to shadow yet


def test_the_champion_refuses_a_candidate_its_evaluation_or_its_gate_refused():
    ev = {"promote": False, "decision": "refuse: mean AUC too low", "candidate_version": "7",
          "candidate_family": "trees"}
    refused = promotion_refusal(ev, None, "6")
    assert refused.startswith("refused to promote model version 7 (trees): its evaluation decided: refuse: mean AUC")
    assert "The champion stays version 6." in refused and "`hit-platform build`" in refused
    passed = {**ev, "promote": True}
    assert promotion_refusal(passed, None, None) is None
    held = promotion_refusal(passed, "never evaluated", None)
    assert "ml/model_evaluation:promotion_gate never evaluated. There is no champion yet." in held


def test_a_challenger_is_promoted_only_as_it_was_judged_and_with_its_gate_passed():
    ev = {"promote": True, "decision": "agrees", "champion_version": "6", "challenger_version": "7"}
    assert shadow_promotion_refusal(ev, None, ("6", "7")) is None
    assert shadow_promotion_refusal({**ev, "promote": False, "decision": "too far"}, None, ("6", "7")) == (
        "refused to promote challenger 7: too far. The champion stays 6; the challenger keeps shadowing it.")
    assert "challenger 7: failed in run r1." in shadow_promotion_refusal(ev, "failed in run r1", ("6", "7"))
    moved = shadow_promotion_refusal(ev, None, ("5", "7"))
    assert "the aliases moved" in moved and "(now champion 5, challenger 7): evaluate again" in moved


def test_shadow_thresholds_are_a_section_s_values_and_nothing_else():
    section = SimpleNamespace(min_requests=500, max_mean_abs_diff=0.1, min_top5_overlap=0.5, max_prediction_psi=0.25,
                              min_labelled_songs=200, max_auc_drop=0.01, not_a_threshold="ignored")
    assert ShadowThresholds.of(section) == ShadowThresholds(500, 0.1, 0.5, 0.25, 200, 0.01)
