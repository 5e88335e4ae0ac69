"""The MLflow format of a `hit_model` version: the sklearn flavor, and a python_function flavor of ours.

A version logged by `Tracker.log_candidate` is one pickled scikit-learn pipeline
(`model.pkl`) with two flavors:

- `sklearn`: `mlflow.sklearn.load_model(uri)` is the pipeline itself. The
  platform serves, evaluates and batch-predicts with it (`predict_proba` on a
  float matrix: the fast path), whatever the version: those registered before
  this module have this flavor too (with MLflow's own python_function, which
  answers class predictions; their artifacts are as they were logged).
- `python_function`, loaded by this module (`loader_module` in the MLmodel
  file): `mlflow.pyfunc.load_model(uri).predict(df)` takes one row per song
  with the dump's columns and their natural dtypes (extra columns are
  ignored) and answers a DataFrame with one probability column per country
  code, in `COUNTRIES` order, rows aligned with the input's, rounded as the
  serving API prints them (`domain.probabilities`). So `mlflow models serve`
  answers `/invocations` with the digits `/predict` answers.

The signature declares that. MLflow has no nullable integer type: `long`
refuses the NaN of a track whose audio features are missing, `double` refuses
int64 (it "cannot safely convert" it). So the integer columns that may be
missing (key, mode, time_signature) are declared `Any` and checked here
(whole numbers or missing, nothing else); MLflow checks the others itself.
"""

from __future__ import annotations

import importlib
import numbers
import os
import pkgutil
import sys

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, validate_schema
from mlflow.models.model import MLMODEL_FILE_NAME, ModelInfo
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.probabilities import DECIMALS, answered
from hit_platform.domain.schema import COLUMNS

# Models registered before the layout change pickled their classes as `hit_platform.models.*`;
# the same classes now live in `hit_platform.domain.models`, so a champion logged then still loads.
MOVED_MODULES = {"hit_platform.models": "hit_platform.domain.models"}

_INTEGER = ("INTEGER", "BIGINT")


def alias_moved_modules() -> None:
    for old, new in MOVED_MODULES.items():
        package = importlib.import_module(new)
        sys.modules.setdefault(old, package)
        for module in pkgutil.iter_modules(package.__path__):
            sys.modules.setdefault(f"{old}.{module.name}", importlib.import_module(f"{new}.{module.name}"))


def load_pipeline(model_uri: str):
    """The fitted pipeline of a logged or registered model (its sklearn flavor): any version, old or new."""
    alias_moved_modules()
    return mlflow.sklearn.load_model(model_uri)


# -- the signature ------------------------------------------------------------------------------------------

def _input_type(column: str) -> DataType | AnyType:
    c = COLUMNS[column]
    if c.sql_type == "BOOLEAN":
        return DataType.boolean
    if c.sql_type in _INTEGER:
        return DataType.long if c.required else AnyType()  # a nullable integer: checked here
    return DataType.double


NULLABLE_INTEGERS: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if isinstance(_input_type(c), AnyType))
SIGNATURE = ModelSignature(inputs=Schema([ColSpec(_input_type(c), c) for c in FEATURE_COLUMNS]),
                           outputs=Schema([ColSpec(DataType.double, c) for c in COUNTRIES]))
# Shown with the signature in the MLmodel file and the MLflow UI: what the signature cannot say.
METADATA = {
    "predict": f"one row per song -> {len(COUNTRIES)} columns, one per country code (the chance of reaching "
               f"its daily Top 50), rounded to {DECIMALS} decimals as the serving API answers",
    "nullable_integer_inputs": f"{', '.join(NULLABLE_INTEGERS)}: whole numbers, or missing (NaN/None) "
                               "for a track without audio features",
}


# -- what `mlflow.pyfunc.load_model` gives -------------------------------------------------------------------

