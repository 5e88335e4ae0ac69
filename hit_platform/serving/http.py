"""What a client sees: the routes, the error shapes and the OpenAPI document of the serving API.

    POST /predict          one song -> 72 probabilities and the top_k countries
    POST /predict/batch    {"songs": [...]} -> one prediction per song, one model call
                           (or Arrow stream in / out, see arrow_batch.py)
    POST /explain          one song -> exact per-country attributions (?country=BR&country=CZ; all by
                           default), see explaining.py
    GET  /healthz          200 with the model version once a model is loaded
    GET  /model            what is served and where it came from (MLflow, lake snapshot, code, Dagster run)
    GET  /openapi.json, /docs

Request bodies are read raw and validated by pydantic-core in one pass
(JSON parsing included), so every refusal is a 4xx whose `detail` names the
field: `{"detail": [{"loc": [...], "msg": ..., "type": ...}], "request_id": ...}`
(FastAPI's shape). Every answer to /predict* and /explain goes to the inference log (its `endpoint`
column says which route answered).

`build_app(replica)` makes one FastAPI app per replica: each route and error
handler holds the replica that answers (`replica.ModelReplica`), so nothing
is looked up in a module global.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations (`Request`,
# the query parameter) as real types.
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from collections.abc import AsyncIterator
from typing import Protocol

import pydantic_core
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving import arrow_batch
from hit_platform.serving.ingress import INGRESS_HEADER, REQUEST_ID_HEADER, trusted_request_id
from hit_platform.serving.schemas import (SONG_ADAPTER, ApiError, BatchPrediction, ErrorBody, Explanation, Health,
                                          ModelCard, Prediction, batch_model)
from hit_platform.settings import ServeConfig

log = logging.getLogger(__name__)

_JSON_POSITION = re.compile(r"line (\d+) column (\d+)")
ERRORS = {
    400: {"model": ErrorBody, "description": "malformed JSON (the message gives line and column)"},
    413: {"model": ErrorBody, "description": "more songs (or bytes) than HIT_SERVE_MAX_BATCH allows"},
    415: {"model": ErrorBody, "description": "the body is not application/json"},
    422: {"model": ErrorBody, "description": "a field is missing, unknown, of the wrong type or out of range"},
    503: {"model": ErrorBody, "description": "the inference log cannot take the request (its journal cannot be "
                                             "written and its memory buffer is full); retry after Retry-After seconds",
          "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}},
}
TOP_K = Query(5, ge=1, le=len(COUNTRIES), description="how many of the most likely countries to list")
PREDICT_PATHS = ("/predict", "/predict/batch")
LOGGED_PATHS = (*PREDICT_PATHS, "/explain")
COUNTRY = Query([], description=f"a country to explain, repeated for several (?country=BR&country=CZ); all "
                                  f"{len(COUNTRIES)} when none is given",
                json_schema_extra={"items": {"type": "string", "enum": list(COUNTRIES)}})
EXPLAIN_ERRORS = {**ERRORS, 409: {"model": ErrorBody, "description": "the served model version cannot be explained: "
                                  "it has no declared background (registered before backgrounds were declared; "
                                  "train a new version) or a model part with no exact attributions"}}


class Answerer(Protocol):
    """What the routes need from a replica (see `replica.ModelReplica`)."""

    config: ServeConfig
    fast_path_requests: int  # /predict requests answered by fast_path.PredictFastPath
    ingress_secret: str | None  # what our ingress stamps beside the request ids it sets (serving.ingress)

    async def answer_song(self, ctype: str, length: str | None, body, k: int, request_id: str,
                          received_at: datetime, t0: float) -> Response: ...

    async def answer_batch(self, ctype: str, length: str | None, accept: str, body, k: int, request_id: str,
                           received_at: datetime, t0: float) -> Response: ...

    async def answer_explain(self, ctype: str, length: str | None, body, countries: list[str] | None,
                             request_id: str, received_at: datetime, t0: float) -> Response: ...

    def refuse(self, exc: ApiError, *, request_id: str, received_at: datetime, t0: float, endpoint: str,
               body: bytes | None, top_k: int | None) -> Response: ...

    def health(self) -> tuple[bool, dict]: ...

    def card(self) -> dict: ...


def json_bytes(obj) -> bytes:
    return pydantic_core.to_json(obj)  # Rust serializer: ~10x the stdlib on 72-float objects


def error_body(detail: list[dict], request_id: str) -> bytes:
    """Every refusal's body: FastAPI's `detail` shape plus the request id it is logged under."""
    return json_bytes({"detail": detail, "request_id": request_id})


def _detail_items(exc: ValidationError, prefix: tuple = ("body",), limit: int = 50) -> list[dict]:
    items = []
    errors = exc.errors(include_url=False, include_context=False)
    for e in errors[:limit]:
        item = {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        if isinstance(e.get("input"), (str, int, float, bool)) and len(str(e["input"])) <= 200:
            item["input"] = e["input"]
        items.append(item)
    if len(errors) > limit:
        items.append({"loc": list(prefix), "msg": f"... and {len(errors) - limit} more errors", "type": "truncated"})
    return items


def parse_body(body: bytes, adapter: TypeAdapter, *, max_batch: int | None = None):
    """Validate a raw JSON body; raise ApiError 400 (bad JSON), 413 (too many songs) or 422 (bad fields)."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        if errors and errors[0]["type"] == "json_invalid":
            msg = errors[0]["msg"]
            item = {"loc": ["body"], "msg": msg, "type": "json_invalid"}
            if m := _JSON_POSITION.search(msg):
                item["ctx"] = {"line": int(m.group(1)), "column": int(m.group(2))}
            raise ApiError(400, [item]) from None
        if max_batch is not None and any(e["type"] == "too_long" and tuple(e["loc"]) == ("songs",) for e in errors):
            raise ApiError(413, [{"loc": ["body", "songs"], "type": "too_long",
                                  "msg": f"at most {max_batch} songs per request (HIT_SERVE_MAX_BATCH)"}]) from None
        raise ApiError(422, _detail_items(exc)) from None


