"""A fitted model pipeline taken apart into what attributions need: log-odds parts and per-country maps.

Every served model is `calibration(sigmoid(z(x)))` where z is the uncalibrated log-odds of a family
(or a weighted sum of members' log-odds, the blend) and the calibration is, per country, either
affine in log-odds (none, Platt, temperature, region, per-country Platt) or not (isotonic).

`LogOdds` is one family's z as a function of the raw 14 features: the pipeline's preprocessing steps
(each acts on one feature at a time, so an interventional hybrid of raw features is a hybrid of
preprocessed ones, and Shapley values on either are the same) and its last estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.models.blend import LogitBlend
from hit_platform.domain.models.calibration import POOLED, Calibrated, CountryCalibration
from hit_platform.domain.models.estimators import (CompiledLogistic, MultiLabelMLP, PriorRates, clip_proba,
                                                   logit)
from hit_platform.domain.models.frame import N_FEATURES, FeatureFrame, LogFeatures
from hit_platform.domain.models.screen import FeatureScreen
from hit_platform.domain.models.trees import CountryTrees

# Steps known to transform each feature on its own (no step mixes columns): hybrids commute with them. A
# feature FeatureScreen sets to 0 is equal in every song and background: a null player, exactly 0.
FEATUREWISE_STEPS = (FeatureFrame, LogFeatures, StandardScaler, FeatureScreen)
ESTIMATORS = {PriorRates: "prior", CompiledLogistic: "linear", CountryTrees: "trees", MultiLabelMLP: "mlp"}
LOG_ODDS = "log-odds"
PROBABILITY = "probability, exact enumeration"


@dataclass(frozen=True)
class LogOdds:
    """One family's uncalibrated log-odds z(x): (n, 14) raw features -> (n, 72)."""

    family: str
    steps: tuple  # fitted featurewise preprocessing steps, in order
    estimator: object

    def prepare(self, X: np.ndarray) -> np.ndarray:
        """The estimator's input for raw feature rows (no NaN here, so imputation is the identity)."""
        for step in self.steps:
            X = step.transform_matrix(X) if isinstance(step, FeatureFrame) else step.transform(X)
        return np.asarray(X, dtype=np.float64)

    def of_prepared(self, Xp: np.ndarray) -> np.ndarray:
        if self.family == "prior":
            return np.tile(logit(self.estimator.rates_), (len(Xp), 1))
        return self.estimator.decision_function(Xp)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.of_prepared(self.prepare(X))


@dataclass(frozen=True)
class Blend:
    """sum_i weight_i * z_i(x): LogitBlend's log-odds, summed in its order."""

    members: tuple[LogOdds, ...]
    weights: tuple[float, ...]
    family: str = "blend"

    def __call__(self, X: np.ndarray) -> np.ndarray:
        total = None
        for part, w in zip(self.members, self.weights):
            z = w * part(X)
            total = z if total is None else total + z
        return total


@dataclass(frozen=True)
class CountryMaps:
    """Per country: log-odds countries serve sigmoid(slope * z + intercept); the others serve
    `probability(P)[:, c]` of P = clip(sigmoid(z)), a map that is not affine in log-odds (isotonic)."""

    slope: np.ndarray         # (72,) 1 for a probability country (unused there)
    intercept: np.ndarray     # (72,)
    affine: np.ndarray        # (72,) bool
    calibration: CountryCalibration | None

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(LOG_ODDS if a else PROBABILITY for a in self.affine)

    def probability(self, Z: np.ndarray) -> np.ndarray:
        """The served probability of every country for uncalibrated log-odds Z (rows, 72)."""
        P = clip_proba(expit(Z))
        return P if self.calibration is None else self.calibration.transform(P)

    def value(self, Z: np.ndarray) -> np.ndarray:
        """The served value on each country's declared scale, for log-odds Z (rows, 72)."""
        out = self.slope * Z + self.intercept
        if not self.affine.all():
            out[:, ~self.affine] = self.probability(Z)[:, ~self.affine]
        return out


def take_apart(model) -> tuple[LogOdds | Blend, CountryMaps]:
    """(the uncalibrated log-odds, the per-country maps) of a fitted model pipeline; TypeError if some
    part is not one these attributions know exactly."""
    if not isinstance(model, Pipeline):
        raise TypeError(f"attributions: expected a fitted model Pipeline, got {type(model).__name__}")
    calibration = None
    if isinstance(model[-1], Calibrated):
        if len(model.steps) != 1:
            raise TypeError("attributions: a calibration must be the pipeline's only step (with_calibration's shape)")
        calibration = model[-1].calibration
        model = model[-1].model
        if not isinstance(model, Pipeline):
            raise TypeError(f"attributions: the calibrated model must be a Pipeline, got {type(model).__name__}")
    if isinstance(model[-1], LogitBlend):
        if len(model.steps) != 1:
            raise TypeError("attributions: a LogitBlend must be its pipeline's only step")
        blend = model[-1]
        members = tuple(_log_odds(p, f"blend member {name!r}") for name, p in blend.members_)
        z = Blend(members, tuple(float(w) for w in blend.weights))
    else:
        z = _log_odds(model, "model")
    return z, _country_maps(calibration)


def _log_odds(pipeline, where: str) -> LogOdds:
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"attributions: {where} must be a Pipeline, got {type(pipeline).__name__}")
    *steps, estimator = [step for _, step in pipeline.steps]
    for step in steps:
        if not isinstance(step, FEATUREWISE_STEPS):
            raise TypeError(f"attributions: {where} has a step {type(step).__name__} not known to act on one "
                            f"feature at a time (known: {[s.__name__ for s in FEATUREWISE_STEPS]})")
    family = ESTIMATORS.get(type(estimator))
    if family is None:
        raise TypeError(f"attributions: {where} ends in {type(estimator).__name__}, a model these exact "
                        f"attributions do not know (known: {[e.__name__ for e in ESTIMATORS]}, LogitBlend)")
    if getattr(estimator, "n_features_in_", N_FEATURES) != N_FEATURES:
        raise TypeError(f"attributions: {where} takes {estimator.n_features_in_} features, expected {N_FEATURES}")
    return LogOdds(family, tuple(steps), estimator)


def _country_maps(calibration: CountryCalibration | None) -> CountryMaps:
    k = len(COUNTRIES)
    slope, intercept, affine = np.ones(k), np.zeros(k), np.ones(k, dtype=bool)
    method = "none" if calibration is None else calibration.method
    if method == "platt" or method in POOLED:
        slope, intercept = np.array(calibration.a_, dtype=np.float64), np.array(calibration.b_, dtype=np.float64)
    elif method == "isotonic":
        affine[:] = False
    elif method == "per_country":
        methods = np.array(calibration.country_methods_)
        if "platt" in calibration.parts_:
            platt = methods == "platt"
            slope[platt] = calibration.parts_["platt"].a_[platt]
            intercept[platt] = calibration.parts_["platt"].b_[platt]
        affine = methods != "isotonic"
    elif method != "none":
        raise TypeError(f"attributions: unknown calibration method {method!r}")
    if len(slope) != k:
        raise TypeError(f"attributions: the calibration maps {len(slope)} countries, expected {k}")
    return CountryMaps(slope, intercept, affine, calibration)