class HitModel:
    """The python_function implementation: the pipeline, answering songs with a DataFrame of probabilities."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def get_raw_model(self):
        """The scikit-learn pipeline (`PyFuncModel.get_raw_model()`)."""
        return self.pipeline

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        X = feature_frame(model_input)
        P = np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)
        if P.shape != (len(X), len(COUNTRIES)):
            raise MlflowException(f"the model answered shape {P.shape} for {len(X)} songs; the contract is "
                                  f"({len(X)}, {len(COUNTRIES)}) in COUNTRIES order")
        finite = np.isfinite(P).all(axis=1)
        if not finite.all():
            raise MlflowException(f"the model answered non-finite probabilities for rows "
                                  f"{X.index[~finite][:5].tolist()} (a pipeline that does not impute, given "
                                  "missing features?)")
        return pd.DataFrame(answered(P), index=X.index, columns=list(COUNTRIES))


def _load_pyfunc(path: str, model_config=None) -> HitModel:
    """Called by `mlflow.pyfunc.load_model` with the path of `model.pkl` (the MLmodel file's `model_path`)."""
    return HitModel(load_pipeline(path if os.path.isdir(path) else os.path.dirname(path)))


# -- the songs a pyfunc takes --------------------------------------------------------------------------------

def feature_frame(songs: pd.DataFrame) -> pd.DataFrame:
    """The model's input (FEATURE_COLUMNS as float64, missing = NaN, index kept) from songs with the dump's
    columns; any other columns are ignored. Raises MlflowException (INVALID_PARAMETER_VALUE, so a 400 from
    `mlflow models serve`) naming the column, the rows and the values it cannot take."""
    if not isinstance(songs, pd.DataFrame):
        raise MlflowException.invalid_parameter_value(f"songs must be a pandas DataFrame with the columns "
                                                      f"{list(FEATURE_COLUMNS)}, got {type(songs).__name__}")
    absent = [c for c in FEATURE_COLUMNS if c not in songs.columns]
    if absent:
        raise MlflowException.invalid_parameter_value(f"songs: missing columns {absent}")
    return pd.DataFrame({c: _feature(c, songs[c]) for c in FEATURE_COLUMNS}, index=songs.index)


def _feature(name: str, s: pd.Series) -> np.ndarray:
    c = COLUMNS[name]
    v = _booleans(name, s) if c.sql_type == "BOOLEAN" else _numbers(name, s)
    missing = np.isnan(v)
    _refuse_where(name, s, ~missing & ~np.isfinite(v), "infinite", "finite numbers")
    if c.sql_type in _INTEGER:
        with np.errstate(invalid="ignore"):
            _refuse_where(name, s, ~missing & (v != np.trunc(v)), "not a whole number",
                          "whole numbers (3 or 3.0, not 5.5)" + ("" if c.required else ", or missing"))
    if c.required:
        _refuse_where(name, s, missing, "missing", "a value in every row (the dump always has one)")
    return v


def _numbers(name: str, s: pd.Series) -> np.ndarray:
    if s.dtype.kind in "iuf":  # numpy and pandas (Int64, Float64) numbers
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = s.isna().to_numpy()
    number = np.fromiter((isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) for x in s),
                         dtype=bool, count=len(s))
    _refuse_where(name, s, ~number & ~missing, "not a number", "numbers (a string or a boolean is not one)")
    return s.where(~missing, np.nan).to_numpy(dtype=np.float64)


def _booleans(name: str, s: pd.Series) -> np.ndarray:
    if s.dtype.kind == "b":  # numpy bool, pandas boolean
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = s.isna().to_numpy()
    boolean = np.fromiter((isinstance(x, (bool, np.bool_)) for x in s), dtype=bool, count=len(s))
    _refuse_where(name, s, ~boolean & ~missing, "not a boolean", "True or False")
    return s.where(~missing, np.nan).to_numpy(dtype=np.float64)


def _refuse_where(name: str, s: pd.Series, bad: np.ndarray, what: str, expected: str) -> None:
    if bad.any():
        rows, values = s.index[bad], s[bad]
        raise MlflowException.invalid_parameter_value(
            f"column {name!r}: {what} in {int(bad.sum())} row(s), e.g. rows {rows[:5].tolist()} with values "
            f"{values.iloc[:5].tolist()} (dtype {s.dtype}); expected {expected}")


def input_example(X: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Up to n songs of X (rows without missing values first) in the dump's natural dtypes: the integer
    columns as int64, is_explicit as bool, the rest float64. X may be a features frame (every column a
    float, is_explicit 0/1). Raises if the example does not honour SIGNATURE."""
    X = X[list(FEATURE_COLUMNS)]
    complete = X.dropna()
    rows = (complete if len(complete) else X).head(n).reset_index(drop=True)
    example = {}
    for name in FEATURE_COLUMNS:
        v, c = rows[name], COLUMNS[name]
        if c.sql_type == "BOOLEAN" and v.dtype.kind in "iuf" and v.isin((0, 1)).all():
            v = v.astype(bool)
        elif c.sql_type in _INTEGER and v.dtype.kind == "f" and v.notna().all() and (v == np.trunc(v)).all():
            v = v.astype(np.int64)
        example[name] = v
    example = pd.DataFrame(example)
    try:
        validate_schema(example, SIGNATURE.inputs)  # MLflow's checks
        feature_frame(example)  # and ours
    except MlflowException as exc:
        raise ValueError(f"input example: {len(example)} songs of the given frame do not honour the model's "
                         f"signature: {exc.message}") from exc
    return example


# -- logging (the flavor API `mlflow.models.Model.log` calls) ------------------------------------------------

def save_model(sk_model, path: str, mlflow_model: Model | None = None, **kwargs) -> None:
    """mlflow.sklearn.save_model, then this module as the python_function loader."""
    mlflow_model = Model() if mlflow_model is None else mlflow_model
    # predict_proba: every pipeline has it (not every one has predict), so the flavor is always written
    mlflow.sklearn.save_model(sk_model, path, mlflow_model=mlflow_model, pyfunc_predict_fn="predict_proba",
                              **kwargs)
    conf = mlflow_model.flavors[pyfunc.FLAVOR_NAME]
    conf[pyfunc.MAIN] = __name__
    conf.pop("predict_fn", None)  # the sklearn wrapper's; HitModel answers `predict`
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))


def log_model(pipeline, *, input_example: pd.DataFrame, pip_requirements: list[str],
              name: str = "model") -> ModelInfo:
    """Log `pipeline` to the active run in this format, with SIGNATURE and the given example songs."""
    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__], sk_model=pipeline,
                     signature=SIGNATURE, input_example=input_example, metadata=METADATA,
                     serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                     pip_requirements=pip_requirements)