def too_large(limit: int, config: ServeConfig) -> ApiError:
    """413 for a body past `limit` bytes, however it was sent (a Content-Length, chunks)."""
    return ApiError(413, [{"loc": ["body"], "type": "too_large",
                           "msg": f"body over {limit} bytes (HIT_SERVE_MAX_BATCH={config.max_batch} songs)"}])


async def read_limited(chunks: AsyncIterator[bytes], config: ServeConfig) -> bytes:
    """A request body read a chunk at a time, whatever its Transfer-Encoding: 413 (`too_large`) as soon as
    it passes `config.max_body_bytes()`, with nothing more read, so a replica holds at most that much."""
    limit, parts, size = config.max_body_bytes(), [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit, config)
        parts.append(chunk)
    return b"".join(parts)


def check_content_type(ctype: str, *, arrow: bool = False) -> bool:
    """Whether a body of content-type `ctype` is an Arrow stream (allowed with `arrow`); JSON otherwise, else 415."""
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return False
    if arrow and arrow_batch.is_arrow(media):
        return True
    expected = f"application/json or {arrow_batch.ARROW_STREAM}" if arrow else "application/json"
    raise ApiError(415, [{"loc": ["header", "content-type"], "type": "content_type",
                          "msg": f"expected {expected}, got {ctype or 'no content-type'}"}])


def given_request_id(header: str | None, stamp: str | None, secret: str | None) -> str:
    """The id our HAProxy ingress set, known by the secret it stamps beside it (the same id on a retry to
    a second replica, so the log keeps the request once); else a fresh UUID, whatever a client sent."""
    return trusted_request_id(header, stamp, secret) or str(uuid.uuid4())


def request_id_of(request: Request, replica: "Answerer") -> str:
    """The id this request is logged and answered under (see `given_request_id`)."""
    return given_request_id(request.headers.get(REQUEST_ID_HEADER), request.headers.get(INGRESS_HEADER),
                            replica.ingress_secret)


