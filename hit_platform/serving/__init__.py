"""Serving the champion model over HTTP with Ray Serve, and logging every answer to the lake.

For callers (CLI, the Dagster deployment asset) the whole surface is:

    from hit_platform.serving import start, update, status, stop, ServeConfig
    endpoint = start(settings)          # the long-lived serving process, e.g. http://127.0.0.1:8000
    update(settings)                    # swap in the current champion, no failed requests
    status(settings).model_version
    stop(settings)

Importing this package does not import Ray; `hit_platform.serving.replica`
(the Serve deployment) does.

One idea a module:

    process.py        start / update / status / stop, through the pid file (no Ray)
    main.py           the serving process: Ray, Serve, signals, the committer and the shadow scorer
    ray_env.py        its environment, set before Ray is imported: loopback.py, ingress.py (HAProxy)
    replica.py        the deployment: load, swap, answer, journal, alert
    http.py           what a client sees: routes, error shapes, OpenAPI
    fast_path.py      the lean ASGI /predict, the same contract as the route
    explaining.py     /explain: each loaded version's Explainer and declared background, prepared once
    batching.py, encoding.py, arrow_batch.py, schemas.py, predictor.py   what answering is made of
    inference_log/    schema, journal (written before the answer), logger, committer
    shadow.py         scores committed rows with the challenger
    background.py     background threads yield the CPU to requests
"""

from hit_platform.settings import ServeConfig
from hit_platform.serving.process import ServingError, ServingStatus, start, status, stop, update

__all__ = ["ServeConfig", "ServingError", "ServingStatus", "start", "status", "stop", "update"]
