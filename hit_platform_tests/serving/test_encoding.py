"""Request schemas and answer encoding, without Ray: ranges from schema.py, strictness, exact JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS, feature_range
from hit_platform.domain.probabilities import answered
from hit_platform.serving.encoding import batch_bytes, prediction_bytes
from hit_platform.serving.predictor import Predictor, features_of, top_k
from hit_platform.serving.schemas import SONG_ADAPTER, batch_model
from hit_platform.adapters.tracking import ModelVersionInfo
from hit_platform_tests.support.serving import make_pipeline, song


def test_song_ranges_come_from_the_schema():
    props = SONG_ADAPTER.json_schema()["properties"]
    for c in FEATURE_COLUMNS:
        lo, hi = feature_range(c)
        if c == "is_explicit":
            assert props[c]["type"] == "boolean"
            continue
        assert (props[c]["minimum"], props[c]["maximum"]) == (lo, hi), c
    assert SONG_ADAPTER.json_schema()["additionalProperties"] is False


@pytest.mark.parametrize("change, loc, kind", [
    ({"energy": 1.5}, ("energy",), "less_than_equal"),
    ({"tempo": -1.0}, ("tempo",), "greater_than_equal"),
    ({"key": 3.5}, ("key",), "multiple_of"),  # 3.0 is an integer (JSON Schema); 3.5 is not
    ({"danceability": "0.5"}, ("danceability",), "float_type"),
    ({"is_explicit": 1}, ("is_explicit",), "bool_type"),
    ({"valence": None}, ("valence",), "float_type"),
    ({"colour": "blue"}, ("colour",), "extra_forbidden"),
    ({"name": "x" * 1001}, ("name",), "string_too_long"),
])
def test_bad_fields_are_named(change, loc, kind):
    with pytest.raises(ValidationError) as e:
        SONG_ADAPTER.validate_json(json.dumps(song(**change)))
    assert (e.value.errors()[0]["loc"], e.value.errors()[0]["type"]) == (loc, kind)


def test_missing_field_and_non_finite_numbers_are_refused():
    body = song()
    del body["loudness"]
    with pytest.raises(ValidationError, match="loudness"):
        SONG_ADAPTER.validate_json(json.dumps(body))
    with pytest.raises(ValidationError, match="finite"):
        SONG_ADAPTER.validate_json(json.dumps(song()).replace('"energy": 0.6', '"energy": NaN'))


def test_batch_limits():
    adapter = TypeAdapter(batch_model(3))
    assert len(adapter.validate_json(json.dumps({"songs": [song()] * 3}))["songs"]) == 3
    for songs, kind in (([], "too_short"), ([song()] * 4, "too_long")):
        with pytest.raises(ValidationError) as e:
            adapter.validate_json(json.dumps({"songs": songs}))
        assert e.value.errors()[0]["type"] == kind


def test_answers_are_exact_json_of_the_printed_probabilities():
    rng = np.random.default_rng(0)
    P = rng.random((50, len(COUNTRIES)))
    P[0, :4] = [0.0, 1.0, 1e-6, 0.9999999999]
    A = answered(P)
    idx = top_k(A, 5)[0]
    one = json.loads(prediction_bytes(A[:1], idx[:1], "rid", "7"))
    assert one["request_id"] == "rid" and one["model_version"] == "7"
    assert list(one["probabilities"]) == list(COUNTRIES)
    assert one["probabilities"]["AE"] == 0.0 and one["probabilities"]["AR"] == 1.0
    assert one["probabilities"]["AT"] == 1e-6 and one["probabilities"]["AU"] == 1.0
    batch = json.loads(batch_bytes(A, idx, "rid", "7"))
    got = np.array([[p["probabilities"][c] for c in COUNTRIES] for p in batch["predictions"]])
    assert np.array_equal(got, A) and np.abs(got - P).max() <= 5e-10
    for p, row in zip(batch["predictions"], A):
        tops = [t["probability"] for t in p["top_countries"]]
        assert tops == sorted(row, reverse=True)[:5]
        assert [p["probabilities"][t["country"]] for t in p["top_countries"]] == tops


def test_predictor_uses_arrays_only_when_answers_are_identical():
    pipe = make_pipeline(3)
    p = Predictor(pipe, ModelVersionInfo("hit_model", "1", "run", {}, "src"), {})
    p.check()
    assert p.array_input
    songs = [song(), song(energy=0.1, is_explicit=True)]
    X = features_of(songs)
    assert X.dtype == np.float64 and X[1, FEATURE_COLUMNS.index("is_explicit")] == 1.0
    expected = pipe.predict_proba(pd.DataFrame(X, columns=list(FEATURE_COLUMNS)))
    assert np.array_equal(p.predict(X), expected)


@pytest.mark.parametrize("k", [1, 5, 8, 9, 72])
def test_top_k_is_a_stable_sort_ties_in_country_order(k):
    P = np.round(np.random.default_rng(k).random((300, len(COUNTRIES))), 2)  # many ties
    idx, vals = top_k(P, k)
    expected = np.argsort(-P, axis=1, kind="stable")[:, :k]
    assert np.array_equal(idx, expected) and np.array_equal(vals, np.take_along_axis(P, expected, axis=1))