def build_app(replica: Answerer) -> FastAPI:
    """The FastAPI app answered by `replica`: routes, error handlers and the OpenAPI document."""
    app = FastAPI(
        title="hit_platform",
        summary="Per-country Spotify Top 50 hit probabilities from a song's audio features",
        description=(f"Send a song's audio features; get the probability that it reaches the daily Top 50 chart of "
                     f"each of {len(COUNTRIES)} countries. Inputs and ranges follow the chart dump's columns."),
        version="1",
    )

    def refuse_outside_route(request: Request, status: int, detail: list[dict]) -> Response:
        """Errors FastAPI raises before our handlers run (bad top_k) or unexpected failures."""
        request_id = request_id_of(request, replica)
        if request.url.path in LOGGED_PATHS:  # logged like every other answer to /predict* and /explain
            return replica.refuse(ApiError(status, detail), request_id=request_id, received_at=datetime.now(
                timezone.utc), t0=time.perf_counter(), endpoint=request.url.path, body=None, top_k=None)
        return Response(error_body(detail, request_id), status_code=status, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return refuse_outside_route(request, 422, detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return refuse_outside_route(request, 500, [{"loc": [], "type": "internal_error",
                                                    "msg": f"{type(exc).__name__}: {exc}"}])

    def openapi() -> dict:
        """FastAPI's document plus the Song and SongBatch schemas (bodies are validated by hand, see above)."""
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                             description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for adapter in (SONG_ADAPTER, TypeAdapter(batch_model(replica.config.max_batch))):
            s = adapter.json_schema(ref_template="#/components/schemas/{model}")
            components.update(s.pop("$defs", {}))
            components[s.get("title", "Song")] = s
        app.openapi_schema = schema
        return schema

    app.openapi = openapi

    @app.post("/predict", response_model=Prediction, responses=ERRORS, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Song"}}}}})
    async def predict(request: Request, top_k: int = TOP_K) -> Response:
        """One song's probability of charting in each of the 72 countries."""
        t0, received_at = time.perf_counter(), datetime.now(timezone.utc)
        return await replica.answer_song(request.headers.get("content-type", ""),
                                         request.headers.get("content-length"),
                                         lambda: read_limited(request.stream(), replica.config), top_k,
                                         request_id_of(request, replica), received_at, t0)

    @app.post("/predict/batch", response_model=BatchPrediction, responses={**ERRORS, 200: {"content": {
        arrow_batch.ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}}, "description":
        f"JSON; or with `Accept: {arrow_batch.ARROW_STREAM}` one Arrow stream: a float64 column per country, "
        "`top_countries`, request_id and model_version in the schema metadata"}}, openapi_extra={"requestBody": {
        "required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SongBatch"}},
            arrow_batch.ARROW_STREAM: {"schema": {"type": "string", "format": "binary", "description":
                                                  "an Arrow IPC stream, one column per Song field"}}}}})
    async def predict_batch(request: Request, top_k: int = TOP_K) -> Response:
        """Many songs in one call (1 to HIT_SERVE_MAX_BATCH); predictions come back in the order sent."""
        t0, received_at = time.perf_counter(), datetime.now(timezone.utc)
        return await replica.answer_batch(request.headers.get("content-type", ""),
                                          request.headers.get("content-length"), request.headers.get("accept", ""),
                                          lambda: read_limited(request.stream(), replica.config), top_k,
                                          request_id_of(request, replica), received_at, t0)

    @app.post("/explain", response_model=Explanation, responses=EXPLAIN_ERRORS, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Song"}}}}})
    async def explain(request: Request, country: list[str] = COUNTRY) -> Response:
        """Why this song, in each country: for one song (the body /predict takes), per country the base value
        and one exact attribution per audio feature, which add up to the served answer on the declared scale
        ("log-odds", or "probability, exact enumeration" for an isotonic calibration) within 1e-9: interventional
        Shapley values against the served version's declared background of training songs."""
        t0, received_at = time.perf_counter(), datetime.now(timezone.utc)
        return await replica.answer_explain(request.headers.get("content-type", ""),
                                            request.headers.get("content-length"),
                                            lambda: read_limited(request.stream(), replica.config), country,
                                            request_id_of(request, replica), received_at, t0)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health, "description":
                                                                 "the inference log can take nothing more"}})
    def healthz() -> Response:
        """200 with the served model version (the replica only exists once a model is loaded); 503 while
        the inference log can take nothing more (the body says why)."""
        ok, body = replica.health()
        return Response(json_bytes(body), status_code=200 if ok else 503, media_type="application/json")

    @app.get("/model", response_model=ModelCard)
    def model_card() -> Response:
        """The served model version and its lineage: MLflow run, lake snapshot, code version, Dagster run."""
        return Response(json_bytes(replica.card()), media_type="application/json")

    return app
