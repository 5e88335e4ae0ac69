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

Paths and their cost (one song x 72 countries; bench/bench_explain.py measures them):
- prior: phi = 0, base = the value. Nothing to compute.
- linear: closed form phi_cj = w_jc (x_j - mean_b z_bj) on the standardised features (each
  preprocessing step acts on one feature, so hybrids commute with it). O(14 x 72).
- trees: interventional TreeSHAP on scikit-learn's tree nodes (`tree_shap`): O(B x leaves x 14)
  per song plus a (72 x leaves) @ (leaves x 14) product; B = 64.
- mlp: all 2^14 coalitions per background song, the hidden layer's mean activations, then W2:
  O(2^14 x B x H); B = 16.
- blend: the members' paths, weighted; B = the smallest of its members' (16).
- isotonic countries: the model scored on 2^14 x B hybrid rows per song, B = 8: the costly path.
"""

from hit_platform.domain.explain.attributions import (ADDITIVITY_TOLERANCE, BACKGROUND_SIZE, FAMILY_BACKGROUND,
                                                      Attributions, Background, Explainer, background_sample,
                                                      explain)
from hit_platform.domain.explain.model_parts import LOG_ODDS, PROBABILITY

__all__ = ["ADDITIVITY_TOLERANCE", "BACKGROUND_SIZE", "FAMILY_BACKGROUND", "LOG_ODDS", "PROBABILITY",
           "Attributions", "Background", "Explainer",
           "background_sample", "explain"]
