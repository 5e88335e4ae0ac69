"""The HTTP API: a FastAPI app, served by the Ray Serve deployment `HitModelServer`.

    POST /predict          one song -> 72 probabilities and the top_k countries
    POST /predict/batch    {"songs": [...]} -> one prediction per song, one model call
                           (or Arrow stream in / out, see arrow_batch.py)
    GET  /healthz          200 with the model version once a model is loaded
    GET  /model            what is served and where it came from (MLflow, lake snapshot, code, Dagster run)
    GET  /openapi.json, /docs

Request bodies are read raw and validated by pydantic-core in one pass
(JSON parsing included), so every refusal is a 4xx whose `detail` names the
field: `{"detail": [{"loc": [...], "msg": ..., "type": ...}], "request_id": ...}`
(FastAPI's shape). Every answer to /predict* goes to the inference log.
"""

# No `from __future__ import annotations` here: FastAPI must see the real `Request` type on the
# route methods after Serve rewrites them into class-based views.
import asyncio
import logging
import os
import re
import time
import uuid
from datetime import datetime, timezone

import pydantic_core
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from ray import serve
from starlette.concurrency import run_in_threadpool

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving import arrow_batch, loopback
from hit_platform.settings import ServeConfig
from hit_platform.serving.inference_log import InferenceLogger, JournalCommitter, Served, truncate_body
from hit_platform.domain.probabilities import answered
from hit_platform.serving.encoding import batch_bytes, prediction_head, song_answers
from hit_platform.serving.predictor import Predictor, features_of, lineage_of, load_predictor, top_k, version_info
from hit_platform.serving.batching import MicroBatcher
from hit_platform.serving.schemas import (SONG_ADAPTER, SONG_EXTRAS, ApiError, BatchPrediction, ErrorBody, Health,
                                          ModelCard, Prediction, batch_model)
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import Tracker

log = logging.getLogger(__name__)

# Runs in every process that imports this module, i.e. in each replica before its servers start.
loopback.patch_replica_grpc()

APP_NAME = "hit_platform"
DEPLOYMENT_NAME = "HitModelServer"
_JSON_POSITION = re.compile(r"line (\d+) column (\d+)")

app = FastAPI(
    title="hit_platform",
    summary="Per-country Spotify Top 50 hit probabilities from a song's audio features",
    description=(f"Send a song's audio features; get the probability that it reaches the daily Top 50 chart of "
                 f"each of {len(COUNTRIES)} countries. Inputs and ranges follow the chart dump's columns."),
    version="1",
)

