"""The deployment: a replica loads the champion, swaps it in place, answers, journals and alerts.

`ModelReplica` is a plain class (a test builds one without Ray); `HitModelServer`
is that class as a Ray Serve deployment whose ASGI app each replica builds for
itself after its constructor (`__serve_build_asgi_app__`, Serve's public
late-bound ingress): `http.build_app` for the routes, with `PredictFastPath`
in front. `bind_application` binds it to settings and model versions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import TypeAdapter
from ray import serve
from starlette.concurrency import run_in_threadpool

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.probabilities import answered
from hit_platform.private_apis import (bind_replica_grpc_to_loopback, send_each_answer_in_one_write,
                                       with_pinned_code_version)
from hit_platform.serving import arrow_batch
from hit_platform.serving.batching import MicroBatcher
from hit_platform.serving.encoding import batch_bytes, prediction_head, song_answers
from hit_platform.serving.explaining import ServedExplainer, chosen_countries
from hit_platform.serving.explaining import prepare as prepare_explainer
from hit_platform.serving.fast_path import PredictFastPath
from hit_platform.serving.http import build_app, check_content_type, error_body, json_bytes, parse_body
from hit_platform.serving.ingress import node_secret_problem
from hit_platform.serving.inference_log import InferenceLogger, JournalCommitter, Served, truncate_body
from hit_platform.serving.loopback import in_loopback_mode
from hit_platform.serving.placement import CachedPlacement, this_node
from hit_platform.serving.predictor import Predictor, features_of, lineage_of, load_predictor, top_k, version_info
from hit_platform.serving.schemas import SONG_ADAPTER, SONG_EXTRAS, ApiError, batch_model
from hit_platform.serving.shadow import SCORE_EVERY_COMMITS, ShadowScorer
from hit_platform.settings import ServeConfig, Settings

log = logging.getLogger(__name__)

APP_NAME = "hit_platform"
DEPLOYMENT_NAME = "HitModelServer"


class ModelReplica:
    """A replica: the champion model, its inference logger, and the answers the routes give."""

    def __init__(self, settings: dict, config: dict, ingress_secret: str | None = None):
        # The HTTP server writes each answer whole: a replica killed mid-answer leaves its client nothing
        # (which the ingress retries elsewhere), never a head without its body.
        send_each_answer_in_one_write()
        if in_loopback_mode():
            # Serve runs this constructor before it opens the replica's inter-deployment gRPC server
            # (`Replica._on_initialized`), so the server binds 127.0.0.1 instead of every interface.
            bind_replica_grpc_to_loopback()
        self.settings = Settings(**settings)
        self.config = ServeConfig(**config)
        self.ingress_secret = ingress_secret  # x-hit-request-id is taken only with it (serving.ingress)
        self.node, self.placement = this_node(), None  # where this replica runs (Ray's node), in /healthz
        if self.config.ray_address and (problem := node_secret_problem(ingress_secret, os.environ,
                                                                       (self.node or {}).get("node_ip", "?"))):
            raise RuntimeError(problem)  # this node's HAProxy stamps another secret: every id it set refused
        self.tracker = Tracker(self.settings)
        self.model: Predictor = load_predictor(self.tracker)  # models:/hit_model@champion
        self.explained: ServedExplainer = prepare_explainer(self.tracker, self.model)  # /explain's, once per version
        # concurrent /predict calls share one model call (when the version's batches answer the same bits)
        self.batcher = MicroBatcher(self.config.batch_max_size, self.config.batch_wait_ms, finish=song_answers)
        self.batcher.admit(self.model)
        # models:/hit_model@challenger's lineage, set by reconfigure: its scores are computed from what the
        # journal's committer committed (serving.shadow), never in the request path
        self.challenger: dict | None = None
        self.update_error: str | None = None
        self.fast_path_requests = 0  # /predict requests answered by PredictFastPath (the rest went through FastAPI)
        self.batch_adapter = TypeAdapter(batch_model(self.config.max_batch))
        journal = self.config.journal(self.settings)
        if self.config.replicas_commit():
            # On a cluster the journal is on this node's own disk: HIT_SERVE_JOURNAL_DIR as the node was started
            # with it (`ray start`'s environment), else the serving process's path, on this node.
            journal = ServeConfig().journal_dir or journal
            self.placement = CachedPlacement()
        # On a cluster there is no serving process on this machine: the replica commits its own journal, and
        # scores what it committed with the challenger. It never looks back for answers left unscored
        # (`ShadowScorer.catch_up`): every replica would score the same ones.
        self.committer = self.scorer = None
        if self.config.replicas_commit():
            self.scorer = ShadowScorer(Lake(self.settings), catch_up=False,
                                       every_seconds=SCORE_EVERY_COMMITS * self.config.log_commit_seconds).start()
            self.committer = JournalCommitter(Lake(self.settings), journal, on_committed=self.scorer.take)
        self.logger = InferenceLogger(journal, flush_seconds=self.config.log_flush_seconds,
                                      batch_rows=self.config.log_batch_rows, buffer_rows=self.config.log_buffer_rows,
                                      on_roll=self.committer.commit if self.committer is not None else None,
                                      on_trouble=self._alert_log_trouble).start()
        log.info("serving %s version %s (array input: %s)", self.model.info.name, self.model.version,
                 self.model.array_input)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """This replica's app: the routes (`http`), /predict's lean path in front (`fast_path`)."""
        app = build_app(self)
        app.add_middleware(PredictFastPath, replica=self)
        return app

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
                explained = await asyncio.to_thread(prepare_explainer, self.tracker, new)
            except Exception as exc:
                self.update_error = f"version {version}: {type(exc).__name__}: {exc}"
                log.error("model swap to version %s failed; still serving %s: %s", version, self.model.version, exc)
                return
            old, self.model, self.update_error = self.model, new, None
            self.explained = explained  # /explain reads it alone: its version and its answers come together
            log.info("model swapped: version %s -> %s", old.version, new.version)
        shadow = str(config.get("challenger_version") or "")
        current = self.challenger["version"] if self.challenger is not None else ""
        if shadow == current:
            return
        scorer = self.scorer  # this replica commits its own journal (Ray cluster): it scores too
        card, predictor = None, None
        if shadow:
            try:
                if scorer is not None:
                    predictor = await asyncio.to_thread(load_predictor, self.tracker, shadow)
                    card = {**predictor.lineage, "loaded_at": predictor.loaded_at}
                else:
                    card = await asyncio.to_thread(lambda: lineage_of(self.tracker, version_info(self.tracker, shadow)))
            except Exception as exc:
                self.update_error = f"version {shadow}: {type(exc).__name__}: {exc}"
                log.error("challenger version %s cannot be loaded; nothing shadows: %s", shadow, exc)
        if scorer is not None:
            scorer.set_challenger(predictor)
        self.challenger = card
        if card is not None:
            self.update_error = None
            log.info("challenger version %s shadows the champion", shadow)
        else:
            log.info("nothing shadows the champion (was version %s)", current or "none")

    def __del__(self):
        # Serve calls this on graceful shutdown: write what the log still holds (and commit it, on a cluster).
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()
        for part in ("committer", "scorer"):  # the scorer last: it scores what the last commit handed it
            if (closing := getattr(self, part, None)) is not None:
                closing.close()

    # -- what /healthz and /model say -------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        """(accepting requests, the /healthz body)."""
        stats = self.logger.stats()
        if self.committer is not None:
            stats["committed_rows"], stats["commit_error"] = self.committer.committed_rows, self.committer.last_error
        ok = self.logger.accepting
        body = {"status": "ok" if ok else "unavailable", "model_version": self.model.version, "inference_log": stats,
                "batching": self.batcher.stats(self.model), "fast_path_requests": self.fast_path_requests}
        if (challenger := self.challenger) is not None:
            body["challenger_version"], body["shadow"] = challenger["version"], self._shadow_stats()
        if self.node is not None:
            body["node"] = self.node
        if self.placement is not None:  # a cluster: every replica's node, from Serve's controller
            body["placement"] = self.placement.get()
        if stats["state"] != "ok":
            body["reason"] = (f"inference log {stats['state']}: {stats['last_error']}; "
                              f"{stats['pending_rows']} of {stats['buffer_rows']} rows held in memory")
        return ok, body

    def card(self) -> dict:
        """The /model body: the served version's lineage, its inputs, and the challenger's."""
        m, c = self.model, self.challenger
        challenger = None if c is None else {**c, "shadow": self._shadow_stats()}
        return {**m.lineage, "loaded_at": m.loaded_at, "input_features": list(FEATURE_COLUMNS),
                "countries": list(COUNTRIES), "array_input": m.array_input,
                "last_update_error": self.update_error, "challenger": challenger, "explain": self.explained.card()}

    def _shadow_stats(self) -> dict:
        """Who scores for the challenger; this replica's own figures when it commits its journal itself."""
        if self.scorer is None:
            return {"scored_by": "the serving process, from the answers its inference-log committer committed "
                                 "(ops.shadow_log, within seconds of each commit)"}
        stats = self.scorer.stats()
        return {"scored_by": "this replica, from the answers it committed from its inference-log journal",
                "shadowed_rows": stats["shadowed_rows"], "last_error": stats["last_error"]}

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

    # -- answering ---------------------------------------------------------------------------------
    def _log_full(self, request_id: str) -> Response | None:
        """503 with Retry-After when the log can take nothing more: no answer that cannot be logged."""
        if self.logger.accepting:
            return None
        reason = self.logger.refuse()
        return Response(error_body([{"loc": [], "type": "log_unavailable", "msg": reason}], request_id),
                        status_code=503, media_type="application/json",
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
        """The refusal's answer, journaled like any answer before it leaves."""
        content = error_body(exc.detail, request_id)
        self.logger.log(Served(request_id, received_at, endpoint, exc.status, (time.perf_counter() - t0) * 1e3,
                               None, top_k, request_body=truncate_body(body),
                               response_body=content.decode()))
        return Response(content, status_code=exc.status, media_type="application/json")

    @staticmethod
    def _predict(X, k: int, model: Predictor):
        """Answered probabilities (as printed) and top-k indices of a feature matrix: one model call."""
        P = answered(model.predict(X))
        return P, top_k(P, k)[0]

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

    async def answer_explain(self, ctype: str, length: str | None, body, countries: list[str] | None,
                             request_id: str, received_at: datetime, t0: float) -> Response:
        """/explain's answer (`explaining`): /predict's checks and refusals, then the served version's
        attributions; journaled as /predict's are, before the answer leaves (endpoint "/explain")."""
        if (full := self._log_full(request_id)) is not None:
            return full
        explained, raw = self.explained, None  # one version for the whole request, even during a swap
        try:
            check_content_type(ctype)
            raw = await self._read(length, body)
            song = parse_body(raw, SONG_ADAPTER)
            columns = chosen_countries(countries)
            if (refused := explained.refusal()) is not None:
                raise refused
        except ApiError as exc:
            return self.refuse(exc, request_id=request_id, received_at=received_at, t0=t0, endpoint="/explain",
                               body=raw, top_k=None)
        X = features_of([song])
        answer, P = await run_in_threadpool(explained.answer, X, columns, request_id)  # CPU: off the event loop
        content = json_bytes(answer)
        self.logger.log(Served(request_id, received_at, "/explain", 200, (time.perf_counter() - t0) * 1e3,
                               explained.version, None, X, P, [tuple(song.get(c) for c in SONG_EXTRAS)]))
        return Response(content, media_type="application/json")

    async def answer_batch(self, ctype: str, length: str | None, accept: str, body, k: int, request_id: str,
                           received_at: datetime, t0: float) -> Response:
        """/predict/batch's answer: JSON or Arrow in, JSON or Arrow out."""
        if (full := self._log_full(request_id)) is not None:
            return full
        model, raw = self.model, None
        try:
            arrow_in = check_content_type(ctype, arrow=True)
            raw = await self._read(length, body)
        except ApiError as exc:
            return self.refuse(exc, request_id=request_id, received_at=received_at, t0=t0,
                               endpoint="/predict/batch", body=None, top_k=k)
        arrow_out = arrow_batch.wants_arrow(accept)

        def work():  # parse, predict, serialize, journal: CPU and disk, so off the event loop
            if arrow_in:
                X, extras = arrow_batch.read_songs(raw, self.config.max_batch)
            else:
                songs = parse_body(raw, self.batch_adapter, max_batch=self.config.max_batch)["songs"]
                X, extras = features_of(songs), [tuple(s.get(c) for c in SONG_EXTRAS) for s in songs]
            P, top = self._predict(X, k, model)
            if arrow_out:
                content = arrow_batch.predictions_stream(P, top, request_id, model.version)
            else:
                content = batch_bytes(P, top, request_id, model.version)
            self.logger.log(Served(request_id, received_at, "/predict/batch", 200, (time.perf_counter() - t0) * 1e3,
                                   model.version, k, X, P, extras))  # journaled before the answer leaves
            return content

        try:
            content = await run_in_threadpool(work)
        except ApiError as exc:
            return self.refuse(exc, request_id=request_id, received_at=received_at, t0=t0,
                               endpoint="/predict/batch", body=None if arrow_in else raw, top_k=k)
        if arrow_out:
            # the request id travels in the stream's metadata (Serve owns the x-request-id header)
            return Response(content, media_type=arrow_batch.ARROW_STREAM, headers={"x-model-version": model.version})
        return Response(content, media_type="application/json")


HitModelServer = serve.deployment(name=DEPLOYMENT_NAME, graceful_shutdown_timeout_s=20, health_check_period_s=5)(
    serve.ingress()(ModelReplica))


def bind_application(settings: Settings, config: ServeConfig, model_version: str, *, code_version: str,
                     requested_at: str | None = None, challenger_version: str | None = None,
                     ingress_secret: str | None = None):
    """The Serve application: the deployment bound to these settings, serving `model_version`
    (and shadowing it with `challenger_version`); its replicas take a request id only with `ingress_secret`.

    `model_version` travels in the deployment's user_config. With the deployment's code version
    pinned (`code_version`, fixed for the life of the serving process), a new user_config makes
    Serve call `reconfigure` on the running replicas in place; left unpinned, every `serve.run`
    would get a random code version and replace the replicas.
    """
    deployment = with_pinned_code_version(
        HitModelServer, code_version,
        num_replicas=config.replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.replica_cpus},
        **({"max_replicas_per_node": config.max_replicas_per_node} if config.max_replicas_per_node else {}),
        user_config={"model_version": str(model_version), "challenger_version": str(challenger_version or ""),
                     "requested_at": requested_at or ""},
        max_surge_percent=100,  # should replicas ever be replaced: start the new one before stopping the old
    )
    return deployment.bind(settings.dump_for_child(), config.model_dump(mode="json"), ingress_secret)
