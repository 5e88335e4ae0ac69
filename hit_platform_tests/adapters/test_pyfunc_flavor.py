"""The registered model as MLflow users load it: `mlflow.pyfunc.load_model("models:/hit_model@champion")`
takes the dump's columns in their natural dtypes and answers 72 probability columns; the platform itself
still gets the bare pipeline, of new versions and of versions registered before the pyfunc flavor.

A real `linear` pipeline (imputes missing features) in a temp SQLite MLflow store. `mlflow models
serve` against the serving API is in serving/test_api.py, next to the running API it compares with.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import get_model_info, infer_signature
from mlflow.types.schema import AnyType, DataType
from sklearn.pipeline import Pipeline

from hit_platform.adapters.pyfunc_flavor import input_example
from hit_platform.adapters.tracking import Tracker, model_requirements
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models import FAMILIES
from hit_platform.domain.probabilities import answered
from hit_platform.serving.predictor import load_predictor
from hit_platform.settings import Settings
from hit_platform_tests.support.models import data

CHAMPION = "models:/hit_model@champion"
AUDIO = ("danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
         "liveness", "valence", "tempo", "time_signature")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """(tracker, pipeline, new version, old version): the champion logged by `log_candidate`, and a version
    logged the way the platform did before (mlflow.sklearn.log_model, sklearn flavor only)."""
    (Xt, Yt, _), (Xv, _, _) = data()["train"], data()["validation"]
    pipeline = FAMILIES["linear"].build({"C": 1.0}, 0).fit(Xt.head(600), Yt[:600])
    tracker = Tracker(Settings(warehouse=tmp_path_factory.mktemp("pyfunc") / "warehouse"))
    run_id, uri = tracker.log_candidate(run_name="linear", params={"C": 1.0}, metrics={}, pipeline=pipeline,
                                        input_example=Xv, tags={}, figures={}, tables={})
    new = tracker.register(uri, run_id, tags={})
    tracker.promote(new.version)
    with mlflow.start_run(experiment_id=tracker.experiment_id()) as run:  # the tracker set the URIs
        example = Xv.head(5)
        info = mlflow.sklearn.log_model(pipeline, name="model", input_example=example,
                                        signature=infer_signature(example, pipeline.predict_proba(example)),
                                        serialization_format="cloudpickle", pip_requirements=model_requirements())
    old = tracker.register(info.model_uri, run.info.run_id, tags={})
    return tracker, pipeline, new.version, old.version


def features(n: int = 6) -> pd.DataFrame:
    """n validation songs as the model's feature frame (every column a float, is_explicit 0/1)."""
    return data()["validation"][0].head(n).reset_index(drop=True)


def songs(X: pd.DataFrame) -> pd.DataFrame:
    """The songs of X as a user reads them from the dump: integers, a boolean, the dump's other columns,
    an index of their own."""
    df = X.astype({"key": "int64", "mode": "int64", "time_signature": "int32", "duration_ms": "int64",
                   "is_explicit": bool})
    df.insert(0, "spotify_id", [f"id{i}" for i in range(len(df))])
    df.insert(1, "country", "US")
    df["snapshot_date"], df["popularity"] = "2024-08-16", 80
    df.index = [f"song-{i}" for i in range(len(df))][::-1]
    return df


def expected(pipeline, X: pd.DataFrame, index) -> pd.DataFrame:
    return pd.DataFrame(answered(pipeline.predict_proba(X)), index=index, columns=list(COUNTRIES))


