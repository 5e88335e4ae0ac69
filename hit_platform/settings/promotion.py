"""What a candidate that passes every gate becomes (`HIT_PROMOTION_*`), and how a challenger is
judged on live traffic before it is promoted (`HIT_SHADOW_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PromotionSettings(BaseSettings):
    """What a candidate that passes every gate becomes (`HIT_PROMOTION_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_PROMOTION_", extra="ignore")

    mode: Literal["immediate", "shadow"] = Field(
        "immediate", description="immediate: it becomes the champion at once; shadow: it becomes the registry "
                                 "alias `challenger`, scored on live traffic beside the champion, and is promoted "
                                 "by ml/shadow_promotion once ml/shadow_evaluation:shadow_gate passes")


class ShadowSettings(BaseSettings):
    """How a challenger is judged on live traffic (`HIT_SHADOW_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_SHADOW_", extra="ignore")

    min_requests: int = Field(500, ge=1, description="shadowed songs (answered by the champion, scored by the "
                                                     "challenger) before shadow_gate judges")
    max_mean_abs_diff: float = Field(0.10, ge=0, description="largest mean |challenger - champion| probability of "
                                                             "any country on the shadowed songs")
    min_top5_overlap: float = Field(0.5, ge=0, le=1, description="smallest mean share of the champion's top-5 "
                                                                 "countries the challenger also ranks top-5")
    max_prediction_psi: float = Field(0.25, ge=0, description="largest PSI of a country's challenger probabilities "
                                                              "against the champion's on the same songs")
    min_labelled_songs: int = Field(200, ge=1, description="shadowed songs with revealed labels before the two "
                                                           "models' ROC AUC on them is judged")
    max_auc_drop: float = Field(0.01, ge=0, description="largest drop of the challenger's mean ROC AUC below the "
                                                        "champion's on the same labelled shadowed songs")

