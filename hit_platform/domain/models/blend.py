"""A weighted blend of fitted model pipelines, averaged on the logit scale.

Trees and a neural net make different mistakes (axis-aligned steps vs smooth
curves), so the average of their logits ranks and calibrates better than
either. The blend is itself the last (and only) step of a Pipeline: it takes
the same DataFrame as its members, and each member checks its columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from hit_platform.domain.models.estimators import MultiLabelModel, clip_proba


class LogitBlend(MultiLabelModel):
    """sigmoid(sum_i weight_i * decision_function_i(X)) over member pipelines.

    members: (name, pipeline) pairs whose last step has decision_function
    (the logit of its probabilities); weights: one per member, summing to 1.
    `fit` fits clones of the members; `LogitBlend.of_fitted` wraps members
    that are already fitted (how candidate search reuses its families)."""

    def __init__(self, members: Sequence[tuple[str, Pipeline]] = (), weights: Sequence[float] = ()):
        self.members = members
        self.weights = weights

    def _check_params(self) -> None:
        if not self.members or len(self.members) != len(self.weights):
            raise ValueError(f"LogitBlend: need one weight per member, got {len(self.members)} members "
                             f"and {len(self.weights)} weights")
        if not np.isclose(sum(self.weights), 1.0) or min(self.weights) < 0:
            raise ValueError(f"LogitBlend: weights must be >= 0 and sum to 1, got {list(self.weights)}")

    def fit(self, X, Y) -> LogitBlend:
        self._check_params()
        self.members_ = [(name, clone(p).fit(X, Y)) for name, p in self.members]
        self.n_features_in_ = self.members_[0][1].n_features_in_
        return self

    @classmethod
    def of_fitted(cls, members: Sequence[tuple[str, Pipeline]], weights: Sequence[float]) -> LogitBlend:
        blend = cls(members=list(members), weights=list(weights))
        blend._check_params()
        blend.members_ = list(members)
        blend.n_features_in_ = members[0][1].n_features_in_
        return blend

    def decision_function(self, X) -> np.ndarray:
        total = None
        for (_, pipeline), w in zip(self.members_, self.weights):
            z = w * pipeline.decision_function(X)
            total = z if total is None else total + z
        return total

    def predict_proba(self, X) -> np.ndarray:
        return clip_proba(expit(self.decision_function(X)))