def test_the_champion_takes_natural_dtypes_and_answers_a_probability_per_country(registry):
    _, pipeline, _, _ = registry
    X = features()
    df = songs(X)
    out = mlflow.pyfunc.load_model(CHAMPION).predict(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(COUNTRIES)
    assert (out.dtypes == np.float64).all() and list(out.index) == list(df.index)
    pd.testing.assert_frame_equal(out, expected(pipeline, X, df.index), check_exact=True)
    assert ((out > 0) & (out < 1)).all().all()


def test_missing_audio_features_and_other_safe_dtypes_are_taken(registry):
    """A new track without audio features (NaN, None or pandas NA), narrower integers, pandas nullable types."""
    _, pipeline, _, _ = registry
    model = mlflow.pyfunc.load_model(CHAMPION)
    X = features(4)
    X.loc[1, list(AUDIO)] = np.nan
    whole = songs(X.fillna(0))  # integers where the dump has them, before row 1 loses its audio features
    nan_ints = whole.astype({"key": "float64", "mode": "float64", "time_signature": "float64"})
    nullable = whole.astype({"key": "Int64", "mode": "Int8", "time_signature": "Int32", "is_explicit": "boolean",
                             "duration_ms": "int32"})
    nones = whole.astype({c: object for c in AUDIO})
    for df, missing in ((nan_ints, np.nan), (nullable, pd.NA), (nones, None)):
        df.loc[df.index[1], list(AUDIO)] = missing
    for df in (nan_ints, nullable, nones):
        pd.testing.assert_frame_equal(model.predict(df), expected(pipeline, X, df.index), check_exact=True)


@pytest.mark.parametrize("column, value, message", [
    ("key", "5", r"column 'key': not a number in 1 row\(s\), e.g. rows \['song-0'\] with values \['5'\]"),
    ("key", 5.5, r"column 'key': not a whole number .* values \[5.5\]"),
    ("mode", True, r"column 'mode': not a number"),
    ("time_signature", np.inf, r"column 'time_signature': infinite"),
    ("is_explicit", "yes", r"column 'is_explicit': not a boolean .* values \['yes'\]"),
    ("is_explicit", None, r"column 'is_explicit': missing"),
    ("danceability", "high", r"Failed to convert column danceability"),  # MLflow's own checks
    ("duration_ms", 200_000.5, r"Incompatible input types for column duration_ms"),
    ("tempo", "absent", r"Model is missing inputs \['tempo'\]"),
])
def test_a_value_the_model_cannot_take_is_a_clear_error(registry, column, value, message):
    df = songs(features(3))
    if value == "absent":
        df = df.drop(columns=column)
    else:
        df[column] = df[column].astype(object)
        df.loc[df.index[-1], column] = value
    with pytest.raises(MlflowException, match=message) as raised:
        mlflow.pyfunc.load_model(CHAMPION).predict(df)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400 from `mlflow models serve`


def test_the_signature_and_input_example_say_what_it_takes_and_answers(registry):
    _, pipeline, _, _ = registry
    signature = get_model_info(CHAMPION).signature
    inputs = {c.name: c.type for c in signature.inputs.inputs}
    assert list(inputs) == list(FEATURE_COLUMNS) and all(c.required for c in signature.inputs.inputs)
    assert {c for c, t in inputs.items() if isinstance(t, AnyType)} == {"key", "mode", "time_signature"}
    assert (inputs["duration_ms"], inputs["is_explicit"], inputs["tempo"]) == (
        DataType.long, DataType.boolean, DataType.double)
    assert signature.outputs.input_names() == list(COUNTRIES)
    assert all(t == DataType.double for t in signature.outputs.input_types())
    model = mlflow.pyfunc.load_model(CHAMPION)
    example = model.input_example
    assert len(example) == 5 and not example.isna().any().any()  # complete rows, not the first five
    assert example.dtypes.astype(str).to_dict() == {**{c: "float64" for c in FEATURE_COLUMNS}, "key": "int64",
                                                    "mode": "int64", "time_signature": "int64",
                                                    "duration_ms": "int64", "is_explicit": "bool"}
    assert model.predict(example).shape == (5, len(COUNTRIES))
    assert isinstance(model.get_raw_model(), Pipeline)


def test_every_version_loads_as_the_pipeline_for_serving_those_logged_before_the_pyfunc_too(registry):
    tracker, pipeline, new, old = registry
    X = features()
    flavors = {v: mlflow.models.Model.load(f"models:/hit_model/{v}").flavors for v in (new, old)}
    assert flavors[new]["python_function"]["loader_module"] == "hit_platform.adapters.pyfunc_flavor"
    assert flavors[old]["python_function"]["loader_module"] == "mlflow.sklearn"  # as registered then
    for version in (new, old):
        loaded = tracker.load_version(version)
        assert isinstance(loaded, Pipeline)
        assert np.array_equal(loaded.predict_proba(X), pipeline.predict_proba(X))
        predictor = load_predictor(tracker, version)  # what a serving replica does
        assert np.array_equal(predictor.predict(X.to_numpy()), pipeline.predict_proba(X))


def test_an_input_example_off_the_signature_is_refused_before_anything_is_logged():
    X = features()
    assert input_example(X.assign(spotify_id="x")).columns.tolist() == list(FEATURE_COLUMNS)
    with pytest.raises(ValueError, match=r"input example: .* column 'key': not a whole number"):
        input_example(X.assign(key=0.5))
    with pytest.raises(ValueError, match=r"input example: .* Incompatible input types for column duration_ms"):
        input_example(X.assign(duration_ms=1.5))
