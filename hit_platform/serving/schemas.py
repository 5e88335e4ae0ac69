"""The serving API's request and response bodies.

A song is one flat object whose keys are the chart dump's column names. The
model's inputs are required, typed strictly and range-checked with the bounds
of `hit_platform.domain.schema` (via `features.feature_range`): no number is typed
here twice. Unknown keys are refused, so a misspelt feature never silently
falls back to a default. Songs validate to plain dicts (see `Song`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import core_schema
from typing_extensions import Annotated, NotRequired, Required, TypedDict

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS, feature_range
from hit_platform.domain.schema import COLUMNS, SONG_EXTRAS

_PY_TYPES = {"DOUBLE": float, "INTEGER": int, "BIGINT": int, "BOOLEAN": bool}

# Identifiers a client may send along; echoed into the inference log, not read by the model.
_EXTRA_MAX_LENGTH = {"spotify_id": 64, "name": 1_000, "artists": 2_000, "album_release_date": 32}

_SONG_CONFIG = ConfigDict(
    extra="forbid",  # an unknown key is an error that names it
    strict=True,  # "0.5" is not a number, 1 is not a boolean, "3" is not a key
    allow_inf_nan=False,  # NaN / Infinity literals are refused, so the model only sees finite floats
)


def _as_json_schema_integer(schema: dict) -> None:
    schema["type"] = "integer"
    schema.pop("multipleOf", None)


class _WholeNumber:
    """Then, exactly no fractional part: pydantic's `multiple_of` lets through anything within 1e-9 of
    a whole number (4.0000000001, 2.6e-42). A lax int step after the float checks (still in pydantic-core)
    refuses those as `int_from_float` and turns 3.0 into 3."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.chain_schema([handler(source), core_schema.int_schema(strict=False)])


def _feature_type(column: str) -> Any:
    c = COLUMNS[column]
    lo, hi = feature_range(column)
    py = _PY_TYPES[c.sql_type]
    if py is bool:  # is_explicit: a JSON boolean; the model reads it as 0/1
        return Annotated[bool, Field(description=c.description)]
    if py is int:
        # JSON Schema's integer: any number with a zero fractional part (3 and 3.0; never 5.5, "3" or true).
        # Checked by pydantic-core as a strict number that is a multiple of 1 (no Python per value), and
        # documented as an integer. The model reads every feature as a float anyway.
        return Annotated[float, Field(ge=lo, le=hi, multiple_of=1, description=f"{c.description} ({lo}..{hi}, "
                                      "an integer)", json_schema_extra=_as_json_schema_integer), _WholeNumber]
    return Annotated[py, Field(ge=lo, le=hi, description=f"{c.description} ({lo}..{hi})")]


def _extra_type(column: str) -> Any:
    c = COLUMNS[column]
    return Annotated[str | None, Field(max_length=_EXTRA_MAX_LENGTH[column],
                                       description=f"{c.description}; optional, logged, not used by the model")]


# A TypedDict rather than a BaseModel: validated songs stay plain dicts, which pydantic-core
# builds about twice as fast (10,000 songs: ~30 ms instead of ~60 ms), with the same errors.
Song = TypedDict("Song", {**{c: Required[_feature_type(c)] for c in FEATURE_COLUMNS},
                          **{c: NotRequired[_extra_type(c)] for c in SONG_EXTRAS}})
Song.__doc__ = "One song: the dump's audio features and flags (model inputs) plus optional identifiers."
Song.__pydantic_config__ = _SONG_CONFIG

SONG_ADAPTER: TypeAdapter = TypeAdapter(Song)


@lru_cache(maxsize=8)
def batch_model(max_batch: int) -> type:
    """`{"songs": [...]}` with 1 to `max_batch` songs (pydantic stops at the first song too many)."""
    batch = TypedDict("SongBatch", {"songs": Required[Annotated[list[Song], Field(
        min_length=1, max_length=max_batch, description=f"1 to {max_batch} songs (HIT_SERVE_MAX_BATCH)")]]})
    batch.__doc__ = f"Songs to predict in one call: 1 to {max_batch}."
    batch.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)
    return batch


class CountryProbability(BaseModel):
    country: str = Field(description="ISO 3166-1 alpha-2 code")
    probability: float = Field(ge=0, le=1)


class Prediction(BaseModel):
    """One song's answer: a probability for each of the 72 countries, and the k most likely."""
    request_id: str
    model_version: str = Field(description="registered version of `hit_model` that made this prediction")
    probabilities: dict[str, float] = Field(description=f"all {len(COUNTRIES)} countries, "
                                                        f"{COUNTRIES[0]}..{COUNTRIES[-1]}")
    top_countries: list[CountryProbability] = Field(description="the top_k countries, most likely first")


