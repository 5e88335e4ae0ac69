"""Models that predict, from a song's audio features, its chart probability in each of 72 countries.

Pure numpy / scikit-learn: no lake, no MLflow, no Dagster. Every candidate is
one picklable scikit-learn Pipeline whose ``predict_proba(df)`` takes a
DataFrame with exactly ``features.FEATURE_COLUMNS`` and returns an (n, 72)
float array in ``countries.COUNTRIES`` order, in one call.

    from hit_platform.domain.models import FAMILIES, train_candidates, select_best, evaluate
    results = train_candidates(train.X, train.Y, val.X, val.Y, seed=0)
    best = select_best(results)
    P = best.pipeline.predict_proba(test.X)
    m = evaluate(test.Y, P)

Modules: ``frame`` (input checks and feature transforms), ``estimators``
(prior, compiled linear, MLP), ``trees`` (boosted trees over song x country
rows), ``quickscorer`` (compiling those trees for fast scoring),
``candidates`` (families, grids, search), ``metrics`` (per-country metrics).
"""

from hit_platform.domain.models.candidates import FAMILIES, CandidateResult, Family, refit, select_best, train_candidates
from hit_platform.domain.models.estimators import PROBA_MIN
from hit_platform.domain.models.metrics import CountryMetrics, country_metrics, evaluate

__all__ = ["FAMILIES", "PROBA_MIN", "CandidateResult", "CountryMetrics", "Family", "country_metrics",
           "evaluate", "refit", "select_best", "train_candidates"]
