"""The pipelines' input checks: exactly FEATURE_COLUMNS, in any order, numeric."""

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models.frame import FeatureFrame, LogFeatures, feature_matrix, label_matrix
from hit_platform_tests.support.models import synthetic_features, trained_candidates


def test_feature_matrix_in_feature_order_whatever_the_column_order():
    X = synthetic_features(20, 0)
    shuffled = X[list(reversed(FEATURE_COLUMNS))]
    assert np.array_equal(feature_matrix(shuffled), X.to_numpy(dtype=float))


def test_missing_and_extra_columns_are_named():
    X = synthetic_features(5, 0)
    with pytest.raises(ValueError, match=r"missing columns \['tempo'\]"):
        feature_matrix(X.drop(columns="tempo"))
    with pytest.raises(ValueError, match=r"unexpected columns \['popularity'\]"):
        feature_matrix(X.assign(popularity=50))
    with pytest.raises(ValueError, match=r"missing columns \['energy'\]; unexpected columns \['Energy'\]"):
        feature_matrix(X.rename(columns={"energy": "Energy"}))


def test_duplicated_non_numeric_infinite_and_non_frame_inputs():
    X = synthetic_features(5, 0)
    with pytest.raises(ValueError, match="duplicated columns"):
        feature_matrix(pd.concat([X, X[["key"]]], axis=1))
    with pytest.raises(ValueError, match=r"columns \['loudness'\] are not numeric"):
        feature_matrix(X.assign(loudness="loud"))
    with pytest.raises(ValueError, match=r"columns \['tempo'\] contain infinite values"):
        feature_matrix(X.assign(tempo=np.inf))
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        feature_matrix(X.to_numpy())


def test_booleans_and_none_are_accepted():
    X = synthetic_features(4, 0).astype(object)
    X["is_explicit"] = [True, False, True, False]
    X.loc[1, "valence"] = None
    values = feature_matrix(X)
    assert values[:, FEATURE_COLUMNS.index("is_explicit")].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert np.isnan(values[1, FEATURE_COLUMNS.index("valence")])


def test_imputation_uses_training_medians():
    X = synthetic_features(101, 0)
    frame = FeatureFrame().fit(X)
    probe = X.head(2).copy()
    probe.loc[0, "tempo"] = np.nan
    out = frame.transform(probe)
    assert out[0, FEATURE_COLUMNS.index("tempo")] == np.median(X["tempo"])
    assert np.isnan(FeatureFrame(impute=False).fit(X).transform(probe)[0, FEATURE_COLUMNS.index("tempo")])


def test_log_features_only_touch_the_named_columns():
    X = feature_matrix(synthetic_features(10, 0))
    out = LogFeatures(("speechiness",)).fit(X).transform(X)
    j = FEATURE_COLUMNS.index("speechiness")
    assert np.allclose(out[:, j], np.log(X[:, j] + 1e-3))
    assert np.array_equal(np.delete(out, j, axis=1), np.delete(X, j, axis=1))
    with pytest.raises(ValueError, match="unknown columns"):
        LogFeatures(("bpm",)).fit(X)


def test_label_matrix_checks_shape_and_values():
    with pytest.raises(ValueError, match=r"expected shape \(n_songs, 72\)"):
        label_matrix(np.zeros((3, 71)))
    with pytest.raises(ValueError, match="3 rows of labels for 4 rows"):
        label_matrix(np.zeros((3, 72)), 4)
    with pytest.raises(ValueError, match="0/1 or bool"):
        label_matrix(np.full((3, 72), 2))
    assert label_matrix(np.ones((2, 72), dtype=int)).dtype == bool


@pytest.mark.parametrize("family", ["prior", "linear", "trees", "mlp", "blend"])
def test_every_fitted_pipeline_rejects_bad_columns(family):
    pipeline = trained_candidates()[family].pipeline
    X = synthetic_features(3, 9)
    with pytest.raises(ValueError, match=r"missing columns \['valence'\]"):
        pipeline.predict_proba(X.drop(columns="valence"))
    with pytest.raises(ValueError, match=r"unexpected columns \['spotify_id'\]"):
        pipeline.predict_proba(X.assign(spotify_id="x"))
    shuffled = X[list(reversed(FEATURE_COLUMNS))]
    assert np.array_equal(pipeline.predict_proba(shuffled), pipeline.predict_proba(X))
