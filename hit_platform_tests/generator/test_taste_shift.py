"""A taste shift (a concept shift for drills): one region's countries judge the songs released from a
day on by a changed taste; nothing else of the world changes, and without a shift nothing at all."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from hit_platform.domain.countries import CHART_SIZE, COUNTRIES, REGIONS
from hit_platform.generator import GeneratorConfig, generate
from hit_platform.generator.charts import allocate_streaks, lay_out_held
from hit_platform.generator.dump import OtherWorld, hidden_truth, manifest_world
from hit_platform.generator.oracle import conditional_probability
from hit_platform.generator.taste import TasteShift
from hit_platform_tests.generator.conftest import build

WORLD = dict(seed=3, songs=6000, history_days=60, increments=0, world_days=75, start_date=date(2024, 1, 1))
SHIFT = TasteShift("latam", 60, 1.0, "anglo")


def _truth(tmp_path, **kw):
    return hidden_truth(GeneratorConfig(out_dir=tmp_path / "landing", **WORLD, **kw))


def test_without_a_shift_the_world_reads_as_before_shifts_existed(tmp_path):
    cfg = GeneratorConfig(out_dir=tmp_path / "landing", **WORLD)
    assert cfg.taste_shift is None and "taste_shift" not in cfg.world() and "taste_shift" not in cfg.as_json()
    truth = hidden_truth(cfg)
    assert truth.shift is None and truth.shifted is None and truth.release_day is None
    assert truth.earliest_chart_day() is None and len(truth.shifted_columns) == 0


def test_a_shift_changes_only_the_regions_countries_for_the_songs_released_from_its_day(tmp_path):
    plain, shifted = _truth(tmp_path), _truth(tmp_path, taste_shift=SHIFT)
    region = shifted.shifted_columns
    assert [COUNTRIES[j - 1] for j in region] == list(REGIONS["latam"])  # column 0 is the global chart
    new = shifted.shifted
    assert 0.02 < new.mean() < 0.1  # a steady share of the catalogue is released after the day
    assert (shifted.release_day[new] >= SHIFT.day).all() and (shifted.release_day[new] < 75).all()
    assert (shifted.release_day[~new] == -1).all()
    assert len(np.unique(shifted.release_day[new])) == 75 - SHIFT.day  # every day after it

    changed_p, changed_y = np.argwhere(plain.prob != shifted.prob), np.argwhere(plain.labels != shifted.labels)
    assert len(changed_p) > 0.9 * new.sum() * len(region) and len(changed_y) > 0
    for rows, cols in (changed_p.T, changed_y.T):
        assert new[rows].all() and np.isin(cols, region).all()
    assert np.array_equal(plain.popularity, shifted.popularity) and plain.redraws == shifted.redraws

    # the new songs' labels there follow the new taste, and the charts keep their share of hits
    y, p_new, p_old = (a[np.ix_(new, region)].ravel() for a in (shifted.labels, shifted.prob, plain.prob))
    assert roc_auc_score(y, p_new) > roc_auc_score(y, p_old) + 0.1
    assert y.mean() == pytest.approx(plain.labels[np.ix_(new, region)].mean(), rel=0.25)

    # strength 0: the same calendar of new songs, the same truth as without a shift
    control = _truth(tmp_path, taste_shift=TasteShift("latam", 60, 0.0))
    assert np.array_equal(control.shifted, new)
    assert np.array_equal(control.prob, plain.prob) and np.array_equal(control.labels, plain.labels)


def test_reversed_taste_and_config_forms(tmp_path):
    reversed_ = _truth(tmp_path, taste_shift="asia:60:1")
    assert reversed_.shift == TasteShift("asia", 60, 1.0, None)
    base = dict(out_dir=tmp_path / "landing", **WORLD)
    assert GeneratorConfig(**base, taste_shift="latam:2024-03-01:0.5:anglo").taste_shift == TasteShift(
        "latam", 60, 0.5, "anglo")
    as_dict = {"region": "latam", "day": 60, "strength": 1.0, "toward": "anglo"}
    cfg = GeneratorConfig(**base, taste_shift=as_dict)
    assert cfg.taste_shift == SHIFT and cfg.world()["taste_shift"] == as_dict


@pytest.mark.parametrize("shift, match", [
    ("moon:60:1", "region"), ("latam:60:1.5", "strength"), ("latam:60:1:latam", "toward"),
    ("latam:60:1:mars", "toward"), ("latam:75:1", "taste_shift: day 75"), ("latam:2023-12-31:1", "day -1"),
    ("latam:60", "REGION:DAY:STRENGTH"),
])
def test_a_bad_shift_names_what_is_wrong(tmp_path, shift, match):
    with pytest.raises(ValueError, match=match):
        GeneratorConfig(out_dir=tmp_path / "landing", **WORLD, taste_shift=shift)


def test_a_shifted_dump_holds_the_new_songs_back_to_their_release_days(tmp_path):
    world = dict(seed=3, songs=3000, history_days=24, increments=6, taste_shift="latam:20:1:anglo")
    dump = build(tmp_path / "shifted", "parquet", **world)
    shift_date = date(2024, 1, 1) + timedelta(days=20)
    bad_days = dump.sql(f"""SELECT count(*) FROM (SELECT snapshot_date, country FROM {dump.rows} GROUP BY ALL
        HAVING count(*) <> 50 OR count(DISTINCT daily_rank) <> 50 OR count(DISTINCT spotify_id) <> 50)""").fetchone()
    assert bad_days == (0,)
    early = dump.sql(f"""SELECT count(*) FROM (SELECT spotify_id FROM {dump.rows} GROUP BY spotify_id
                         HAVING max(album_release_date) > min(snapshot_date))""").fetchone()
    assert early == (0,)

    truth = hidden_truth(GeneratorConfig(out_dir=tmp_path / "x" / "landing", start_date=date(2024, 1, 1), **world))
    new_ids = set(truth.catalogue.spotify_id[truth.shifted & truth.in_dump])
    released_after = {r[0] for r in dump.sql(f"SELECT DISTINCT spotify_id FROM {dump.rows} "
                                            f"WHERE album_release_date >= DATE '{shift_date}'").fetchall()}
    assert released_after == new_ids and len(new_ids) > 100
    # the oracle is the shifted truth, and the labels are what the charts show
    oracle = pq.read_table(dump.truth / "oracle.parquet").to_pandas().set_index(["spotify_id", "country"])
    dump_songs = truth.catalogue.spotify_id[truth.in_dump]
    q = conditional_probability(truth.prob)[truth.in_dump][:, 1:]
    assert np.allclose(oracle.probability.to_numpy().reshape(len(dump_songs), 72), q)
    charted = set(dump.sql(f"SELECT DISTINCT spotify_id, country FROM {dump.rows} "
                           "WHERE country IS NOT NULL").fetchall())
    assert charted == set(oracle.index[oracle.label])

    entry = dump.manifest["taste_shift"]
    assert entry["first_release_date"] == str(shift_date) and entry["countries"] == list(REGIONS["latam"])
    assert entry["songs_shifted_in_dump"] == len(new_ids)
    assert manifest_world(dump.manifest) == GeneratorConfig(
        out_dir=dump.landing, truth_dir=dump.truth, fmt="parquet", start_date=date(2024, 1, 1), **world).world()
    # the same world again leaves its files; another shift is another world
    again = generate(GeneratorConfig(out_dir=dump.landing, truth_dir=dump.truth, fmt="parquet",
                                     start_date=date(2024, 1, 1), **world))
    assert {f["status"] for f in again["files"]} == {"unchanged"}
    with pytest.raises(OtherWorld, match="taste_shift"):
        generate(GeneratorConfig(out_dir=dump.landing, truth_dir=dump.truth, fmt="parquet", start_date=date(2024, 1, 1),
                                 **(world | {"taste_shift": "latam:20:0.5:anglo"})))


@pytest.mark.parametrize("seed", range(4))
def test_held_streaks_start_on_or_after_their_day_and_fill_the_chart_exactly(seed):
    rng = np.random.default_rng(seed)
    days, k = 30, 700
    earliest = np.where(rng.random(k) < 0.2, rng.integers(5, days, k), 0)
    length = allocate_streaks(np.exp(rng.normal(size=k)), CHART_SIZE * days, days - earliest)
    assert (length <= days - earliest).all()
    start, length = lay_out_held(length, earliest, days, rng.permutation(k))
    assert length.sum() == CHART_SIZE * days and length.min() >= 1 and length.max() <= days
    order = np.argsort(start)
    assert start[order][0] == 0 and np.array_equal(start[order][1:], np.cumsum(length[order])[:-1])
    held = earliest > 0
    assert (start[held] % days >= earliest[held]).all()
    assert (start[held] % days + length[held] <= days).all()  # no held streak crosses its lane's end
