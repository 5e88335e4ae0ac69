"""The platform's model search on every world of the generator's zoo, against each world's oracle (issue 30).

    .venv/bin/python bench/bench_zoo.py [--songs 6000 20000] [--seed 7] [--worlds additive sparse ...]
                                        [--history-days 120] [--keep DIR [--reuse]]

For each world and size, in a fresh process and an empty warehouse: `generate` writes the world's whole
history (clean, all 72 countries, ending yesterday), the data half is built through Dagster as `hit-platform
build` builds it (ingest -> gates -> songs, labels, features, splits), and the candidates are trained and
chosen as ml/candidate_models does (model_quality.train_like_the_platform: HIT_TRAIN_* families, seed and
workers). Printed per world, on the lake's test songs:
  - the champion's family; its mean per-country ROC AUC / the oracle's, log loss / the oracle's, and the
    worst country's AUC / the oracle's (targets at 20,000 songs: >= 0.98 and <= 1.02; at 6,000: >= 0.97,
    <= 1.03; the demo world >= 0.995);
  - honesty: the std over test songs of the champion's probabilities and of the truth's (mean over
    countries), and its bias (mean predicted - true);
  - per family, the AUC it expects from its own probabilities minus the AUC its scores get on average
    under the truth (negative: underconfident, it sells itself short);
  - the search's seconds (wall clock; other processes share the cores) and the process's peak RSS (the
    data half's build included; grid points fitted in helper processes are not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

FAMILY_ORDER = ("prior", "linear", "trees", "mlp", "blend")


def one_world(world: str, songs: int, seed: int, history_days: int, keep: str | None, reuse: bool = False) -> dict:
    import dagster as dg

    from hit_platform.cli.build import build
    from hit_platform.definitions import build_definitions
    from hit_platform.defs.ml.features import SPLITS_KEY
    from hit_platform.defs.resources import LakeResource
    from hit_platform.generator import GeneratorConfig, generate
    from hit_platform.settings import Settings
    from model_quality import against_oracle, load_splits, oracle_matrix, peak_rss_mb, train_like_the_platform

    with tempfile.TemporaryDirectory(prefix="bench_zoo_") as tmp:
        settings = Settings(warehouse=Path(keep or tmp) / f"{world}-{songs}" / "warehouse")
        reused = reuse and settings.warehouse.exists()  # a kept lake of the same world: train on it as it is
        if keep and settings.warehouse.exists() and not reuse:
            raise SystemExit(f"{settings.warehouse} exists: --keep needs a folder without this world's warehouse "
                             "(or --reuse to train on it again)")
        t = time.perf_counter()
        if not reused:
            generate(GeneratorConfig(out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=seed,
                                     songs=songs, history_days=history_days, increments=0, world_name=world,
                                     start_date=date.today() - timedelta(days=history_days)))
        generate_s = time.perf_counter() - t
        t = time.perf_counter()
        if not reused:
            built = build(build_definitions(LakeResource(warehouse=str(settings.warehouse))),
                          dg.DagsterInstance.ephemeral(), upto=[SPLITS_KEY], log_level="ERROR")
            if not built.success:
                raise SystemExit(f"{world}: the data half failed: "
                                 f"{[c.description for c in built.checks if not c.passed]}")
        build_s = time.perf_counter() - t
        train, val, test = load_splits(settings)
        search = train_like_the_platform(train, val, settings)
        P_oracle, _ = oracle_matrix(settings.oracle, test.spotify_ids)
        out = against_oracle(test, search, P_oracle)
    return {"world": world, "songs": songs, "train": len(train), "test": len(test), "generate_s": generate_s,
            "build_s": build_s, "search_s": search.seconds, "peak_rss_mb": peak_rss_mb(), **out}


def row(r: dict) -> str:
    fams = "  ".join(f"{f} {r['families'][f]['expected_auc'] - r['families'][f]['true_auc']:+.3f}"
                     for f in FAMILY_ORDER if f in r["families"])
    return (f"{r['world']:14s} {r['songs']:>6,} {r['family']:>8s} {r['auc_ratio']:>9.4f} {r['log_loss_ratio']:>8.4f} "
            f"{r['worst_auc_ratio']:>8.4f} {r['worst_country']:>3s} {r['spread']:>7.4f} {r['true_spread']:>7.4f} "
            f"{r['bias']:>+8.4f} {r['search_s']:>7.0f} {r.get('peak_rss_mb', float('nan')):>7.0f}   {fams}")


def main() -> None:
    from hit_platform.generator import WORLDS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, nargs="+", default=[6000, 20000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    ap.add_argument("--history-days", type=int, default=120,
                    help="days of charts (the whole world lands, so every label is in the lake)")
    ap.add_argument("--json", help="also write every row to this file (JSON lines)")
    ap.add_argument("--keep", metavar="DIR", help="keep each warehouse in DIR/WORLD-SONGS/warehouse (default: "
                                                  "a temporary folder, removed)")
    ap.add_argument("--reuse", action="store_true", help="with --keep: a world's warehouse already in DIR is "
                    "trained on again as it is (no generate, no build): a search's change measured on the same lake")
    ap.add_argument("--child", nargs=2, metavar=("WORLD", "SONGS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_world(args.child[0], int(args.child[1]), args.seed, args.history_days, args.keep,
                                   args.reuse)))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; seed {args.seed}, "
          f"{args.history_days} days; expected - true AUC per family: what its own probabilities promise minus "
          "what its scores get under the truth")
    print(f"{'world':14s} {'songs':>6s} {'champion':>8s} {'AUC/orc':>9s} {'LL/orc':>8s} {'worst':>8s} {'':>3s} "
          f"{'spread':>7s} {'truth':>7s} {'bias':>8s} {'search':>7s} {'peak MB':>7s}   expected - true AUC")
    for songs in args.songs:
        for world in args.worlds:
            cmd = [sys.executable, __file__, "--child", world, str(songs), "--seed", str(args.seed),
                   "--history-days", str(args.history_days), *(["--keep", args.keep] if args.keep else []),
                   *(["--reuse"] if args.reuse else [])]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{world:14s} {songs:>6,} failed:\n{out.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(row(r), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