_ERRORS = {
    400: {"model": ErrorBody, "description": "malformed JSON (the message gives line and column)"},
    413: {"model": ErrorBody, "description": "more songs (or bytes) than HIT_SERVE_MAX_BATCH allows"},
    415: {"model": ErrorBody, "description": "the body is not application/json"},
    422: {"model": ErrorBody, "description": "a field is missing, unknown, of the wrong type or out of range"},
    503: {"model": ErrorBody, "description": "the inference log cannot take the request (its journal cannot be "
                                             "written and its memory buffer is full); retry after Retry-After seconds",
          "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}},
}
_TOP_K = Query(5, ge=1, le=len(COUNTRIES), description="how many of the most likely countries to list")


def _json(obj) -> bytes:
    return pydantic_core.to_json(obj)  # Rust serializer: ~10x the stdlib on 72-float objects


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


# The replica's server object, for the app-level handlers below. `@serve.ingress` freezes a copy
# of `app` when the class is decorated, so handlers and the OpenAPI hook are installed before it,
# and they reach the server through this module global (one deployment instance per replica).
_SERVER = None


def _register(server) -> None:
    # A module-level function, so it runs in this module's namespace: the deployment class itself
    # travels to the replica by value (its module name is taken by the Deployment object), and a
    # `global` statement inside its methods would set a copy.
    global _SERVER
    _SERVER = server


def request_id_of(request: Request, config: ServeConfig) -> str:
    """The id this request is logged and answered under (see `given_request_id`)."""
    return given_request_id(request.headers.get(loopback.REQUEST_ID_HEADER), config)


def given_request_id(header: str | None, config: ServeConfig) -> str:
    """The id our HAProxy ingress set (the same on a retry to a second replica, so the log keeps the
    request once), else a fresh UUID."""
    if config.fast_proxy and header and len(header) <= 64:
        return header
    return str(uuid.uuid4())


def _refuse_outside_route(request: Request, status: int, detail: list[dict]) -> Response:
    """Errors FastAPI raises before our handlers run (bad top_k) or unexpected failures."""
    server = _SERVER
    now = datetime.now(timezone.utc)
    request_id = request_id_of(request, server.config) if server is not None else str(uuid.uuid4())
    exc = ApiError(status, detail)
    path = request.url.path
    if server is not None and path in ("/predict", "/predict/batch"):
        return server.refuse(exc, request_id=request_id, received_at=now, t0=time.perf_counter(), endpoint=path,
                             body=None, top_k=None)
    return Response(_json({"detail": detail, "request_id": request_id}), status_code=status,
                    media_type="application/json")


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return _refuse_outside_route(request, 422, detail)


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return _refuse_outside_route(request, 500, [{"loc": [], "type": "internal_error",
                                                 "msg": f"{type(exc).__name__}: {exc}"}])


def _openapi() -> dict:
    """FastAPI's document plus the Song and SongBatch schemas (bodies are validated by hand, see above)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                         routes=app.routes)
    server = _SERVER
    max_batch = server.config.max_batch if server is not None else ServeConfig.model_fields["max_batch"].default
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for adapter in (SONG_ADAPTER, TypeAdapter(batch_model(max_batch))):
        s = adapter.json_schema(ref_template="#/components/schemas/{model}")
        components.update(s.pop("$defs", {}))
        components[s.get("title", "Song")] = s
    app.openapi_schema = schema
    return schema


app.openapi = _openapi


def _plain_top_k(query: bytes) -> int | None:
    """top_k of a query string that is empty or exactly `top_k=N` with N in range; None for anything
    else (FastAPI then validates it and refuses as documented)."""
    if not query:
        return _TOP_K.default
    name, _, value = query.partition(b"=")
    if name != b"top_k" or not value.isdigit() or len(value) > 2:
        return None
    k = int(value)
    return k if 1 <= k <= len(COUNTRIES) else None


class PredictFastPath:
    """POST /predict answered without FastAPI's routing, Request object and parameter solving.

    Under load /predict is the replica's whole work, and FastAPI's machinery around the handler
    cost about a fifth of a replica's CPU per request (py-spy). This ASGI layer answers a
    `POST /predict` whose query is empty or a plain in-range `top_k` through the very method the
    FastAPI route calls (`answer_song`: the same checks, refusals, bytes and log row). Everything
    else, a malformed query included, goes on to FastAPI as before.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        server = _SERVER
        if (server is None or scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"][len(scope.get("root_path", "")):] != "/predict"
                or (k := _plain_top_k(scope["query_string"])) is None):
            return await self.app(scope, receive, send)
        t0, received_at = time.perf_counter(), datetime.now(timezone.utc)
        ctype = length = given = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"content-type" and ctype is None:
                ctype = value.decode("latin-1")
            elif name == b"content-length" and length is None:
                length = value.decode("latin-1")
            elif name == _REQUEST_ID_HEADER and given is None:
                given = value.decode("latin-1")

        async def body() -> bytes:
            chunks, more = [], True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            return b"".join(chunks)

        server.fast_path_requests += 1
        try:
            response = await server.answer_song(ctype or "", length, body, k, given_request_id(given, server.config),
                                                received_at, t0)
        except _ClientGone:
            return  # nobody to answer: nothing answered, nothing logged
        await response(scope, receive, send)


class _ClientGone(Exception):
    pass


_REQUEST_ID_HEADER = loopback.REQUEST_ID_HEADER.encode()
app.add_middleware(PredictFastPath)


@serve.deployment(name=DEPLOYMENT_NAME, graceful_shutdown_timeout_s=20, health_check_period_s=5)
@serve.ingress(app)
class HitModelServer:
    """A replica: the champion model, its inference logger, and the routes."""

    def __init__(self, settings: dict, config: dict):
        self.settings = Settings(**settings)
        self.config = ServeConfig(**config)
        self.tracker = Tracker(self.settings)
        self.model: Predictor = load_predictor(self.tracker)  # models:/hit_model@champion
        # concurrent /predict calls share one model call (when the version's batches answer the same bits)
        self.batcher = MicroBatcher(self.config.batch_max_size, self.config.batch_wait_ms, finish=song_answers)
        self.batcher.admit(self.model)
        # models:/hit_model@challenger's lineage, set by reconfigure: its scores are computed where the
        # journal is committed (serving.shadow), never in the request path
        self.challenger: dict | None = None
        self.update_error: str | None = None
        self.fast_path_requests = 0  # /predict requests answered by PredictFastPath (the rest went through FastAPI)
        self.batch_adapter = TypeAdapter(batch_model(self.config.max_batch))
        journal = self.config.journal(self.settings)
        committer = JournalCommitter(Lake(self.settings), journal) if self.config.replicas_commit() else None
        self.logger = InferenceLogger(journal, flush_seconds=self.config.log_flush_seconds,
                                      batch_rows=self.config.log_batch_rows, buffer_rows=self.config.log_buffer_rows,
                                      committer=committer, on_trouble=self._alert_log_trouble).start()
        _register(self)
        log.info("serving %s version %s (array input: %s)", self.model.info.name, self.model.version,
                 self.model.array_input)

    async def reconfigure(self, user_config: dict) -> None:
        """Swap in the model versions named by the deployment's user_config, without dropping requests:
        `model_version` answers, `challenger_version` (or none) shadows.

        A new version loads in a worker thread while this replica keeps answering with the old
        one; the swap is one attribute assignment, and each request reads the attribute once. A
        version that fails to load leaves the old one in place and is reported by /model.
        """
        config = user_config or {}
        version = str(config.get("model_version") or "")
        if version and version != self.model.version:
            try:
                new = await asyncio.to_thread(load_predictor, self.tracker, version)
                await asyncio.to_thread(self.batcher.admit, new)  # decided before it answers
            except Exception as exc:
                self.update_error = f"version {version}: {type(exc).__name__}: {exc}"
                log.error("model swap to version %s failed; still serving %s: %s", version, self.model.version, exc)
                return
            old, self.model, self.update_error = self.model, new, None
            log.info("model swapped: version %s -> %s", old.version, new.version)
        shadow = str(config.get("challenger_version") or "")
        current = self.challenger["version"] if self.challenger is not None else ""
        if shadow == current:
            return
        committer = self.logger.committer  # this replica commits its own journal (Ray cluster): it scores too
        card, predictor = None, None
        if shadow:
            try:
                if committer is not None:
                    predictor = await asyncio.to_thread(load_predictor, self.tracker, shadow)
                    card = {**predictor.lineage, "loaded_at": predictor.loaded_at}
                else:
                    card = await asyncio.to_thread(lambda: lineage_of(self.tracker, version_info(self.tracker, shadow)))
            except Exception as exc:
                self.update_error = f"version {shadow}: {type(exc).__name__}: {exc}"
                log.error("challenger version %s cannot be loaded; nothing shadows: %s", shadow, exc)
        if committer is not None:
            committer.set_challenger(predictor)
        self.challenger = card
        if card is not None:
            self.update_error = None
            log.info("challenger version %s shadows the champion", shadow)
        else:
            log.info("nothing shadows the champion (was version %s)", current or "none")

    def __del__(self):
        # Serve calls this on graceful shutdown: write what the log still holds.
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()

    def _shadow_stats(self) -> dict:
        """Who scores for the challenger; this replica's own figures when it commits its journal itself."""
        committer = self.logger.committer
        if committer is None:
            return {"scored_by": "the serving process, as it commits the inference-log journal "
                                 "(ops.shadow_log, within HIT_SERVE_LOG_COMMIT_SECONDS of each answer)"}
        stats = committer.stats()
        return {"scored_by": "this replica, as it commits its inference-log journal",
                "shadowed_rows": stats["shadowed_rows"], "last_error": stats["shadow_error"]}

    def _alert_log_trouble(self, state: str, reason: str) -> None:
        """The journal stopped (or started again) taking records: say so in ops.alerts (best effort:
        the lake may sit on the same full disk; the replica's log and /healthz say it too)."""
        from hit_platform.adapters.alerts import raise_alert

        pid = os.getpid()
        what = {"buffering": f"replica {pid} cannot write its inference-log journal ({reason}); answers are kept "
                             f"in memory, at most {self.config.log_buffer_rows} rows",
                "refusing": f"replica {pid} answers 503: its inference-log journal cannot be written ({reason}) "
                            f"and its memory buffer is full ({self.config.log_buffer_rows} rows)",
                "ok": f"replica {pid} writes its inference-log journal again; the rows kept in memory are written"}[state]
        try:
            raise_alert(Lake(self.settings), kind="inference_log", severity="warning" if state == "ok" else "error",
                        what=what, where=f"serving replica {pid}",
                        alert_id=f"inference_log:{state}:{pid}:{int(time.time())}")
        except Exception as exc:
            log.error("could not record the alert %r: %s", what, exc)

    # -- helpers --------------------------------------------------------------------------------
    def _log_full(self, request_id: str) -> Response | None:
        """503 with Retry-After when the log can take nothing more: no answer that cannot be logged."""
        if self.logger.accepting:
            return None
        reason = self.logger.refuse()
        return Response(_json({"detail": [{"loc": [], "type": "log_unavailable", "msg": reason}],
                               "request_id": request_id}), status_code=503, media_type="application/json",
                        headers={"Retry-After": str(max(1, round(self.config.log_flush_seconds * 5)))})

    async def _read(self, length: str | None, body) -> bytes:
        """The body (`await body()`), refused with 413 first when its content-length is over the limit."""
        if length and length.isdigit() and int(length) > self.config.max_body_bytes():
            raise ApiError(413, [{"loc": ["body"], "type": "too_large",
                                  "msg": f"body of {int(length)} bytes exceeds {self.config.max_body_bytes()} "
                                         f"(HIT_SERVE_MAX_BATCH={self.config.max_batch} songs)"}])
        return await body()

    def refuse(self, exc: ApiError, *, request_id: str, received_at: datetime, t0: float, endpoint: str,
               body: bytes | None, top_k: int | None) -> Response:
        content = _json({"detail": exc.detail, "request_id": request_id})
        self.logger.log(Served(request_id, received_at, endpoint, exc.status, (time.perf_counter() - t0) * 1e3,
                               None, top_k, request_body=truncate_body(body),
                               response_body=content.decode()))
        return Response(content, status_code=exc.status, media_type="application/json")

    @staticmethod
    def _predict(X, k: int, model: Predictor):
        """Answered probabilities (as printed) and top-k indices of a feature matrix: one model call."""
        P = answered(model.predict(X))
        return P, top_k(P, k)[0]

    # -- routes ---------------------------------------------------------------------------------
    @app.post("/predict", response_model=Prediction, responses=_ERRORS, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Song"}}}}})
    async def predict(self, request: Request, top_k: int = _TOP_K) -> Response:
        """One song's probability of charting in each of the 72 countries."""
        t0, received_at = time.perf_counter(), datetime.now(timezone.utc)
        return await self.answer_song(request.headers.get("content-type", ""), request.headers.get("content-length"),
                                      request.body, top_k, request_id_of(request, self.config), received_at, t0)

    async def answer_song(self, ctype: str, length: str | None, body, k: int, request_id: str,
                          received_at: datetime, t0: float) -> Response:
        """/predict's answer, for the FastAPI route and for `PredictFastPath` alike."""
        if (full := self._log_full(request_id)) is not None:
            return full
        model, raw = self.model, None  # one model for the whole request, even during a swap
        try:
            check_content_type(ctype)
            raw = await self._read(length, body)
            song = parse_body(raw, SONG_ADAPTER)
        except ApiError as exc:
            return self.refuse(exc, request_id=request_id, received_at=received_at, t0=t0, endpoint="/predict",
                               body=raw, top_k=k)
        X = features_of([song])
        P, tail = await self.batcher.predict(model, X[0], k)  # answered and encoded with its batch's other songs
        content = prediction_head(request_id, model.version) + tail
        extras = [tuple(song.get(c) for c in SONG_EXTRAS)]
        self.logger.log(Served(request_id, received_at, "/predict", 200, (time.perf_counter() - t0) * 1e3,
                               model.version, k, X, P, extras))
        return Response(content, media_type="application/json")

    @app.post("/predict/batch", response_model=BatchPrediction, responses={**_ERRORS, 200: {"content": {
        arrow_batch.ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}}, "description":
        f"JSON; or with `Accept: {arrow_batch.ARROW_STREAM}` one Arrow stream: a float64 column per country, "
        "`top_countries`, request_id and model_version in the schema metadata"}}, openapi_extra={"requestBody": {
        "required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SongBatch"}},
            arrow_batch.ARROW_STREAM: {"schema": {"type": "string", "format": "binary", "description":
                                                  "an Arrow IPC stream, one column per Song field"}}}}})
    async def predict_batch(self, request: Request, top_k: int = _TOP_K) -> Response:
        """Many songs in one call (1 to HIT_SERVE_MAX_BATCH); predictions come back in the order sent."""
        t0, received_at, request_id = time.perf_counter(), datetime.now(timezone.utc), request_id_of(request, self.config)
        if (full := self._log_full(request_id)) is not None:
            return full
        model, body = self.model, None
        try:
            arrow_in = check_content_type(request.headers.get("content-type", ""), arrow=True)
            body = await self._read(request.headers.get("content-length"), request.body)
        except ApiError as exc:
            return self.refuse(exc, request_id=request_id, received_at=received_at, t0=t0,
                               endpoint="/predict/batch", body=None, top_k=top_k)
        arrow_out = arrow_batch.wants_arrow(request.headers.get("accept", ""))

        def work():  # parse, predict, serialize, journal: CPU and disk, so off the event loop
            if arrow_in:
                X, extras = arrow_batch.read_songs(body, self.config.max_batch)
            else:
                songs = parse_body(body, self.batch_adapter, max_batch=self.config.max_batch)["songs"]
                X, extras = features_of(songs), [tuple(s.get(c) for c in SONG_EXTRAS) for s in songs]
            P, top = self._predict(X, top_k, model)
            if arrow_out:
                content = arrow_batch.predictions_stream(P, top, request_id, model.version)
            else:
                content = batch_bytes(P, top, request_id, model.version)
            self.logger.log(Served(request_id, received_at, "/predict/batch", 200, (time.perf_counter() - t0) * 1e3,
                                   model.version, top_k, X, P, extras))  # journaled before the answer leaves
            return content

        try:
            content = await run_in_threadpool(work)
        except ApiError as exc:
            return self.refuse(exc, request_id=request_id, received_at=received_at, t0=t0,
                               endpoint="/predict/batch", body=None if arrow_in else body, top_k=top_k)
        if arrow_out:
            # the request id travels in the stream's metadata (Serve owns the x-request-id header)
            return Response(content, media_type=arrow_batch.ARROW_STREAM, headers={"x-model-version": model.version})
        return Response(content, media_type="application/json")

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health, "description":
                                                                 "the inference log can take nothing more"}})
    def healthz(self) -> Response:
        """200 with the served model version (the replica only exists once a model is loaded); 503 while
        the inference log can take nothing more (the body says why)."""
        stats = self.logger.stats()
        ok = self.logger.accepting
        body = {"status": "ok" if ok else "unavailable", "model_version": self.model.version, "inference_log": stats,
                "batching": self.batcher.stats(self.model), "fast_path_requests": self.fast_path_requests}
        if (challenger := self.challenger) is not None:
            body["challenger_version"], body["shadow"] = challenger["version"], self._shadow_stats()
        if stats["state"] != "ok":
            body["reason"] = (f"inference log {stats['state']}: {stats['last_error']}; "
                              f"{stats['pending_rows']} of {stats['buffer_rows']} rows held in memory")
        return Response(_json(body), status_code=200 if ok else 503, media_type="application/json")

    @app.get("/model", response_model=ModelCard)
    def model_card(self) -> Response:
        """The served model version and its lineage: MLflow run, lake snapshot, code version, Dagster run."""
        m, c = self.model, self.challenger
        challenger = None if c is None else {**c, "shadow": self._shadow_stats()}
        return Response(_json({**m.lineage, "loaded_at": m.loaded_at, "input_features": list(FEATURE_COLUMNS),
                               "countries": list(COUNTRIES), "array_input": m.array_input,
                               "last_update_error": self.update_error, "challenger": challenger}),
                        media_type="application/json")


def bind_application(settings: Settings, config: ServeConfig, model_version: str, *, code_version: str,
                     requested_at: str | None = None, challenger_version: str | None = None):
    """The Serve application: the deployment bound to these settings, serving `model_version`
    (and shadowing it with `challenger_version`).

    `model_version` travels in the deployment's user_config. With the deployment's code version
    pinned (`code_version`, fixed for the life of the serving process), a new user_config makes
    Serve call `reconfigure` on the running replicas in place; left unpinned, every `serve.run`
    would get a random code version and replace the replicas.
    """
    deployment = HitModelServer.options(
        num_replicas=config.replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.replica_cpus},
        user_config={"model_version": str(model_version), "challenger_version": str(challenger_version or ""),
                     "requested_at": requested_at or ""},
        max_surge_percent=100,  # should replicas ever be replaced: start the new one before stopping the old
        version=code_version, _internal=True,  # Serve's own switch for a pinned version (`serve deploy` pins it too)
    )
    return deployment.bind(settings.dump_for_child(), config.model_dump(mode="json"))
