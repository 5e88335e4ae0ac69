"""The audit's explanation of a served request: exact attributions recomputed now from what the log kept.

Nothing about attributions is logged: the inference log keeps the song as the model read it and the
probabilities answered, and the registry keeps the model version and its declared background, which is
all they are a function of. So the audit recomputes them (and says so), shows the top features of the top
countries, and checks that they add up: base + sum = the recomputed value on each country's declared
scale within 1e-9, and that value's probability is the logged one (the log keeps 9 decimals).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.model_explanations import NoDeclaredBackground, load_background
from hit_platform.adapters.tracking import ModelUnavailable, Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import ADDITIVITY_TOLERANCE, LOG_ODDS, Explainer
from hit_platform.domain.features import FEATURE_COLUMNS

INFERENCE_LOG = "ops.inference_log"
TOP_COUNTRIES, TOP_FEATURES = 3, 3


def logged_song(lake: Lake, request_id: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(the first song's 14 features (1, 14), its 72 logged probabilities (72,), songs in the request) of an
    answered request; None when the log holds no answered song under that id."""
    with lake.connection(read_only=True) as con:
        rows = con.execute(f"""
            SELECT {', '.join(FEATURE_COLUMNS)}, probabilities, count(*) OVER ()
            FROM {INFERENCE_LOG} WHERE request_id = ? AND status = 200 ORDER BY item LIMIT 1""",
                           [request_id]).fetchall()
    if not rows or rows[0][len(FEATURE_COLUMNS)] is None:
        return None
    row = rows[0]
    X = np.array([row[:len(FEATURE_COLUMNS)]], dtype=np.float64)
    probabilities = row[len(FEATURE_COLUMNS)]
    return X, np.array([probabilities[c] for c in COUNTRIES], dtype=np.float64), int(row[-1])


def explanation(settings, request_id: str, version: str) -> list[str]:
    """Lines for the audit: the recomputed attributions of the request's (first) song, or why there are none."""
    found = logged_song(Lake(settings), request_id)
    if found is None:
        return [f"none: {INFERENCE_LOG} keeps no answered song under {request_id!r}"]
    X, logged, songs = found
    tracker = Tracker(settings)
    try:
        background = load_background(tracker, version)
        model = tracker.load_version(version)
    except (NoDeclaredBackground, ModelUnavailable) as exc:  # the rest of the trace stands without them
        return [f"none: {exc}"]
    try:
        a = Explainer(model, background).explain(X)
    except TypeError as exc:
        return [f"none: model version {version} cannot be explained exactly: {exc}"]
    except ArithmeticError as exc:
        return [f"RECOMPUTED, but they do NOT add up: {exc}"]
    total = a.base[0] + a.phi[0].sum(axis=1)
    logodds = np.array([s == LOG_ODDS for s in a.scales])
    probability = np.where(logodds, expit(total), total)
    off = float(np.abs(probability - logged).max())
    scales = sorted(set(a.scales))
    which = "its only song" if songs == 1 else f"song 0 of its {songs}"
    lines = [f"recomputed now, not logged: exact interventional Shapley values of model version {version} "
             f"({a.family}) for {which} as logged, against the version's declared background (seed "
             f"{background.seed}, {int(a.background_size.max())} of {background.size} songs drawn from "
             f"{background.drawn_from} training songs)",
             f"adds up: base + sum = the model's value on each country's declared scale ({', '.join(scales)}) "
             f"within {ADDITIVITY_TOLERANCE:g} (largest gap {a.max_gap:.1e}); its probability vs the logged "
             f"answer: largest |difference| {off:.1e} over {len(COUNTRIES)} countries (the log keeps 9 decimals): "
             + ("within 1e-9, the logged answer" if off <= 1e-9 else "NOT the logged answer")]
    for c in np.argsort(-logged, kind="stable")[:TOP_COUNTRIES]:
        phi = a.phi[0, c]
        top = np.argsort(-np.abs(phi), kind="stable")[:TOP_FEATURES]
        features = ", ".join(f"{FEATURE_COLUMNS[j]} {phi[j]:+.3f}" for j in top)
        lines.append(f"{COUNTRIES[c]} p {logged[c]:.3f}: base {a.base[0, c]:+.3f} {a.scales[c]}; {features} "
                     f"(top {TOP_FEATURES} of {len(FEATURE_COLUMNS)})")
    return lines
