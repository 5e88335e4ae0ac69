"""The declared background of a model version: the training songs its attributions are taken against.

Every candidate's MLflow run carries one (`log_background`, called by `train_and_register`): the
artifact `explain/background.json` holds the `background_sample` of the run's training features,
FAMILY_BACKGROUND[family] songs drawn by the training seed, with that seed, its size and how many
complete training songs it was drawn from; the run's tags `explain_background_seed` and
`explain_background_size` say the same, and so do the registered version's.

    background = load_background(Tracker(settings), "7")     # a registered version of hit_model
    Explainer(Tracker(settings).load_version("7"), background).explain(X)

A version registered before backgrounds were declared has none, and nothing here invents one:
`load_background` raises `NoDeclaredBackground` saying so and how to get one (train a new version).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException

from hit_platform.adapters.tracking import ModelUnavailable, Tracker
from hit_platform.domain.explain import BACKGROUND_SIZE, FAMILY_BACKGROUND, Background, background_sample
from hit_platform.domain.features import FEATURE_COLUMNS

BACKGROUND_ARTIFACT = "explain/background.json"
SEED_TAG, SIZE_TAG = "explain_background_seed", "explain_background_size"
VALUE_FUNCTION = ("interventional Shapley values, country by country: v_c(S) = the mean over the background songs "
                  "of the model's value with the song's features in S and the background song's elsewhere")
HOW_TO_GET_ONE = ("train a new version (`hit-platform build` after new data, or `hit-platform rebuild --snapshot "
                  "S` to train from the version's own lake snapshot S): every version trained since backgrounds "
                  "were declared logs one with its MLflow run")


class NoDeclaredBackground(LookupError):
    """A registered model version has no declared background (see the message for how to get one)."""


def declare_background(train_X, family: str, seed: int) -> Background:
    """The background a candidate of `family` trained on `train_X` declares: its first
    FAMILY_BACKGROUND[family] complete training songs in the order drawn by `seed`."""
    return background_sample(train_X, FAMILY_BACKGROUND.get(family, BACKGROUND_SIZE), seed)


def background_tags(background: Background) -> dict[str, str]:
    return {SEED_TAG: str(background.seed), SIZE_TAG: str(background.size)}


def log_background(tracker: Tracker, run_id: str, background: Background) -> None:
    """`background` as the artifact BACKGROUND_ARTIFACT of MLflow run `run_id`, and its seed and size as tags.
    JSON floats are written as Python's repr, so the songs read back bit for bit."""
    tracker.client.log_dict(run_id, {
        "seed": background.seed, "size": background.size, "drawn_from": background.drawn_from,
        "value_function": VALUE_FUNCTION, "features": list(FEATURE_COLUMNS),
        "songs": background.songs.tolist()}, BACKGROUND_ARTIFACT)
    for key, value in background_tags(background).items():
        tracker.client.set_tag(run_id, key, value)


def log_backgrounds(tracker: Tracker, runs: dict[str, tuple[str, str]], train_X, seed: int) -> dict[str, Background]:
    """Each candidate run's background ({family: (run id, model uri)}, as `Tracker.log_candidates` returns)."""
    out = {}
    for family, (run_id, _) in runs.items():
        out[family] = declare_background(train_X, family, seed)
        log_background(tracker, run_id, out[family])
    return out


def load_background(tracker: Tracker, version: str | int) -> Background:
    """The declared background of registered version `version` of the tracker's model (`hit_model`).

    Raises NoDeclaredBackground when the version's MLflow run has none (registered before backgrounds were
    declared) or is gone; ModelUnavailable (tracking) when no such version is registered; ValueError when
    the artifact is there but malformed (named, with what is wrong)."""
    run_id, where = version_run(tracker, version)
    return load_run_background(tracker, run_id, where)


def version_run(tracker: Tracker, version: str | int) -> tuple[str, str]:
    """(MLflow run id, a phrase naming the version and its run) of registered version `version`;
    ModelUnavailable when no such version is registered."""
    try:
        run_id = tracker.client.get_model_version(tracker.model_name, str(version)).run_id
    except MlflowException as exc:
        raise ModelUnavailable(f"no version {version} of {tracker.model_name!r} can be read in {tracker.uri}: "
                               f"{exc}") from exc
    return run_id, f"version {version} of {tracker.model_name!r} (MLflow run {run_id} in {tracker.uri})"


def load_run_background(tracker: Tracker, run_id: str, where: str | None = None) -> Background:
    """The declared background of MLflow run `run_id` (any candidate's, registered or not); errors as
    `load_background`'s, naming `where`."""
    where = where or f"MLflow run {run_id} in {tracker.uri}"
    try:
        listed = {a.path for a in tracker.client.list_artifacts(run_id, Path(BACKGROUND_ARTIFACT).parent.as_posix())}
    except MlflowException as exc:
        raise NoDeclaredBackground(f"{where}: its run cannot be read ({exc}), so it has no declared background "
                                   f"to explain against; {HOW_TO_GET_ONE}") from exc
    if BACKGROUND_ARTIFACT not in listed:
        raise NoDeclaredBackground(f"{where} has no declared background (no {BACKGROUND_ARTIFACT}: it was "
                                   f"registered before backgrounds were declared), so it cannot be explained; "
                                   f"{HOW_TO_GET_ONE}")
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.client.download_artifacts(run_id, BACKGROUND_ARTIFACT, tmp)
        declared = json.loads(Path(path).read_text())
    return _parsed(declared, f"{where}, artifact {BACKGROUND_ARTIFACT}")


def _parsed(declared: dict, where: str) -> Background:
    if not isinstance(declared, dict) or declared.get("features") != list(FEATURE_COLUMNS):
        raise ValueError(f"{where}: expected the features {list(FEATURE_COLUMNS)}, got "
                         f"{declared.get('features') if isinstance(declared, dict) else type(declared).__name__}")
    songs = np.asarray(declared.get("songs"), dtype=np.float64)
    if songs.ndim != 2 or songs.shape != (declared.get("size"), len(FEATURE_COLUMNS)) or not np.isfinite(songs).all():
        raise ValueError(f"{where}: expected {declared.get('size')} finite songs of {len(FEATURE_COLUMNS)} features, "
                         f"got an array of shape {songs.shape}")
    return Background(songs=np.ascontiguousarray(songs), seed=int(declared["seed"]),
                      drawn_from=int(declared["drawn_from"]))
