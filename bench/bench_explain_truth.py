"""The truth drill (issue 31, part 5): the champion's attributions against the generator's oracle's, per country.

    .venv/bin/python bench/bench_explain_truth.py [--worlds additive sparse] [--songs 20000] [--seed 42]
                                                  [--explained 100] [--history-days 120] [--keep DIR]

For each world, in a fresh process and an empty warehouse (as bench_zoo.py): `generate` writes the world's whole
history (clean, all 72 countries; `additive` with seed 42 and 20,000 songs is the demo's default world), the
data half is built through Dagster as `hit-platform build` builds it, and the champion is trained and chosen as
ml/candidate_models does (model_quality.train_like_the_platform). Then, on the first --explained test songs:
  - the champion's exact attributions (`Explainer`, background: 64 training songs, seed 0; each country's
    scale and background size are the champion's own);
  - the oracle's (`oracle_from_manifest`, a black box of the 14 features) by `function_attributions` with the
    same value function, background songs and scale per country (log-odds of the oracle's probability where
    the champion's scale is log-odds), enumerating the coalitions of the features the oracle reads;
  - `compare`: per country (a) Spearman's rho of mean |attribution| per feature (all 14, and over the features
    the oracle reads), (b) the top feature's sign agreement, (c) the ignored features' share of the champion's
    total |attribution|. Printed: median and worst country of each. Targets: rho >= 0.9 (median), sign
    agreement >= 95%, ignored share < 2%.
With --keep DIR the warehouse and the champion stay in DIR/WORLD/ and a rerun reuses them (only the
attributions are recomputed). --diagnose also compares, on the same songs, the champion against a 64-song
background and each member of a blend alone (its own background): is a miss the background's, a family's?
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

TARGETS = {"rank_correlation": (">=", 0.9), "sign_agreement": (">=", 0.95), "ignored_share": ("<", 0.02)}


def champion_of(world: str, args, folder: Path):
    """(champion pipeline, train X, test X, oracle, figures): trained here, or reused from folder."""
    import dagster as dg

    from hit_platform.cli.build import build
    from hit_platform.definitions import build_definitions
    from hit_platform.defs.ml.features import SPLITS_KEY
    from hit_platform.defs.resources import LakeResource
    from hit_platform.generator import GeneratorConfig, generate, oracle_from_manifest
    from hit_platform.settings import Settings
    from model_quality import load_splits, train_like_the_platform

    settings = Settings(warehouse=folder / "warehouse")
    cached = folder / "champion.pkl"
    if cached.exists():
        champion, train_X, test_X, figures = pickle.loads(cached.read_bytes())
    else:
        generate(GeneratorConfig(out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=args.seed,
                                 songs=args.songs, history_days=args.history_days, increments=0, world_name=world,
                                 start_date=date.today() - timedelta(days=args.history_days)))
        built = build(build_definitions(LakeResource(warehouse=str(settings.warehouse))),
                      dg.DagsterInstance.ephemeral(), upto=[SPLITS_KEY], log_level="ERROR")
        if not built.success:
            raise SystemExit(f"{world}: the data half failed: {[c.description for c in built.checks if not c.passed]}")
        train, _, test = load_splits(settings)
        search = train_like_the_platform(train, _, settings)
        champion, train_X, test_X = search.best.pipeline, train.X, test.X
        figures = {"family": search.best.family, "search_s": search.seconds,
                   "calibration": getattr(getattr(champion[-1], "calibration", None), "method", "none")}
        cached.write_bytes(pickle.dumps((champion, train_X, test_X, figures)))
    return champion, train_X, test_X, oracle_from_manifest(settings.generator_dir / "manifest.json"), figures


def one_world(world: str, args) -> dict:
    import numpy as np

    from hit_platform.domain.explain import Explainer, background_sample
    from hit_platform.domain.explain.truth import compare, function_attributions

    with tempfile.TemporaryDirectory(prefix="bench_truth_") as tmp:
        folder = Path(args.keep or tmp) / world
        folder.mkdir(parents=True, exist_ok=True)
        champion, train_X, test_X, oracle, figures = champion_of(world, args, folder)
    background = background_sample(train_X, 64, seed=0)
    songs = test_X.dropna().iloc[:args.explained]
    t = time.perf_counter()
    explainer = Explainer(champion, background)
    a = explainer.explain(songs)
    model_s = time.perf_counter() - t
    reads = [f for f in oracle.features if f not in oracle.ignored_features]
    t = time.perf_counter()
    truth = function_attributions(oracle, songs, background, a.scales, a.background_size, players=reads,
                                  family="oracle")
    truth_s = time.perf_counter() - t
    c = compare(a, truth, oracle.ignored_features)
    diagnosis = {}
    if args.diagnose:
        blend = champion[-1].model[-1] if hasattr(champion[-1], "model") else champion[-1]
        models = [("champion, background 64", champion, 64),
                  *[(f"member {name} alone (weight {w:.2f})", member, None)
                    for (name, member), w in zip(getattr(blend, "members_", []), getattr(blend, "weights", []))]]
        for name, model, size in models:
            m = Explainer(model, background, size).explain(songs)
            t_m = function_attributions(oracle, songs, background, m.scales, m.background_size, players=reads)
            diagnosis[name] = {"background": sorted(set(m.background_size.tolist())),
                               **compare(m, t_m, oracle.ignored_features).summary()}
    mean_abs_model, mean_abs_truth = np.abs(a.phi).mean(axis=(0, 1)), np.abs(truth.phi).mean(axis=(0, 1))
    return {"world": world, **figures, "explained": len(songs), "background": sorted(set(a.background_size.tolist())),
            "scales": sorted(set(a.scales)), "diagnosis": diagnosis, "model_s": model_s, "truth_s": truth_s, "ignored": list(c.ignored),
            "truth_gap": truth.max_gap, "model_gap": a.max_gap, **c.summary(),
            "mean_abs": {f: [float(m), float(t)] for f, m, t in zip(a.features, mean_abs_model, mean_abs_truth)}}


def report(r: dict) -> None:
    print(f"\n{r['world']}: champion {r['family']} (calibration {r['calibration']}), {r['explained']} test songs, "
          f"background {r['background']}, scale {r['scales']}; the oracle ignores {r['ignored'] or 'nothing'}")
    print(f"  attributions: champion {r['model_s']:.1f} s, oracle {r['truth_s']:.1f} s (enumerated); "
          f"largest |base + sum - value| {r['model_gap']:.1e} / {r['truth_gap']:.1e}")
    for name, label in (("rank_correlation", "(a) rank correlation, 14 features"),
                        ("rank_correlation_read", "    rank correlation, features the oracle reads"),
                        ("sign_agreement", "(b) top feature's sign agreement"),
                        ("ignored_share", "(c) ignored features' share of |attribution|")):
        if name not in r:
            continue
        s = r[name]
        target = TARGETS.get(name)
        verdict = ""
        if target:
            op, bound = target
            ok = s["median"] >= bound if op == ">=" else s["median"] < bound
            verdict = f"   target median {op} {bound}: {'met' if ok else 'NOT met'}"
        print(f"  {label:48s} median {s['median']:.4f}  worst {s['worst']:.4f} ({s['worst_country']}){verdict}")
    for name, d in r.get("diagnosis", {}).items():
        print(f"  {name} (background {d['background']}): " + "  ".join(
            f"{k.replace('_', ' ')} {v['median']:.4f} (worst {v['worst']:.4f})" for k, v in d.items() if k != "background"))
    print("  mean |attribution| per feature over songs and countries, champion / oracle:")
    print("   " + "  ".join(f"{f} {m:.3f}/{t:.3f}" for f, (m, t) in r["mean_abs"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", nargs="+", default=["additive", "sparse"])
    ap.add_argument("--songs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--history-days", type=int, default=120)
    ap.add_argument("--explained", type=int, default=100, help="test songs explained (the oracle costs about "
                                                                "2^12 x background rows a song in the demo world)")
    ap.add_argument("--keep", metavar="DIR", help="keep each world's warehouse and champion in DIR/WORLD (reused)")
    ap.add_argument("--diagnose", action="store_true", help="also the champion at background 64 and each blend "
                                                                "member alone")
    ap.add_argument("--json", help="also append every world's figures to this file (JSON lines)")
    ap.add_argument("--child", metavar="WORLD", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_world(args.child, args)))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; seed {args.seed}, "
          f"{args.songs:,} songs, {args.history_days} days")
    for world in args.worlds:
        cmd = [sys.executable, __file__, "--child", world, "--songs", str(args.songs), "--seed", str(args.seed),
               "--history-days", str(args.history_days), "--explained", str(args.explained),
               *(["--diagnose"] if args.diagnose else []),
               *(["--keep", args.keep] if args.keep else [])]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{world}: failed:\n{out.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        report(r)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
