"""Thresholds and window of the monitors (`HIT_MONITOR_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitorThresholds(BaseSettings):
    """Thresholds and window of the monitors (`HIT_MONITOR_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_MONITOR_", extra="ignore")

    window_hours: float = Field(24.0, gt=0, description="served requests of this many past hours are watched")
    min_rows: int = Field(200, ge=1, description="fewest served songs (or labelled songs) before judging")
    max_served_psi: float = Field(0.25, description="largest PSI of a served feature vs the training split")
    max_prediction_psi: float = Field(0.25, description="largest PSI of a country's served probabilities "
                                                        "vs the model's validation predictions")
    max_auc_drop: float = Field(0.05, description="largest drop of mean ROC AUC on revealed labels below "
                                                  "the test AUC the model was promoted with")
    max_region_auc_drop: float = Field(0.05, ge=0, description="largest drop of a region's mean ROC AUC on revealed "
                                                               "labels below its test AUC, down to the bottom of "
                                                               "the drop's 90% interval, before the delayed-label "
                                                               "monitor names the region in an alert")
    label_recent_days: float = Field(28.0, ge=0, description="the delayed-label monitor also judges, region by "
                                                             "region, the songs first charted in this many days "
                                                             "before the lake's newest chart day (new releases), so "
                                                             "a change of taste in new releases is not diluted by "
                                                             "every song a version predicted (0: off)")
    max_estimated_auc_drop: float = Field(0.05, description="largest drop of a country's label-free estimated "
                                                            "ROC AUC (the top of its interval) below its test AUC "
                                                            "before the country counts as degraded")
    max_degraded_countries: int = Field(5, ge=0, description="most countries degraded (above) before the "
                                                             "performance estimate raises an alert")
    min_expected_positives: float = Field(10.0, ge=0, description="a country is judged by the performance "
                                                                  "estimate only when the songs' probabilities "
                                                                  "add up to at least this many hits")
    attribution_sample: int = Field(300, ge=1, description="newest served songs the attribution drift monitor "
                                                           "explains per run (blend+platt ~100 songs/s, "
                                                           "isotonic ~11)")
    max_attribution_shift: float = Field(0.06, ge=0, le=1, description="largest median over the 72 countries of "
                                                                      "the total variation distance between the "
                                                                      "served and the batch's feature importance "
                                                                      "shares (mean |attribution|)")
    max_error_rate: float = Field(0.01, description="largest share of requests answered 5xx")
    max_p99_ms: float = Field(250.0, description="largest p99 latency inside the replica, ms")
    max_memory_mb: float = Field(6_000.0, description="largest resident memory of the serving process tree")

