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
all 2^14 coalitions scored by the model.

Paths and their cost, one song x 72 countries, CPU ms from bench/bench_explain.py on the demo world
(2 cores shared with a load of ~13, 2026-12-07; an idle core is several times faster; the figures
and the method are in bench/README.md). An `Explainer` prepares model and background once.
- prior: phi = 0, base = the value. 0.04 ms.
- linear: closed form phi_cj = w_jc (x_j - mean_b z_bj) on the standardised features (each
  preprocessing step acts on one feature, so hybrids commute with it). O(14 x 72); 0.3 ms.
- trees: interventional TreeSHAP on scikit-learn's tree nodes (`tree_shap`): O(B x bounded
  (leaf, feature) pairs) per song plus a (72 x leaves) @ (leaves x 14) product; B = 64. 11 ms for
  261 rounds of 7 leaves.
- mlp: all 2^14 coalitions per background song, the hidden layer's mean activations, then W2:
  O(2^14 x B x H) adds and divides; B = 16. 50 ms (H = 32) to 76 ms (H = 64) under that load, 14 ms
  (H = 32) measured alone at a quieter moment.
- blend: the members' paths, weighted; B = the smallest of its members' (16). 61 ms (trees + mlp32).
- isotonic countries: the model's log-odds of all 2^14 hybrids per background song (trees: one
  subset-sum transform over the leaves; mlp: its hidden layer), through the calibration; B = 8.
  About 0.8 s: the costly path, declared per country by its scale.
A feature a model cannot use (no split on it, a zero weight row) is a null player: left out of
every enumeration, its attribution exactly 0.
"""

from hit_platform.domain.explain.attributions import (ADDITIVITY_TOLERANCE, BACKGROUND_SIZE, FAMILY_BACKGROUND,
                                                      Attributions, Background, Explainer, background_sample,
                                                      explain)
from hit_platform.domain.explain.model_parts import LOG_ODDS, PROBABILITY

__all__ = ["ADDITIVITY_TOLERANCE", "BACKGROUND_SIZE", "FAMILY_BACKGROUND", "LOG_ODDS", "PROBABILITY",
           "Attributions", "Background", "Explainer",
           "background_sample", "explain"]
