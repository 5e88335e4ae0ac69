"""Label-free performance estimation proven against the generator's hidden truth (issue #16, drills).

    .venv/bin/python bench/bench_monitoring.py [--songs 30000] [--served 3000] [--family mlp]
                                               [--taste-shift latam:120:1:anglo] [--drill-days 30]
                                               [--coverage-seeds 42,7,123] [--windows 10]

One generated world (all 72 countries); its songs split into train / validation / a pool of
songs that will be "served". A model is trained (train_candidates), calibrated per country on
validation (choose_calibration), then:
  1. calibration: per-country ECE on validation before and after (mean, worst country) and the
     log-loss ratio to the oracle (the world's true probabilities) before and after;
  2. covariate shift: a week of served songs drawn from the pool with weights that favour
     energetic, danceable songs (the countries' tastes unchanged). The estimate (no labels) is
     compared with the realized ROC AUC on those songs' sampled labels, per country with at
     least --min-positives positives: the share within +-0.03 (target >= 90%), the coverage of
     the 90% intervals, and the five worst countries;
  3. no shift: a week drawn uniformly from the pool; countries whose estimated AUC falls more
     than 0.05 below the model's validation AUC (the monitor's rule) should be none.
  4. concept shift: a second world of the same seed whose generator shifts one region's taste
     (--taste-shift REGION:DAY:STRENGTH[:TOWARD], default latam:120:1:anglo: Latin America's 18
     countries start judging the songs released from day 120 on like the anglo countries do).
     A model is trained, calibrated and tested on the songs released before the shift; then, day
     by day, the songs released that day are served and their labels become known
     --label-delay days later. Per day, over everything served so far: the label-free estimate of
     the mean ROC AUC (it cannot see a change of taste: the songs, and so the probabilities, are
     as before), the realized mean ROC AUC on the labels known, its drop below the test AUC, the
     shifted region's own drop, and the same drop in a control world (same calendar, strength 0).
     The delayed-label monitor's rule (drop > 0.05 over at least 200 labelled songs) fires on the
     first day printed with "<- fires"; its per-region rule (a region's drop, down to the bottom of
     its 90% interval, > 0.05) is printed after the table, with the alert the platform raises.
  5. interval coverage (--coverage-seeds, '' skips it): per world, a model, its reference (ECE and
     model error) on a test split, and --windows windows of 200, 1,000 and 3,000 served songs: the
     share of countries whose 90% ROC AUC interval covers the realized AUC, before (sampling and
     ECE) and after (the model's own error added). Target: >= 88% in every size.
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from pathlib import Path
import tempfile

import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.models import select_best, train_candidates
from hit_platform.domain.models.calibration import choose_calibration, expected_calibration_error, mean_log_loss
from hit_platform.domain.models.metrics import evaluate
from hit_platform.domain.performance_estimate import estimate, estimated_roc_auc, model_error
from hit_platform.domain.region_drop import region_drops
from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.dump import hidden_truth
from hit_platform.generator.oracle import conditional_probability
from hit_platform.generator.taste import TasteShift

MAX_AUC_DROP = 0.05   # HIT_MONITOR_MAX_AUC_DROP
MIN_ROWS = 200        # HIT_MONITOR_MIN_ROWS
MAX_REGION_DROP = 0.05  # HIT_MONITOR_MAX_REGION_AUC_DROP
MIN_EXPECTED = 10     # HIT_MONITOR_MIN_EXPECTED_POSITIVES
START = date(2026, 1, 1)


def config(songs: int, seed: int, **kw) -> GeneratorConfig:
    return GeneratorConfig(out_dir=Path(tempfile.gettempdir()) / "bench_monitoring" / "landing", seed=seed,
                           songs=songs, history_days=120, increments=0, start_date=START, **kw)


def song_features(truth) -> pd.DataFrame:
    """Every catalogue song's model inputs, as the lake's features give them."""
    cat = truth.catalogue
    X = pd.DataFrame({**{c: cat.features[c] for c in FEATURE_COLUMNS if c in cat.features},
                      "is_explicit": cat.is_explicit.astype(float), "duration_ms": cat.duration_ms.astype(float)})
    return X[list(FEATURE_COLUMNS)].astype(float)


def world(songs: int, seed: int):
    truth = hidden_truth(config(songs, seed))
    keep = truth.in_dump
    X = song_features(truth)[keep].reset_index(drop=True)
    Y = truth.labels[keep][:, 1:]
    Q = conditional_probability(truth.prob)[keep][:, 1:]
    return X, Y, Q


def covariate_shift(Xp: pd.DataFrame, size: int, rng) -> np.ndarray:
    """Rows of Xp drawn without replacement with weights that favour energetic, danceable songs."""
    lift = np.exp(2.5 * ((Xp["energy"] - Xp["energy"].mean()) / Xp["energy"].std()
                         + (Xp["danceability"] - Xp["danceability"].mean()) / Xp["danceability"].std()) / 2)
    lift = lift.to_numpy()
    return rng.choice(len(Xp), size=min(size, len(Xp)), replace=False, p=lift / lift.sum())


def compare(name: str, P: np.ndarray, Y: np.ndarray, ece: np.ndarray, min_positives: int) -> dict:
    e = estimate(P, calibration_error=ece, level=0.9)
    real = np.array(list(evaluate(Y, P)["roc_auc"].values()))
    enough = Y.sum(axis=0) >= min_positives
    err = np.abs(e.roc_auc - real)
    covered = (real >= e.roc_auc_lower) & (real <= e.roc_auc_upper)
    print(f"\n{name}: {len(P):,} served songs, {int(enough.sum())} countries with >= {min_positives} positives")
    print(f"  estimated vs realized ROC AUC: within +-0.03 in {(err[enough] <= 0.03).mean():.0%} of them "
          f"(target >= 90%), mean |error| {err[enough].mean():.4f}")
    print(f"  90% intervals cover the realized AUC in {covered[enough].mean():.0%} of them")
    worst = np.argsort(-np.where(enough, err, -1))[:5]
    for j in worst:
        print(f"    {COUNTRIES[j]}  estimate {e.roc_auc[j]:.3f} [{e.roc_auc_lower[j]:.3f}, {e.roc_auc_upper[j]:.3f}]  "
              f"realized {real[j]:.3f}  ({int(Y[:, j].sum())} positives)")
    return {"estimate": e, "realized": real, "enough": enough}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=30_000)
    ap.add_argument("--served", type=int, default=3_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--family", default="mlp")
    ap.add_argument("--min-positives", type=int, default=30)
    ap.add_argument("--taste-shift", default="latam:120:1:anglo",
                    help="section 4's shift, REGION:DAY:STRENGTH[:TOWARD] (DAY from %s)" % START)
    ap.add_argument("--drill-days", type=int, default=30, help="days served after the shift")
    ap.add_argument("--label-delay", type=int, default=0, help="days until a served song's labels are known")
    ap.add_argument("--coverage-seeds", default="42,7,123",
                    help="section 5: worlds whose interval coverage is measured ('' skips it)")
    ap.add_argument("--windows", type=int, default=10, help="section 5: windows of served songs per size and world")
    args = ap.parse_args()
    t = time.perf_counter()
    X, Y, Q = world(args.songs, args.seed)
    rng = np.random.default_rng(args.seed)
    part = rng.permutation(len(X))
    n = len(X)
    train, val, pool = part[: int(0.5 * n)], part[int(0.5 * n): int(0.7 * n)], part[int(0.7 * n):]
    print(f"world: {n:,} songs in the dump ({time.perf_counter() - t:.1f} s); train {len(train):,}, "
          f"validation {len(val):,}, pool to serve {len(pool):,}")
    t = time.perf_counter()
    best = select_best(train_candidates(X.iloc[train], Y[train], X.iloc[val], Y[val], seed=0,
                                        families=[args.family]))
    print(f"trained {best.family} in {time.perf_counter() - t:.1f} s")
    P_val_raw = best.pipeline.predict_proba(X.iloc[val])
    choice = choose_calibration(P_val_raw, Y[val])
    P_val = choice.calibration.transform(P_val_raw)
    ece_raw, ece = expected_calibration_error(Y[val], P_val_raw), expected_calibration_error(Y[val], P_val)
    print(f"\n1. calibration chosen on validation (cross-fitted log loss {choice.val_log_loss}): {choice.method}")
    print(f"  ECE before: mean {ece_raw.mean():.4f}, worst {COUNTRIES[ece_raw.argmax()]} {ece_raw.max():.4f}")
    print(f"  ECE after (in-sample): mean {ece.mean():.4f}, worst {COUNTRIES[ece.argmax()]} {ece.max():.4f}")
    P_pool_raw = best.pipeline.predict_proba(X.iloc[pool])
    P_pool = choice.calibration.transform(P_pool_raw)
    oracle_loss = mean_log_loss(Y[pool], Q[pool])
    print(f"  log-loss ratio to the oracle on the pool: before {mean_log_loss(Y[pool], P_pool_raw) / oracle_loss:.3f}, "
          f"after {mean_log_loss(Y[pool], P_pool) / oracle_loss:.3f}")
    val_auc = np.array(list(evaluate(Y[val], P_val)["roc_auc"].values()))

    Xp = X.iloc[pool]
    shifted = covariate_shift(Xp, args.served, rng)
    print(f"  covariate shift: mean energy {Xp['energy'].iloc[shifted].mean():.3f} served vs "
          f"{Xp['energy'].mean():.3f} in the pool")
    compare("2. covariate shift", P_pool[shifted], Y[pool][shifted], ece, args.min_positives)

    plain = rng.choice(len(pool), size=min(args.served, len(pool)), replace=False)
    r = compare("3. no shift", P_pool[plain], Y[pool][plain], ece, args.min_positives)
    drops = r["enough"] & (r["estimate"].roc_auc < val_auc - MAX_AUC_DROP)
    print(f"  countries whose estimated AUC is more than {MAX_AUC_DROP} below validation: {int(drops.sum())} "
          f"(alerts expected: 0)")

    concept_shift(args)
    if args.coverage_seeds:
        interval_coverage(args)


def interval_coverage(args) -> None:
    """Section 5: the 90% ROC AUC intervals' coverage over worlds (seeds) and windows of served songs, before
    (sampling and ECE shifts) and after (plus the model's own error measured on its test split)."""
    print(f"\n5. interval coverage: worlds of seeds {args.coverage_seeds}, {args.windows} windows per size, "
          f"countries with >= {MIN_EXPECTED} expected hits; reference (ECE, model error) on a test split")
    sizes = (200, 1000, 3000)
    pooled = {size: {"before": [], "after": []} for size in sizes}
    for seed in map(int, args.coverage_seeds.split(",")):
        X, Y, _ = world(args.songs, seed)
        rng = np.random.default_rng(seed)
        part, n = rng.permutation(len(X)), len(X)
        train, val, test, pool = (part[: int(0.45 * n)], part[int(0.45 * n): int(0.6 * n)],
                                  part[int(0.6 * n): int(0.75 * n)], part[int(0.75 * n):])
        best = select_best(train_candidates(X.iloc[train], Y[train], X.iloc[val], Y[val], seed=0,
                                            families=[args.family]))
        calibration = choose_calibration(best.pipeline.predict_proba(X.iloc[val]), Y[val]).calibration
        P_test = calibration.transform(best.pipeline.predict_proba(X.iloc[test]))
        ece, tau = expected_calibration_error(Y[test], P_test), model_error(Y[test], P_test)
        P_pool = calibration.transform(best.pipeline.predict_proba(X.iloc[pool]))
        line = []
        for size in sizes:
            for _ in range(args.windows):
                idx = rng.choice(len(pool), size=min(size, len(pool)), replace=False)
                P, Yw = P_pool[idx], Y[pool][idx]
                real = np.array(list(evaluate(Yw, P)["roc_auc"].values()))
                judged = (P.sum(axis=0) >= MIN_EXPECTED) & np.isfinite(real)
                for name, t in (("before", None), ("after", tau)):
                    e = estimate(P, calibration_error=ece, auc_model_error=t)
                    pooled[size][name].append(((real >= e.roc_auc_lower) & (real <= e.roc_auc_upper))[judged])
            b, a = (np.concatenate(pooled[size][k][-args.windows:]).mean() for k in ("before", "after"))
            line.append(f"{size}: {b:.0%} -> {a:.0%}")
        print(f"  seed {seed}: model error bias {tau.bias:+.4f} spread {tau.spread:.4f}, mean ECE {ece.mean():.4f}; coverage before -> after by "
              f"window size: " + ", ".join(line))
    for size in sizes:
        b, a = (np.concatenate(pooled[size][k]) for k in ("before", "after"))
        print(f"  all seeds, {size:5d} songs: before {b.mean():.1%}, after {a.mean():.1%} ({len(a)} country-windows)")
    every = [np.concatenate([c for size in sizes for c in pooled[size][k]]).mean() for k in ("before", "after")]
    print(f"  overall: before {every[0]:.1%}, after {every[1]:.1%} (target >= 88%)")


def served_days(truth, P: np.ndarray, promoted: float, test_auc: np.ndarray, region: np.ndarray,
                days: range, label_delay: int, test_songs: int | None = None) -> list[dict]:
    """Day by day, the songs released since the shift are served; over those whose labels are
    known (label_delay days after release): the realized mean ROC AUC, its drop below the promoted
    test AUC, the region's own drop, and whether the delayed-label rule fires."""
    release = np.where(truth.shifted & truth.in_dump, truth.release_day, -1)
    out = []
    for d in days:
        served = np.flatnonzero((release >= days.start) & (release <= d))
        known = np.flatnonzero((release >= days.start) & (release <= d - label_delay))
        row = dict(day=d, served=served, known=len(known))
        if len(known) >= 2:
            m = evaluate(truth.labels[known][:, 1:], P[known])
            auc = np.array(list(m["roc_auc"].values()))
            drop = promoted - m["mean_roc_auc"]
            regions = region_drops(dict(zip(COUNTRIES, test_auc)), m["roc_auc"], m["positives"], len(known),
                                   test_songs, MAX_REGION_DROP)
            row.update(real=m["mean_roc_auc"], drop=drop, region_drop=float(np.nanmean(test_auc[region] - auc[region])),
                       fires=len(known) >= MIN_ROWS and drop > MAX_AUC_DROP,
                       region_fires=[r.region for r in regions if r.breached] if len(known) >= MIN_ROWS else [])
        out.append(row)
    return out


def first_fire(rows: list[dict], rule: str = "fires") -> int | None:
    """The first day of serving (1 = the shift's day) on which the delayed-label rule fires (`rule`
    "region_fires": the per-region rule, any region)."""
    return next((i + 1 for i, r in enumerate(rows) if r.get(rule)), None)


def monitor_in_a_lake(truth, P: np.ndarray, row: dict, promoted: float, label_delay: int,
                      test_auc: np.ndarray, test_songs: int) -> list[dict]:
    """The platform's own delayed-label monitor on that day's lake: the served songs' predictions as a
    batch of model version "bench" and the labels known, in a real DuckLake; a breach raises its
    ops.alerts row as ops/delayed_label_evaluation does. Returns the alerts."""
    from hit_platform.adapters.alerts import list_alerts, raise_alert
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.lake.tables import BATCH_DDL, PROB_COLUMNS
    from hit_platform.settings import MonitorThresholds, Settings
    from hit_platform.steps import monitors

    release = np.where(truth.shifted & truth.in_dump, truth.release_day, -1)
    known = np.flatnonzero((release >= 0) & (release <= row["day"] - label_delay))
    ids = np.array([f"song{i:018d}" for i in known])
    lake = Lake(Settings(warehouse=Path(tempfile.mkdtemp(prefix="bench_monitoring_")) / "warehouse"))
    batch = pd.DataFrame(P[known], columns=PROB_COLUMNS).assign(spotify_id=ids)
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, len(ids)),
                           "label": truth.labels[known][:, 1:].ravel()})

    def write(con):
        con.execute(BATCH_DDL)
        con.register("b", batch)
        con.execute(f"INSERT INTO ml.batch_predictions SELECT 'bench:' || spotify_id, spotify_id, 'bench', 'bench', "
                    f"NULL, now(), 'US', 0.5, {', '.join(PROB_COLUMNS)} FROM b")  # no snapshot: the labels are as known
        con.register("l", labels)
        con.execute("CREATE TABLE core.song_labels AS SELECT * FROM l")

    lake.write(write)
    with lake.connection(read_only=True) as con:
        result = monitors.delayed_label_evaluation(con, MonitorThresholds(), "bench", promoted,
                                                   dict(zip(COUNTRIES, test_auc)), test_songs)
    lake.write(lambda con: monitors.record(con, result, None), what="ops.monitor_metrics")
    if result.breached:
        raise_alert(lake, kind="monitor_breach", severity="warning", what=result.summary,
                    where="ops/delayed_label_evaluation", details={"model_version": "bench", **result.metrics})
    return list_alerts(lake)


