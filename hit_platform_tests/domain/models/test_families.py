"""Every candidate family: one call, (n, 72) probabilities in COUNTRIES order, and its own promises."""

import json
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.models import FAMILIES, PROBA_MIN, CandidateResult, evaluate, select_best, train_candidates
from hit_platform.domain.models.candidates import uncalibrated
from hit_platform.domain.models.search import planned_points
from hit_platform_tests.support.models import data, trained_candidates

ALL = ["prior", "linear", "trees", "mlp", "blend"]


def test_all_families_are_trained_in_order():
    results = trained_candidates()
    assert list(FAMILIES) == ALL
    assert list(results) == ALL


@pytest.mark.parametrize("family", ALL)
def test_predict_proba_shape_order_and_range(family):
    pipeline = trained_candidates()[family].pipeline
    X, _, _ = data()["test"]
    P = pipeline.predict_proba(X)
    assert isinstance(pipeline, Pipeline)
    assert isinstance(P, np.ndarray) and P.dtype == np.float64 and P.shape == (len(X), 72)
    assert P.min() >= PROBA_MIN and P.max() <= 1 - PROBA_MIN
    assert tuple(pipeline[-1].countries_) == COUNTRIES
    one = pipeline.predict_proba(X.iloc[[5]])  # one song: all 72 countries in one call
    assert one.shape == (1, 72)
    assert np.allclose(one[0], P[5], rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", ALL)
def test_pickle_round_trip(family):
    pipeline = trained_candidates()[family].pipeline
    X, _, _ = data()["test"]
    again = pickle.loads(pickle.dumps(pipeline))
    assert again.predict_proba(X).tobytes() == pipeline.predict_proba(X).tobytes()


@pytest.mark.parametrize("family", ALL)
def test_result_fields(family):
    r = trained_candidates()[family]
    assert isinstance(r, CandidateResult) and r.family == family and r.fit_seconds > 0
    assert len(r.search) == planned_points(FAMILIES[family]) and not r.skipped  # no budget: every rung's points
    assert all({"val_mean_roc_auc", "val_mean_log_loss", "fit_seconds"} <= set(s) for s in r.search)
    assert json.loads(json.dumps(r.params)) == r.params  # survives MLflow / Dagster metadata
    for m in (r.val_metrics, r.train_metrics):
        assert set(m["roc_auc"]) == set(COUNTRIES) and isinstance(m["mean_log_loss"], float)
    on_all_songs = [s for s in r.search if s.get("songs", len(data()["train"][0])) == len(data()["train"][0])]
    best_in_search = max(on_all_songs, key=lambda s: (s["val_mean_roc_auc"], -s["val_mean_log_loss"]))
    assert best_in_search["val_mean_roc_auc"] == r.val_metrics["mean_roc_auc"]


def test_prior_is_the_train_base_rate():
    X, Y, _ = data()["train"]
    P = trained_candidates()["prior"].pipeline.predict_proba(X.head(3))
    assert np.allclose(P, Y.mean(axis=0)[None, :].repeat(3, axis=0))
    assert trained_candidates()["prior"].val_metrics["mean_roc_auc"] == 0.5


def test_linear_compiled_equals_sklearn_logistic_regression():
    r = trained_candidates()["linear"]
    pipeline = uncalibrated(r.pipeline)  # the logistic model itself, under any calibration it chose
    X, Y, _ = data()["train"]
    Xv, _, _ = data()["validation"]
    model = uncalibrated(pipeline)[-1]
    assert model.weights_.shape == (14, 72) and model.intercepts_.shape == (72,)
    # Nothing but arrays in the prediction path: no fitted sklearn estimator inside the model.
    assert not any(hasattr(v, "predict_proba") for v in vars(model).values())
    Zt, Zv = pipeline[:-1].transform(X), pipeline[:-1].transform(Xv)
    P = pipeline.predict_proba(Xv)
    for j in (0, 17, 40, 71):
        lr = LogisticRegression(C=r.params["C"], max_iter=1000, tol=1e-6).fit(Zt, Y[:, j])
        assert np.allclose(P[:, j], lr.predict_proba(Zv)[:, 1], rtol=1e-10, atol=1e-12)


def test_trees_and_mlp_clearly_beat_linear_on_non_linear_truth():
    results = trained_candidates()
    X, Y, P_true = data()["test"]
    test = {f: evaluate(Y, results[f].pipeline.predict_proba(X))["mean_roc_auc"] for f in ALL}
    oracle = evaluate(Y, P_true)["mean_roc_auc"]
    assert test["trees"] > test["linear"] + 0.02, test
    assert results["trees"].val_metrics["mean_roc_auc"] > results["linear"].val_metrics["mean_roc_auc"] + 0.02
    assert test["mlp"] > test["linear"] + 0.02, test
    assert test["blend"] > test["linear"] + 0.02 and test["blend"] > 0.9 * oracle, (test, oracle)
    assert test["linear"] > test["prior"] + 0.05


def test_select_best_by_auc_then_log_loss():
    results = list(trained_candidates().values())
    best = select_best(results)
    assert best.val_metrics["mean_roc_auc"] == max(r.val_metrics["mean_roc_auc"] for r in results)

    def fake(name, auc, loss):
        return CandidateResult(name, {}, None, {"mean_roc_auc": auc, "mean_log_loss": loss}, {}, [], 1.0)

    assert select_best([fake("a", 0.8, 0.30), fake("b", 0.8, 0.29), fake("c", 0.7, 0.1)]).family == "b"
    assert select_best([fake("a", float("nan"), 0.1), fake("b", 0.6, 0.5)]).family == "b"
    with pytest.raises(ValueError, match="no candidates"):
        select_best([])


def test_train_candidates_argument_errors():
    X, Y, _ = data()["train"]
    with pytest.raises(ValueError, match=r"unknown families \['forest'\]"):
        train_candidates(X, Y, X, Y, families=["forest"])
    with pytest.raises(ValueError, match=r"missing columns \['tempo'\]"):
        train_candidates(X.drop(columns="tempo"), Y, X, Y, families=["prior"])
    with pytest.raises(ValueError, match="train_Y"):
        train_candidates(X, Y[:10], X, Y, families=["prior"])


def test_models_take_missing_values():
    X, _, _ = data()["test"]
    X = X.head(20).copy()
    X.loc[:4, ["tempo", "valence"]] = np.nan
    for family in ALL:
        P = trained_candidates()[family].pipeline.predict_proba(X)
        assert np.isfinite(P).all(), family


def test_pooled_mlp_ties_a_regions_countries_and_learns_rare_hits_better():
    """pool (multi-task): a country's output weights are its region's plus a deviation penalised pool times
    more. A huge pool leaves each region's countries the same weights (the region's ear); a moderate one,
    on hits too rare for 72 separate outputs (~15 per country), ranks songs better than no pooling."""
    from hit_platform.domain.countries import REGION_OF
    from hit_platform.domain.models.estimators import MultiLabelMLP

    (X, _, P), (Xt, Yt, Pt) = data()["train"], data()["test"]
    rng = np.random.default_rng(5)
    rare = rng.random(P.shape) < P * 0.03 / P.mean(axis=0)  # the same taste, 3% of songs a hit per country
    Z = FAMILIES["mlp"].build({"hidden": 8, "alpha": 30.0, "max_iter": 150}, 0)[:-1].fit(X, rare)
    fit = {pool: MultiLabelMLP(hidden=8, alpha=30.0, max_iter=150, pool=pool).fit(Z.transform(X), rare)
           for pool in (0.0, 3.0, 1e6)}
    regions = np.array([REGION_OF[c] for c in COUNTRIES])
    spread = {pool: max(np.ptp(m.W2_[:, regions == r], axis=1).max() for r in set(regions)) for pool, m in fit.items()}
    assert spread[1e6] < 1e-3 < spread[3.0], spread
    truth = rng.random(Pt.shape) < Pt * 0.03 / P.mean(axis=0)
    auc = {pool: evaluate(truth, m.predict_proba(Z.transform(Xt)))["mean_roc_auc"] for pool, m in fit.items()}
    assert auc[3.0] > auc[0.0] + 0.01, auc
    with pytest.raises(ValueError, match="pool must be >= 0"):
        MultiLabelMLP(hidden=4, pool=-1.0).fit(Z.transform(X), rare)


def test_a_bag_of_mlps_is_one_mlp_whose_logits_are_its_nets_mean():
    """bag=3: three nets from their own seeded starts, stored as one MLP (hidden layers side by side), so
    its logits are the mean of the three nets' and the explainers and the fast path see a plain MLP."""
    from hit_platform.domain.models.estimators import MultiLabelMLP

    X, Y, _ = data()["train"]
    Z = FAMILIES["mlp"].build({"hidden": 4, "alpha": 30.0, "max_iter": 30}, 0)[:-1].fit(X, Y).transform(X)
    bag = MultiLabelMLP(hidden=4, max_iter=30, pool=3.0, bag=3, random_state=5).fit(Z, Y)
    assert bag.W1_.shape == (Z.shape[1], 12) and bag.W2_.shape == (12, len(COUNTRIES))
    net = MultiLabelMLP(hidden=4, max_iter=30, pool=3.0, random_state=5).fit(Z, Y)
    one = MultiLabelMLP(hidden=4, max_iter=30, pool=3.0, bag=1, random_state=5).fit(Z, Y)
    assert one.decision_function(Z).tobytes() == net.decision_function(Z).tobytes()  # a bag of one: the net
    assert np.array_equal(bag.W1_[:, :4], net.W1_) and np.allclose(bag.W2_[:4] * 3, net.W2_, rtol=1e-12, atol=1e-15)
    hidden = [np.tanh(Z @ bag.W1_[:, 4 * i:4 * i + 4] + bag.b1_[4 * i:4 * i + 4]) @ bag.W2_[4 * i:4 * i + 4] * 3
              for i in range(3)]
    assert np.allclose(bag.decision_function(Z), np.mean(hidden, axis=0) + bag.b2_, rtol=1e-10, atol=1e-10)
    assert not np.allclose(hidden[0], hidden[1])  # each net its own start
    with pytest.raises(ValueError, match="bag must be >= 1"):
        MultiLabelMLP(hidden=4, bag=0).fit(Z, Y)
