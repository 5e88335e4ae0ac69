"""The hidden truth: calibrated, informative but not trivial, regional."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from hit_platform.domain.countries import COUNTRIES, REGION_OF


@pytest.fixture(scope="module")
def oracle(calibration_dump):
    frame = pq.read_table(calibration_dump.truth / "oracle.parquet").to_pandas()
    assert list(frame.columns) == ["spotify_id", "country", "probability", "label"]
    return frame


def test_oracle_covers_every_dump_song_and_country(oracle, calibration_dump):
    assert len(oracle) == calibration_dump.manifest["songs_in_dump"] * 72
    assert set(oracle.country) == set(COUNTRIES)
    assert oracle.probability.between(0, 1).all()
    # Most of the catalogue charts somewhere.
    assert calibration_dump.manifest["songs_in_dump"] > 0.8 * calibration_dump.manifest["songs_in_catalogue"]


def test_oracle_is_calibrated_per_country(oracle):
    stats = oracle.assign(var=oracle.probability * (1 - oracle.probability)).groupby("country").agg(
        n=("label", "size"), positives=("label", "sum"), expected=("probability", "sum"), var=("var", "sum"))
    z = (stats.positives - stats.expected) / np.sqrt(stats["var"])
    assert (z.abs() < 4).all(), z[z.abs() >= 4]
    total_z = (stats.positives.sum() - stats.expected.sum()) / np.sqrt(stats["var"].sum())
    assert abs(total_z) < 4
    assert abs(stats.positives.sum() / stats.expected.sum() - 1) < 0.01


def test_positive_rates_are_plausible(oracle):
    rates = oracle.groupby("country").label.mean()
    assert rates.min() > 0.02 and rates.max() < 0.35
    assert rates.max() / rates.min() > 2  # countries differ


def test_oracle_is_informative_but_not_trivial(oracle):
    aucs = [roc_auc_score(g.label, g.probability) for _, g in oracle.groupby("country")]
    assert 0.7 < np.mean(aucs) < 0.95


def test_countries_of_a_region_share_their_taste(oracle):
    logits = oracle.pivot(index="spotify_id", columns="country", values="probability")
    logits = np.log(logits / (1 - logits))
    corr = logits.corr().to_numpy()
    codes = list(logits.columns)
    same = np.array([[REGION_OF[a] == REGION_OF[b] and a != b for b in codes] for a in codes])
    other = np.array([[REGION_OF[a] != REGION_OF[b] for b in codes] for a in codes])
    assert corr[same].mean() > corr[other].mean() + 0.2
