"""Batch explanations: why the champion predicted what it did for its batch, song x country x feature, in `ml`."""

import dagster as dg

from hit_platform.adapters.model_explanations import NoDeclaredBackground, load_background
from hit_platform.defs.gate_policy import gated
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.ml.features import FEATURES
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.resources import LakeResource, TrackingResource
from hit_platform.domain.explain import Explainer
from hit_platform.steps import batch_explanations as batch

BATCH_EXPLANATIONS = dg.AssetKey(["ml", "batch_explanations"])


@dg.asset(key=BATCH_EXPLANATIONS, deps=[BATCH_PREDICTIONS, CHAMPION, FEATURES], group_name="ml", code_version="1",
          kinds={"duckdb", "sklearn"})
@gated
def batch_explanations(context: dg.AssetExecutionContext, lake: LakeResource,
                       tracking: TrackingResource) -> dg.MaterializeResult:
    """The champion's exact attributions of its latest batch, long in `ml.batch_explanations`: per song,
    country and audio feature, the feature's value and attribution, with the country's base value, the
    value they add up to (within 1e-9) on its declared scale (log-odds, or the probability for an
    isotonic country) and the batch's probability. Ask it "which feature drives BR most" or "songs
    where energy pushes CZ up" (README, the lake).

    Bounded per run: the next HIT_BATCH_EXPLAIN_SONGS songs (spotify_id order) of the batch not yet
    explained for the champion's version; each run takes the next ones, none twice. A champion with
    no declared background (registered before backgrounds were) is not explained: the run succeeds,
    writes nothing and says why and how to get one."""
    limit = lake.settings().batch.explain_songs
    tracker = tracking.tracker()
    model, info = tracker.load_champion()
    meta = {"model_version": info.version, "songs_explained": 0, "limit_per_run": limit}
    try:
        background = load_background(tracker, info.version)
    except NoDeclaredBackground as exc:
        context.log.warning(str(exc))
        return dg.MaterializeResult(metadata={**meta, "not_explained": str(exc)})
    the_lake = lake.lake()
    with the_lake.connection() as con:
        todo = batch.pending(con, info.version, limit)
        meta.update(batch_run_id=todo.batch_run_id or "none", batch_songs=todo.batch_songs,
                    already_explained=todo.already_explained, songs_missing_a_feature=todo.missing_features,
                    songs_remaining=todo.remaining_after)
        if todo.batch_run_id is None:
            return dg.MaterializeResult(metadata={
                **meta, "not_explained": f"version {info.version} has no batch in ml.batch_predictions yet"})
        if todo.songs.empty:
            return dg.MaterializeResult(metadata=meta)
        explainer = Explainer(model, background)
        rows, per_second = batch.explain(explainer, todo)
        written = the_lake.write(lambda c: batch.append(c, rows, info.version, context.run.run_id,
                                                        todo.lake_snapshot_read),
                                 con=con, what=batch.TABLE)
        snapshot = the_lake.snapshot_id(con)
    context.log.info(f"explained {len(todo.songs)} songs of version {info.version}'s batch at {per_second:.1f} "
                     f"songs/s; {todo.remaining_after} left for the next runs")
    return dg.MaterializeResult(metadata={
        **meta, "songs_explained": len(todo.songs), "songs_per_second": round(per_second, 2),
        "dagster/row_count": int(written), "family": explainer.family,
        "background": f"seed {background.seed}, {background.size} songs",
        "lake_snapshot_read": todo.lake_snapshot_read, "lake_snapshot_id": snapshot})
