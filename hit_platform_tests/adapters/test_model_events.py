"""ops.model_events on a real lake: every move of the champion alias, newest first, by version."""

from __future__ import annotations

import pytest

from hit_platform.adapters import model_events


def test_events_are_kept_newest_first_and_found_by_either_version(lake):
    assert model_events.history(lake) == []  # no table yet
    first = model_events.record(lake, model_events.new_event("promote", "hit_model", None, "1", "Dagster run a",
                                                             "promote: passed", "a"))
    second = model_events.record(lake, model_events.new_event("promote", "hit_model", "1", "2", "Dagster run b",
                                                              "promote: passed", "b"))
    back = model_events.record(lake, model_events.new_event("rollback", "hit_model", "2", "1", "ana@host",
                                                            "v2 answers worse"))
    assert [e.event_id for e in model_events.history(lake)] == [back.event_id, second.event_id, first.event_id]
    assert [e.event_id for e in model_events.history(lake, "2")] == [back.event_id, second.event_id]
    assert model_events.history(lake, limit=1) == [back]
    assert model_events.rolled_back_from(lake, "2") == back
    assert model_events.rolled_back_from(lake, "1") is None  # rolled back *to*, not from
    assert model_events.rolled_back_from(lake, "2", since=back.event_at) is None
    assert "rollback 2 -> 1" in back.line() and "ana@host" in back.line() and "v2 answers worse" in back.line()
    assert "promote  none -> 1" in first.line()


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        model_events.new_event("demote", "hit_model", "2", "1", "me", "why")


def test_a_move_no_event_recorded_is_found_and_recorded_once(tmp_path):
    """What a hand in the registry (or a process that recorded nothing) leaves: the registry says one thing, the
    history another. The next writer records where the aliases are first, once."""
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.tracking import Tracker
    from hit_platform_tests.support.serving import register_version, serving_env

    settings, _ = serving_env(tmp_path)
    lake, tracker = Lake(settings), Tracker(settings)
    v1, v2, v3 = (register_version(settings, seed) for seed in (1, 2, 3))
    assert model_events.reconcile(lake, tracker) == []  # no alias, no history: nothing to say
    tracker.promote(v1)
    model_events.record(lake, model_events.new_event("promote", "hit_model", None, v1, "Dagster run a", "passed"))
    assert model_events.reconcile(lake, tracker) == []  # the history agrees
    tracker.promote(v2)  # ... and the process died before recording it
    tracker.set_challenger(v3)  # the same for the challenger
    [found, challenger] = model_events.reconcile(lake, tracker)
    assert (found.kind, found.from_version, found.to_version, found.who) == ("found", v1, v2, "reconciliation")
    assert "the registry was changed by hand" in found.reason
    assert (challenger.kind, challenger.to_version) == ("challenger", v3)
    assert model_events.reconcile(lake, tracker) == []  # recorded once
    assert {e.kind for e in model_events.history(lake)[:2]} == {"challenger", "found"}


@pytest.mark.slow
def test_a_move_cut_short_is_finished_with_its_kind_or_cancelled(tmp_path):
    """An alias move records its intent before it touches the registry. Cut short after the registry moved, the
    next mover records it as what it was (a rollback stays a rollback) and reports it; cut short before, it
    is cancelled. A move from where the alias no longer is moves nothing."""
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.tracking import Tracker
    from hit_platform_tests.support.serving import register_version, serving_env

    settings, _ = serving_env(tmp_path)
    lake, tracker = Lake(settings), Tracker(settings)
    v1, v2 = (register_version(settings, seed) for seed in (1, 2))
    model_events.promote(lake, tracker, v1, None, "passed", "run-a")
    model_events.promote(lake, tracker, v2, v1, "passed", "run-b")
    with pytest.raises(model_events.AliasMoved, match="moved since the decision"):
        model_events.move(lake, tracker, "rollback", v1, champion=v1, who="ana@host", reason="stale decision")
    assert tracker.champion_info().version == v2 and model_events.pending(lake) == []

    # a rollback whose process died after moving the alias (its intent, then the registry, then nothing)
    cut = model_events.new_event("rollback", tracker.model_name, v2, v1, "ana@host", "v2 answers worse")
    model_events._mark(lake, cut, "intent")
    tracker.promote(v1)
    # a promotion whose process died before moving it
    never = model_events.new_event("promote", tracker.model_name, v1, v2, "Dagster run c", "passed", "run-c")
    model_events._mark(lake, never, "intent")
    reported = []
    [finished] = model_events.reconcile(lake, tracker, reported.append)
    assert (finished.kind, finished.from_version, finished.to_version, finished.who) == ("rollback", v2, v1,
                                                                                        "ana@host")
    assert reported == [cut] and model_events.pending(lake) == []
    assert model_events.rolled_back_from(lake, v2).event_id == cut.event_id
    assert "finished by reconciliation" in model_events.history(lake, limit=1)[0].reason
    assert tracker.champion_info().version == v1  # the cancelled promotion moved nothing
    assert model_events.reconcile(lake, tracker, reported.append) == [] and len(reported) == 1