def concept_shift(args) -> None:
    """Section 4: a change of taste, invisible to the estimate, caught by the delayed-label rule."""
    shift = TasteShift.parse(args.taste_shift)
    horizon = shift.day + args.drill_days
    t = time.perf_counter()

    def shifted_world(strength: float):
        return hidden_truth(config(args.songs, args.seed, world_days=horizon,
                                   taste_shift=TasteShift(shift.region, shift.day, strength, shift.toward)))

    shifted, control = shifted_world(shift.strength), shifted_world(0.0)
    region = np.array([COUNTRIES.index(c) for c in REGIONS[shift.region]])
    toward = f"toward {shift.toward}'s" if shift.toward else "to its reverse"
    print(f"\n4. concept shift: from {START + timedelta(days=shift.day)} (day {shift.day}) the {len(region)} "
          f"countries of {shift.region} judge the songs released from then on by a taste moved {shift.strength:g} "
          f"of the way {toward} (worlds built in {time.perf_counter() - t:.1f} s)")

    # Songs released before the shift have the same truth in every world of this seed: one model
    # serves the shifted world, the control world (same calendar, no change of taste) and the others.
    X = song_features(shifted)
    Y = shifted.labels[:, 1:]
    part = np.random.default_rng(args.seed).permutation(np.flatnonzero(shifted.in_dump & ~shifted.shifted))
    n = len(part)
    train, val, test = part[: int(0.6 * n)], part[int(0.6 * n): int(0.8 * n)], part[int(0.8 * n):]
    t = time.perf_counter()
    best = select_best(train_candidates(X.iloc[train], Y[train], X.iloc[val], Y[val], seed=0,
                                        families=[args.family]))
    calibration = choose_calibration(best.pipeline.predict_proba(X.iloc[val]), Y[val]).calibration

    def predict(rows: np.ndarray) -> np.ndarray:
        return calibration.transform(best.pipeline.predict_proba(X.iloc[rows]))

    m_test = evaluate(Y[test], predict(test))
    test_auc, promoted = np.array(list(m_test["roc_auc"].values())), m_test["mean_roc_auc"]
    est_test = estimated_roc_auc(predict(test))
    print(f"  {best.family} trained on {len(train):,} songs released before the shift "
          f"({time.perf_counter() - t:.1f} s), calibrated on {len(val):,}; on its {len(test):,} test songs: "
          f"mean ROC AUC {promoted:.4f} (promoted with), {shift.region} {test_auc[region].mean():.4f}; "
          f"label-free estimate {est_test.mean():.4f}, {shift.region} {est_test[region].mean():.4f}")
    P = np.zeros((len(X), len(COUNTRIES)))
    P[shifted.shifted] = predict(np.flatnonzero(shifted.shifted))  # the new songs: the same in every world
    days = range(shift.day, horizon)
    rows = served_days(shifted, P, promoted, test_auc, region, days, args.label_delay, len(test))
    controls = served_days(control, P, promoted, test_auc, region, days, args.label_delay, len(test))
    print(f"  each day the songs released that day are served; their labels are known {args.label_delay} day(s) "
          f"later. Over all songs served so far: the estimate (no labels) and, on the labels known, the realized "
          f"AUC and its drop below {promoted:.4f}; the rule fires on a drop > {MAX_AUC_DROP} over >= {MIN_ROWS} songs")
    reg = shift.region[:7]
    print(f"  {'':4}  {'':10}  {'':6}  {'':8}   {'estimated':^16}   {'realized':^33}")
    print(f"  {'day':>4}  {'date':10}  {'served':>6}  {'labelled':>8}   {'mean':>7}  {reg:>7}   {'mean':>7}  "
          f"{'drop':>7}  {reg + ' drop':>12}  {'control drop':>12}")
    for i, (r, c) in enumerate(zip(rows, controls)):
        est = estimated_roc_auc(P[r["served"]]) if len(r["served"]) >= 2 else np.full(len(COUNTRIES), np.nan)
        realized = (f"{r['real']:7.4f}  {r['drop']:+7.4f}  {r['region_drop']:+12.4f}  {c.get('drop', np.nan):+12.4f}"
                    if "drop" in r else f"{'-':>7}  {'-':>7}  {'-':>12}  {'-':>12}")
        print(f"  {i + 1:4d}  {START + timedelta(days=r['day'])}  {len(r['served']):6d}  {r['known']:8d}   "
              f"{np.nanmean(est):7.4f}  {np.nanmean(est[region]):7.4f}   {realized}"
              + ("  <- fires" if first_fire(rows) == i + 1 else ""))
    fired, share = first_fire(rows), len(region) / len(COUNTRIES)
    per_day = len(rows[-1]["served"]) / args.drill_days
    print(f"  the delayed-label rule fires after {fired} day(s) of serving" if fired
          else f"  the delayed-label rule did not fire within {args.drill_days} days")
    print(f"  why: {shift.region} is {len(region)} of the {len(COUNTRIES)} countries, so the 72-country mean moves "
          f"by {share:.0%} of its countries' drop: the rule needs that drop above {MAX_AUC_DROP / share:.2f} "
          f"(here {rows[-1].get('region_drop', np.nan):+.2f}), and {MIN_ROWS} labelled songs "
          f"({per_day:.0f} new songs a day here: {int(np.ceil(MIN_ROWS / per_day)) + args.label_delay} days)")
    by_region = first_fire(rows, "region_fires")
    named = ", ".join(rows[by_region - 1]["region_fires"]) if by_region else ""
    print(f"  the per-region rule (a region's drop, down to its 90% interval's bottom, > {MAX_REGION_DROP}) "
          "fires after " + (f"{by_region} day(s) of serving, naming {named}" if by_region
                            else f"no day within {args.drill_days}") + "; in the control world "
          + (f"after {first_fire(controls, 'region_fires')} day(s) (it should not)"
             if first_fire(controls, "region_fires") else "never"))
    fired = min(d for d in (fired, by_region) if d) if (fired or by_region) else None
    if fired:  # the platform's own monitor, on the lake of the day before and of the day it fires
        for r in (rows[fired - 2], rows[fired - 1]) if fired > 1 else (rows[fired - 1],):
            alerts = monitor_in_a_lake(shifted, P, r, promoted, args.label_delay, test_auc, len(test))
            print(f"  ops/delayed_label_evaluation on day {r['day'] - shift.day + 1}'s lake: "
                  + ("; ".join(f"ops.alerts row: kind={a['kind']} where={a['where']} what={a['what']!r}"
                               for a in alerts) or "no alert"))
    print("  control world (same calendar and songs, no change of taste): "
          + (f"fires after {first_fire(controls)} day(s) (it should not)" if first_fire(controls)
             else f"never fires (drop after {args.drill_days} days {controls[-1].get('drop', np.nan):+.4f})"))
    print(f"  by strength ({shift.region}, {toward.replace('to its ', '')}): after {args.drill_days} days  "
          f"{shift.region} drop / mean drop / fires after / the per-region rule fires after")
    for strength in (0.25, 0.5, 0.75, 1.0):
        r = rows if strength == shift.strength else served_days(shifted_world(strength), P, promoted, test_auc,
                                                                   region, days, args.label_delay, len(test))
        fired, by_region = first_fire(r), first_fire(r, "region_fires")
        print(f"    {strength:4.2f}   {r[-1]['region_drop']:+.3f} / {r[-1]['drop']:+.4f} / "
              + (f"{fired} day(s)" if fired else "never") + " / region rule: "
              + (f"{by_region} day(s) ({', '.join(r[by_region - 1]['region_fires'])})" if by_region else "never"))


if __name__ == "__main__":
    main()