class BatchPrediction(BaseModel):
    request_id: str
    model_version: str
    predictions: list[Prediction] = Field(description="one per song, in the order sent")


class CountryExplanation(BaseModel):
    """One country's exact attributions: base + sum(attributions) == value (within 1e-9) on `scale`."""
    scale: Literal["log-odds", "probability, exact enumeration"] = Field(
        description="log-odds: value is the log-odds of `probability` (calibrations affine in log-odds); "
                    "probability, exact enumeration: value is `probability` itself (isotonic calibration)")
    base: float = Field(description="the value function of no feature: the mean over the background songs")
    attributions: dict[str, float] = Field(description="one per audio feature (exact Shapley values)")
    value: float = Field(description="the answer on `scale`: base + the sum of the attributions")
    probability: float = Field(ge=0, le=1, description="the probability /predict answers for this song and country")
    background_size: int = Field(description="background songs this country's value function averages over")


class Explanation(BaseModel):
    """Why this song, in each country: exact per-country attributions of the served model version."""
    request_id: str
    model_version: str = Field(description="registered version of `hit_model` that made and explained the answer")
    family: str
    value_function: str
    background: dict = Field(description="the version's declared background: seed, size, drawn_from (complete "
                                         "training songs it was drawn from), artifact (where MLflow keeps it)")
    countries: dict[str, CountryExplanation] = Field(description="the requested countries (all 72 by default), "
                                                                 "in COUNTRIES order")


class Health(BaseModel):
    status: str
    model_version: str
    inference_log: dict | None = Field(None, description="this replica's logger: its state (ok, buffering, "
                                                         "refusing), rows held in memory and journaled, journal "
                                                         "files waiting for the lake")
    reason: str | None = Field(None, description="why the inference log is not ok, when it is not")
    challenger_version: str | None = Field(None, description="the version shadowing the champion, if any")
    batching: dict | None = Field(None, description="/predict batching in this replica: whether the served version "
                                                    "is batched (its batches answer the same bits as single songs), "
                                                    "HIT_SERVE_BATCH_MAX_SIZE, HIT_SERVE_BATCH_WAIT_MS, model calls "
                                                    "and rows so far, the largest batch")
    fast_path_requests: int | None = Field(None, description="/predict requests this replica answered on its lean "
                                                             "path (no query or a plain top_k); the rest went "
                                                             "through FastAPI's routing, with the same answers")
    shadow: dict | None = Field(None, description="who scores for the challenger (the serving process as it "
                                                  "commits the journal, or this replica on a cluster), and "
                                                  "then its rows scored and last error")
    node: dict | None = Field(None, description="the Ray node this replica runs on: node_id, node_ip")
    placement: dict | None = Field(None, description="on a Ray cluster: every replica of the deployment with its "
                                                     "node and state, and the running replicas per node")


class ModelCard(BaseModel):
    """What is served and where it came from."""
    name: str
    version: str
    source: str = Field(description="MLflow model URI the version was registered from")
    mlflow_run_id: str
    mlflow_tracking_uri: str
    lake_snapshot_id: str | None = Field(description="DuckLake snapshot the training data was read at")
    code_version: dict[str, str | None] = Field(description="git_commit and git_dirty of the training code")
    trained_at: str | None = Field(description="start of the MLflow training run (UTC, ISO 8601)")
    dagster_run_id: str | None
    family: str | None
    tags: dict[str, str] = Field(description="all tags of the model version")
    loaded_at: str = Field(description="when this replica loaded the version (UTC)")
    input_features: list[str]
    countries: list[str]
    array_input: bool = Field(description="whether the model is fed float arrays (same answers, less overhead)")
    last_update_error: str | None = Field(None, description="why the last requested model swap failed, if it did")
    explain: dict | None = Field(None, description="/explain for this version: its declared background, or why "
                                                   "it cannot be explained")
    challenger: dict | None = Field(None, description="the registry's `challenger` version this replica scores "
                                                      "every request with off the response path (HIT_PROMOTION_MODE"
                                                      "=shadow): its name, version, lineage and loaded_at; null "
                                                      "when none")


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where the problem is, e.g. ['body', 'songs', 3, 'energy']")
    msg: str
    type: str


class ApiError(Exception):
    """A refusal: HTTP status and FastAPI-shaped detail items."""

    def __init__(self, status: int, detail: list[dict]):
        super().__init__(detail[0]["msg"] if detail else str(status))
        self.status = status
        self.detail = detail


class ErrorBody(BaseModel):
    detail: list[ErrorItem]
    request_id: str | None = None
