"""The final asset: the Ray Serve application serving the champion over HTTP."""

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.resources import LakeResource, ServingResource, TrackingResource, serving_settings
from hit_platform.serving import process

DEPLOYMENT = dg.AssetKey(["serving", "deployment"])


@dg.asset(key=DEPLOYMENT, deps=[CHAMPION], group_name="serving", code_version="1", kinds={"ray", "fastapi"})
@gated
def serving_deployment(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                       serving: ServingResource) -> dg.MaterializeResult:
    """The Ray Serve application on 127.0.0.1 (port from the serving resource, HIT_SERVE_PORT, default 8000) answering
    POST /predict, POST /predict/batch, GET /healthz, GET /model with `models:/hit_model@champion`.
    It runs in its own long-lived process (found again by warehouse/serving/serving.json), so it
    outlives this run; materializing again swaps in a new champion without dropping requests."""
    settings, config = serving_settings(lake, tracking), serving.config()
    champion = tracking.tracker().champion_info()
    before = process.status(settings, config)
    if before.running:  # a warm process (started while the model trained) deploys its first champion here
        after = process.update(settings, config)
        action = "started (warm)" if before.state == "warm" else \
            "updated" if before.model_version != after.model_version else "already serving"
    else:
        process.start(settings, config)
        after = process.status(settings, config)
        action = "started"
    if champion is not None and after.model_version != champion.version:
        raise dg.Failure(f"serving answers model version {after.model_version}, but the champion is "
                         f"{champion.version} (see {after.log_file})")
    context.log.info(f"{action}: {after.endpoint} serving {champion.name if champion else '?'} "
                     f"version {after.model_version}")
    return dg.MaterializeResult(metadata={
        "endpoint": dg.MetadataValue.url(after.endpoint), "model_version": after.model_version,
        "previous_model_version": before.model_version or "none", "action": action, "pid": after.pid,
        "log_file": after.log_file,
        "try_it": f"curl -s -X POST {after.endpoint}/predict -H 'content-type: application/json' -d @song.json"})
