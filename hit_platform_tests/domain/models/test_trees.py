"""The trees family: stacked song x country rows, and the compiled scorer against scikit-learn's own."""

import numpy as np
import pytest

from hit_platform.domain.models.quickscorer import compile_hgb
from hit_platform.domain.models.search import uncalibrated
from hit_platform.domain.models.trees import OUTPUT_CATEGORIES, CountryTrees, stack_rows
from hit_platform_tests.support.models import data, trained_candidates


def test_stack_rows_is_song_major():
    X = np.arange(6, dtype=float).reshape(2, 3)
    S = stack_rows(X)
    assert S.shape == (144, 5)
    assert np.array_equal(S[72 + 5, :3], X[1]) and S[72 + 5, 3] == 5
    assert np.array_equal(S[:72, 3], np.arange(72))


def test_compiled_forest_equals_sklearn_prediction_with_missing_values():
    model = uncalibrated(trained_candidates()["trees"].pipeline)[-1]  # its model, under any calibration
    X = data()["test"][0].to_numpy(dtype=float)
    X[:10, 3] = np.nan
    X[5:15, 10] = np.nan
    ours = model.decision_function(X)
    sklearn = model.hgb_._raw_predict(stack_rows(X)).reshape(-1, 72)
    assert np.allclose(ours, sklearn, rtol=0, atol=1e-9)
    proba = model.hgb_.predict_proba(stack_rows(X))[:, 1].reshape(-1, 72)
    assert np.allclose(model.predict_proba(X), np.clip(proba, 1e-6, 1 - 1e-6), rtol=0, atol=1e-12)


def test_one_song_scores_the_same_bytes_as_in_a_batch():
    model = uncalibrated(trained_candidates()["trees"].pipeline)[-1]  # its model, under any calibration
    X = data()["test"][0].to_numpy(dtype=float)
    batch = model.predict_proba(X)
    singles = np.vstack([model.predict_proba(X[i:i + 1]) for i in range(25)])
    assert singles.tobytes() == batch[:25].tobytes()


def test_early_stopping_holds_out_whole_train_songs():
    model = uncalibrated(trained_candidates()["trees"].pipeline)[-1]  # its model, under any calibration
    held = model._held_out_songs(2000)
    assert held.sum() == 300
    assert model.n_iter_ < model.max_iter  # it stopped early


def test_compile_rejects_too_many_leaves_and_bad_params():
    X, Y, _ = data()["train"]
    with pytest.raises(ValueError, match="max_leaf_nodes must be in 2..64"):
        CountryTrees(max_leaf_nodes=100).fit(X.to_numpy(), Y)
    with pytest.raises(ValueError, match="expected 72 label columns|expected shape"):
        CountryTrees().fit(X.to_numpy(), Y[:, :10])
    with pytest.raises(ValueError, match="binary HistGradientBoostingClassifier"):
        compile_hgb(object(), OUTPUT_CATEGORIES)
