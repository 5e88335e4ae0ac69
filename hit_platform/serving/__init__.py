"""Serving the champion model over HTTP with Ray Serve, and logging every answer to the lake.

For callers (CLI, the Dagster deployment asset) the whole surface is:

    from hit_platform.serving import start, update, status, stop, ServeConfig
    endpoint = start(settings)          # the long-lived serving process, e.g. http://127.0.0.1:8000
    update(settings)                    # swap in the current champion, no failed requests
    status(settings).model_version
    stop(settings)

Importing this package does not import Ray; `hit_platform.serving.replica`
(the Serve deployment) does.
"""

from hit_platform.settings import ServeConfig
from hit_platform.serving.process import ServingError, ServingStatus, start, status, stop, update

__all__ = ["ServeConfig", "ServingError", "ServingStatus", "start", "status", "stop", "update"]
