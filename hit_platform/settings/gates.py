"""Thresholds of the quality gates and of promotion (`HIT_GATE_*`, dicts as JSON)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hit_platform.domain.columns import AUDIO_FEATURES

if TYPE_CHECKING:
    from hit_platform.domain.promotion import PromotionThresholds


class GateThresholds(BaseSettings):
    """Thresholds of the quality gates and of promotion (`HIT_GATE_*`, dicts as JSON)."""

    model_config = SettingsConfigDict(env_prefix="HIT_GATE_", extra="ignore")

    # raw chart rows
    max_missing_rate: dict[str, float] = Field(
        default_factory=lambda: {"name": 0.01, "artists": 0.01, "album_name": 0.01,
                                 "album_release_date": 0.01, "popularity": 0.01,
                                 "daily_movement": 0.01, "weekly_movement": 0.01,
                                 **{f: 0.05 for f in AUDIO_FEATURES}},
        description="largest share of null values per column (required columns: 0)")
    max_incomplete_chart_day_rate: float = Field(
        0.02, description="largest share of (snapshot_date, country) charts without exactly ranks 1..50")
    freshness_max_age_days: int = Field(
        3, description="newest snapshot_date must be at most this many days before today")
    max_missing_audio_song_rate: float = Field(
        0.10, description="largest share of songs without audio features (new tracks since late 2024)")
    # labels
    min_positive_rate: float = Field(0.005, description="smallest positive rate of any country")
    max_positive_rate: float = Field(0.60, description="largest positive rate of any country")
    max_bias_disparity: float = Field(
        0.35, description="largest |positive rate explicit - positive rate clean| in any country")
    min_bias_group: int = Field(30, description="smallest group (explicit or clean songs) to judge")
    # splits
    split_tolerance: float = Field(0.03, description="largest deviation of a split's share from its target")
    min_split_positives: int = Field(3, description="fewest positives of any country in any split")
    # drift against the previous data version
    max_psi: float = Field(0.2, description="largest population stability index of any feature")
    # promotion of a candidate model (test split)
    min_auc_gain_over_baseline: float = Field(
        0.05, description="candidate mean ROC AUC must beat the per-country prior baseline by this much")
    max_auc_drop_vs_champion: float = Field(
        0.005, description="candidate mean ROC AUC may be at most this much below the champion's")
    max_country_auc_drop_vs_champion: float = Field(
        0.05, description="in no country may the candidate's ROC AUC be more than this below the champion's")
    max_log_loss_increase_vs_champion: float = Field(
        0.01, description="candidate mean log loss may be at most this much above the champion's")
    max_calibration_error: float = Field(
        0.01, description="candidate mean excess calibration error on the test split: its ECE (10 equal-mass "
                          "bins per country) minus the ECE sampling alone gives a calibrated model on those songs")
    max_pooled_calibration_error: float = Field(
        0.01, description="the same excess for all the candidate's (song, country) test predictions taken "
                          "together (10 equal-mass bins of all of them, the noise floor counting each song once): "
                          "a bias every country shares, which no country's 20-100 hits can show")

    def promotion(self) -> PromotionThresholds:
        """The promotion rules' thresholds, as the plain values `domain.promotion.decide` is given."""
        # Imported when asked: the domain's promotion module loads numpy and scikit-learn, and every
        # process reads the settings.
        from hit_platform.domain.promotion import PromotionThresholds

        return PromotionThresholds(**{f.name: getattr(self, f.name) for f in fields(PromotionThresholds)})
