"""Why this song, in this country: exact per-country attributions of a fitted model.

    background = background_sample(train_X, size=64, seed=0)
    a = explain(champion_pipeline, songs_X, background)   # or Explainer(pipeline, background).explain(X)
    a.base[i, c] + a.phi[i, c].sum() == a.value[i, c]     # within 1e-9, on a.scales[c]

Value function (interventional, country held fixed): v_c(S) = mean_b f_c(x on S, z_b elsewhere)
over the first `background_size[c]` songs z_b of the declared background; base = v_c(empty), phi
the exact Shapley values of v_c over the 14 audio features. No sampling anywhere.

Scale, per country: "log-odds" where the calibration is affine in log-odds (none, platt,
temperature, region, per-country platt): the served probability is sigmoid(value). Everything is
linear there: a blend's attributions are the weighted sum of its members', a calibration multiplies
a country's attributions by its slope and adds its intercept to the base. (The platform keeps served
probabilities within [1e-6, 1 - 1e-6]; the log-odds explained are the model's before that clip,
which binds only beyond |log-odds| 13.8.) "probability, exact enumeration" for a country whose
calibration is isotonic (not affine): v_c(S) = mean_b g_c(f_c(hybrid)) of the served probability,
every coalition's hybrid scored by the model.

Paths and their cost, one song x 72 countries, CPU ms p50 from bench/bench_explain.py section 1 on
the demo world (2 cores shared, load average ~2, 2026-12-07; the figures and the method are in
bench/README.md). With NumPy's BLAS on 2 threads the process's CPU is about twice its wall time
(OpenBLAS's second thread busy-waits; the wall time is no shorter); the figure in brackets is with one BLAS thread
(OPENBLAS_NUM_THREADS=1), where CPU equals wall. An `Explainer` prepares model and background once.
- prior: phi = 0, base = the value. 0.04 ms.
- linear: closed form phi_cj = w_jc (x_j - mean_b z_bj) on the standardised features (each
  preprocessing step acts on one feature, so hybrids commute with it). O(14 x 72); 0.3 ms.
- trees: interventional TreeSHAP on scikit-learn's tree nodes (`tree_shap`): O(B x bounded
  (leaf, feature) pairs) per song plus a (72 x leaves) @ (leaves x 14) product; B = 64. 6 ms (2.3)
  for 261 rounds of 7 leaves.
- mlp: per background song, the coalitions of the features where the song and it differ (the others
  are null players of that song's game; the demo world's songs share about 2 of 14 with each, so
  about a quarter of the 2^14 coalitions), the hidden layer's activations, then W2:
  O(sum_b 2^d_b x H) adds and divides; B = 16. 14-16 ms (5.2) at H = 32, 22-29 ms (8.6) at H = 64.
- blend: the members' paths, weighted; B = the smallest of its members' (16). 16-25 ms (7) for
  trees + mlp32, platt or not.
- isotonic countries: the model's log-odds of every hybrid per background song, over the features
  where they differ (trees: one subset-sum transform over the leaves; mlp: its hidden layer),
  through the calibration; B = 8. 140-170 ms (64): the costly path, declared per country by its scale.
A feature a model cannot use (no split on it, a zero weight row) is a null player: left out of
every enumeration, its attribution exactly 0.
"""

from hit_platform.domain.explain.attributions import (ADDITIVITY_TOLERANCE, BACKGROUND_SIZE, FAMILY_BACKGROUND,
                                                      Attributions, Background, Explainer, background_sample,
                                                      explain)
from hit_platform.domain.explain.importance import Importance, global_importance, importance_sample
from hit_platform.domain.explain.model_parts import LOG_ODDS, PROBABILITY

__all__ = ["ADDITIVITY_TOLERANCE", "BACKGROUND_SIZE", "FAMILY_BACKGROUND", "LOG_ODDS", "PROBABILITY",
           "Attributions", "Background", "Explainer", "Importance",
           "background_sample", "explain", "global_importance", "importance_sample"]
