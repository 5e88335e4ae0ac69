"""POST /explain: one song's exact per-country attributions from the served version's prepared Explainer.

A replica prepares one `ServedExplainer` per loaded model version (`prepare`, at load and at every swap,
never per request): the version's declared background (`adapters.model_explanations.load_background`)
and an `Explainer` over its pipeline. A version that cannot be explained (no declared background, a model
part with no exact path) is still served by /predict; /explain then refuses with 409 saying why.

The body is one song, exactly as /predict takes it (the same validation and refusals); `?country=BR&
country=CZ` picks countries (all 72 by default; an unknown code is a 422 naming it). The answer gives,
per country, the base value, one attribution per audio feature, the value they add up to on the declared
scale, and the probability /predict answers for the song.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from hit_platform.adapters.model_explanations import (BACKGROUND_ARTIFACT, VALUE_FUNCTION, NoDeclaredBackground,
                                                      load_background)
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import Background, Explainer
from hit_platform.domain.probabilities import answered
from hit_platform.serving.predictor import Predictor
from hit_platform.serving.schemas import ApiError

log = logging.getLogger(__name__)

_INDEX = {c: i for i, c in enumerate(COUNTRIES)}


def chosen_countries(requested: list[str] | None) -> np.ndarray:
    """Column indices of the requested countries in COUNTRIES order (all when none is named); 422 naming
    every unknown code and where it was given."""
    if not requested:
        return np.arange(len(COUNTRIES))
    unknown = [(i, c) for i, c in enumerate(requested) if c not in _INDEX]
    if unknown:
        raise ApiError(422, [{"loc": ["query", "country", i], "type": "unknown_country", "input": c[:20],
                              "msg": f"unknown country {c[:20]!r}: expected one of the {len(COUNTRIES)} ISO 3166-1 "
                                     f"alpha-2 codes {COUNTRIES[0]}..{COUNTRIES[-1]} (GET /model lists them)"}
                             for i, c in unknown[:50]])
    return np.array(sorted({_INDEX[c] for c in requested}))


@dataclass
class ServedExplainer:
    """The Explainer of one loaded version, or why it has none (`unavailable`)."""

    predictor: Predictor
    explainer: Explainer | None
    background: Background | None
    unavailable: str | None = None
    unavailable_type: str | None = None

    def __post_init__(self):
        self._lock = threading.Lock()  # one explanation at a time per replica: the Explainer is not shared work

    @property
    def version(self) -> str:
        return self.predictor.version

    def card(self) -> dict:
        """What /model says of /explain for this version."""
        if self.explainer is None:
            return {"available": False, "reason": self.unavailable}
        return {"available": True, **self.background_card()}

    def background_card(self) -> dict:
        b = self.background
        return {"seed": b.seed, "size": b.size, "drawn_from": b.drawn_from,
                "artifact": f"runs:/{self.predictor.info.run_id}/{BACKGROUND_ARTIFACT}"}

    def refusal(self) -> ApiError | None:
        if self.explainer is not None:
            return None
        return ApiError(409, [{"loc": ["model_version", self.version], "type": self.unavailable_type,
                               "msg": self.unavailable}])

    def answer(self, X: np.ndarray, columns: np.ndarray, request_id: str) -> tuple[dict, np.ndarray]:
        """(the /explain body, the (1, 72) probabilities answered, as /predict answers them) for one song X."""
        P = answered(self.predictor.predict(X))
        with self._lock:
            a = self.explainer.explain(X)
        features = list(a.features)
        base, value, sizes = a.base[0].tolist(), a.value[0].tolist(), a.background_size.tolist()
        countries = {}
        for c in columns.tolist():
            countries[COUNTRIES[c]] = {"scale": a.scales[c], "base": base[c],
                                       "attributions": dict(zip(features, a.phi[0, c].tolist())),
                                       "value": value[c], "probability": float(P[0, c]),
                                       "background_size": int(sizes[c])}
        body = {"request_id": request_id, "model_version": self.version, "family": a.family,
                "value_function": VALUE_FUNCTION, "background": self.background_card(), "countries": countries}
        return body, P


def prepare(tracker: Tracker, predictor: Predictor) -> ServedExplainer:
    """The version's ServedExplainer: its background loaded and its Explainer prepared once. Never raises:
    /predict serves the version whatever happens here, and /explain says why it cannot."""
    try:
        background = load_background(tracker, predictor.version)
        explainer = Explainer(predictor.pipeline, background)
    except NoDeclaredBackground as exc:
        return ServedExplainer(predictor, None, None, str(exc), "no_declared_background")
    except TypeError as exc:  # a model part these exact attributions do not know
        return ServedExplainer(predictor, None, None, f"model version {predictor.version} cannot be explained "
                               f"exactly: {exc}", "not_explainable")
    except Exception as exc:  # the store unreachable, a malformed artifact: said on every /explain and in /model
        log.exception("version %s: /explain unavailable", predictor.version)
        return ServedExplainer(predictor, None, None, f"model version {predictor.version}: its explainer could not "
                               f"be prepared: {type(exc).__name__}: {exc}", "explainer_unavailable")
    log.info("version %s explained against its declared background (seed %d, %d songs)", predictor.version,
             background.seed, background.size)
    return ServedExplainer(predictor, explainer, background)
