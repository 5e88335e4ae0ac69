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
