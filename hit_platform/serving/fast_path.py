"""The lean ASGI /predict: the same contract as the FastAPI route, without FastAPI's machinery around it.

Under load /predict is the replica's whole work, and FastAPI's routing,
Request object and parameter solving cost about a fifth of a replica's CPU
per request (py-spy). `PredictFastPath` answers a `POST /predict` whose query
is empty or a plain in-range `top_k` through the very method the FastAPI
route calls (`answer_song`: the same checks, refusals, bytes and log row).
Everything else, a malformed query included, goes on to FastAPI as before.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving.http import TOP_K, Answerer, given_request_id, too_large
from hit_platform.serving.ingress import INGRESS_HEADER, REQUEST_ID_HEADER

_REQUEST_ID_HEADER, _INGRESS_HEADER = REQUEST_ID_HEADER.encode(), INGRESS_HEADER.encode()


def plain_top_k(query: bytes) -> int | None:
    """top_k of a query string that is empty or exactly `top_k=N` with N in range; None for anything
    else (FastAPI then validates it and refuses as documented)."""
    if not query:
        return TOP_K.default
    name, _, value = query.partition(b"=")
    if name != b"top_k" or not value.isdigit() or len(value) > 2:
        return None
    k = int(value)
    return k if 1 <= k <= len(COUNTRIES) else None


class PredictFastPath:
    """ASGI middleware in front of the FastAPI app (`app.add_middleware(PredictFastPath, replica=...)`)."""

    def __init__(self, app, replica: Answerer):
        self.app = app
        self.replica = replica  # counts the requests answered here in `fast_path_requests` (/healthz shows it)

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"][len(scope.get("root_path", "")):] != "/predict"
                or (k := plain_top_k(scope["query_string"])) is None):
            return await self.app(scope, receive, send)
        t0, received_at = time.perf_counter(), datetime.now(timezone.utc)
        ctype = length = given = stamp = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"content-type" and ctype is None:
                ctype = value.decode("latin-1")
            elif name == b"content-length" and length is None:
                length = value.decode("latin-1")
            elif name == _REQUEST_ID_HEADER and given is None:
                given = value.decode("latin-1")
            elif name == _INGRESS_HEADER and stamp is None:
                stamp = value.decode("latin-1")

        async def body() -> bytes:
            # a chunk at a time, and 413 as soon as it passes the limit, however it is sent (chunked included)
            chunks, size, more, limit = [], 0, True, replica.config.max_body_bytes()
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large(limit, replica.config)
                chunks.append(chunk)
                more = message.get("more_body", False)
            return b"".join(chunks)

        replica = self.replica
        replica.fast_path_requests += 1
        try:
            response = await replica.answer_song(ctype or "", length, body, k, given_request_id(
                given, stamp, replica.ingress_secret), received_at, t0)
        except _ClientGone:
            return  # nobody to answer: nothing answered, nothing logged
        await response(scope, receive, send)


class _ClientGone(Exception):
    pass
