"""Charts are well-formed, and the labels are exactly what the charts say."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hit_platform.generator import GeneratorConfig, generate
from hit_platform.generator.charts import allocate_streaks


def test_every_chart_day_has_ranks_1_to_50_once_and_unique_songs(clean_dump):
    bad = clean_dump.sql(f"""
        SELECT snapshot_date, country FROM {clean_dump.rows} GROUP BY ALL
        HAVING count(*) <> 50 OR count(DISTINCT daily_rank) <> 50 OR min(daily_rank) <> 1
            OR max(daily_rank) <> 50 OR count(DISTINCT spotify_id) <> 50""").fetchall()
    assert bad == []
    chart_days = clean_dump.sql(f"SELECT count(*) FROM (SELECT DISTINCT snapshot_date, country FROM {clean_dump.rows})")
    window = clean_dump.manifest["window"]
    assert chart_days.fetchone()[0] == 73 * window["days"]


def test_files_hold_their_days_and_the_manifest_counts_rows(clean_dump):
    for f in clean_dump.manifest["files"]:
        src = clean_dump.text_source(clean_dump.landing / f["name"])
        n, first, last = clean_dump.sql(f"SELECT count(*), min(snapshot_date), max(snapshot_date) FROM {src}").fetchone()
        assert (n, first, last) == (f["rows"], f["first_date"], f["last_date"]), f["name"]
    assert clean_dump.manifest["total_rows"] == sum(clean_dump.manifest["rows_per_file"].values())


def test_labels_derived_from_charts_equal_the_oracle_labels(clean_dump):
    charted = set(clean_dump.sql(
        f"SELECT DISTINCT spotify_id, country FROM {clean_dump.rows} WHERE country IS NOT NULL").fetchall())
    oracle = pq.read_table(clean_dump.truth / "oracle.parquet").to_pandas()
    positives = set(map(tuple, oracle.loc[oracle.label, ["spotify_id", "country"]].itertuples(index=False)))
    assert charted == positives
    dump_songs = {r[0] for r in clean_dump.sql(f"SELECT DISTINCT spotify_id FROM {clean_dump.rows}").fetchall()}
    assert dump_songs == set(oracle.spotify_id)
    assert len(oracle) == len(dump_songs) * 72
    counts = oracle.groupby("country").label.sum().to_dict()
    assert counts == clean_dump.manifest["positives_per_country"]


def test_movements_compare_with_yesterday_and_last_week(clean_dump):
    for lag, column in ((1, "daily_movement"), (7, "weekly_movement")):
        wrong = clean_dump.sql(f"""
            SELECT count(*) FROM {clean_dump.rows} t
            LEFT JOIN {clean_dump.rows} p ON p.spotify_id = t.spotify_id
                AND p.country IS NOT DISTINCT FROM t.country AND p.snapshot_date = t.snapshot_date - {lag}
            WHERE t.{column} <> coalesce(p.daily_rank - t.daily_rank, 0)""").fetchone()[0]
        assert wrong == 0, column
    moving = clean_dump.sql(f"SELECT avg((daily_movement <> 0)::INT) FROM {clean_dump.rows} "
                            f"WHERE snapshot_date > DATE '2024-01-01'").fetchone()[0]
    assert moving > 0.3  # charts churn day to day


def test_release_date_is_on_or_before_the_first_chart_day(clean_dump):
    late = clean_dump.sql(f"""SELECT count(*) FROM (SELECT spotify_id FROM {clean_dump.rows} GROUP BY spotify_id
                              HAVING max(album_release_date) > min(snapshot_date))""").fetchone()[0]
    assert late == 0
    old = clean_dump.sql(f"SELECT avg((album_release_date < snapshot_date - 365)::INT) FROM {clean_dump.rows}").fetchone()[0]
    assert 0.02 < old < 0.6  # some catalogue songs years old, most fresh


def test_popularity_rises_with_rank(clean_dump):
    top, bottom = clean_dump.sql(f"SELECT avg(popularity) FILTER (daily_rank <= 10), "
                                 f"avg(popularity) FILTER (daily_rank > 40) FROM {clean_dump.rows}").fetchone()
    assert top > bottom


def test_smoke_size_dump_of_1000_rows(tmp_path):
    manifest = generate(GeneratorConfig(out_dir=tmp_path / "landing", seed=1, songs=1000, countries=19,
                                        history_days=1, increments=0))
    assert manifest["total_rows"] == 1000
    assert [f["name"] for f in manifest["files"]] == ["charts_history.csv.gz"]
    frame = pd.read_csv(tmp_path / "landing" / "charts_history.csv.gz", keep_default_na=False, na_values=[""])
    assert len(frame) == 1000 and frame.country.isna().sum() == 50
    assert frame.groupby(frame.country.fillna("")).daily_rank.nunique().eq(50).all()
    assert (tmp_path / "generator" / "manifest.json").exists()  # truth_dir defaults next to out_dir


def test_impossible_configuration_raises_a_clear_error(tmp_path):
    # 50 songs for one day: every chart would need every song positive.
    with pytest.raises(ValueError, match="increase"):
        generate(GeneratorConfig(out_dir=tmp_path / "landing", songs=50, countries=2, history_days=1, increments=0))


@pytest.mark.parametrize("kwargs, field", [
    (dict(fmt="xlsx"), "fmt"),
    (dict(history_days=0), "history_days"),
    (dict(songs=10), "songs"),
    (dict(countries=73), "countries"),
    (dict(faults={"gremlins": 1}), "faults"),
    (dict(faults={"exact_duplicates": -1}), "faults"),
])
def test_bad_configuration_names_the_field(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        GeneratorConfig(out_dir=tmp_path / "landing", **kwargs)


def test_truth_dir_must_not_be_inside_out_dir(tmp_path):
    with pytest.raises(ValueError, match="truth_dir"):
        GeneratorConfig(out_dir=tmp_path / "landing", truth_dir=tmp_path / "landing" / "truth")
    config = GeneratorConfig(out_dir=tmp_path / "landing", start_date=date(2024, 1, 1))
    assert config.truth_dir == tmp_path / "generator"


def test_streak_lengths_fill_the_lanes_exactly():
    rng = np.random.default_rng(0)
    for k, days in ((50, 1), (60, 3), (500, 97), (3000, 97), (51, 400)):
        lengths = allocate_streaks(np.exp(rng.normal(size=k)), 50 * days, days)
        assert lengths.sum() == 50 * days and lengths.min() >= 1 and lengths.max() <= days
    with pytest.raises(ValueError):
        allocate_streaks(np.ones(40), 50 * 10, 10)
