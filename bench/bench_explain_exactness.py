"""Issue 31's exactness figures: additivity on 10,000 songs and equality with brute force on 50, per family.

    OPENBLAS_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/bench_explain_exactness.py \
        [--songs 10000] [--brute-songs 50] [--tracking-uri URI] [--families NAME ...] [--skip-additivity]

Trains each family the platform's way on the demo world (bench_explain.train_models: prior, linear,
trees, mlp32, mlp64, the blend of trees and mlp32 under every calibration the platform can choose),
each explained against its FULL declared background (declare_background: FAMILY_BACKGROUND[family]
training songs drawn by seed 0; the countries whose calibration is not affine in log-odds take the
first ENUMERATED_BACKGROUND of them), and, with --tracking-uri, that store's registered champion
against its own logged background (the demo champion: a `hit-platform demo` run's store). Per model:
  additivity  the largest |base + sum - served value| over --songs songs x 72 countries, the served
              value being the pipeline's own predict_proba (its log-odds on the log-odds scale),
              explained in chunks of --chunk songs;
  exactness   the largest |library - brute force| over base and every attribution on --brute-songs
              songs x 72 countries, the brute force (hit_platform_tests/support/brute_force.py, apart
              from the library) scoring all 2^14 coalitions x background hybrid rows by predict_proba
              in chunks of 2^17 rows, with each country's own background size.
One line per model and figure, with the songs, countries and wall seconds. Figures and method: bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # hit_platform_tests, for the brute force

from bench_explain import demo_songs, train_models  # noqa: E402

from hit_platform.adapters.model_explanations import declare_background  # noqa: E402
from hit_platform.domain.explain import LOG_ODDS, Background, Explainer  # noqa: E402
from hit_platform.domain.models.calibration import METHODS  # noqa: E402
from hit_platform.domain.models.estimators import PROBA_MIN  # noqa: E402
from hit_platform_tests.support.brute_force import brute_force, served_on_scale  # noqa: E402


def additivity(explainer: Explainer, model, X: pd.DataFrame, chunk: int, progress=None) -> dict:
    """The largest |base + sum - served value| over songs X, the served value from model.predict_proba:
    {"gap": over the song-countries where the served probability is inside the platform's clip
    [PROBA_MIN, 1 - PROBA_MIN], "clipped": how many are at it, "clipped_gap": the largest there,
    "own_gap": the largest |base + sum - the library's value| (the model's, before the clip), everywhere}."""
    out = {"gap": 0.0, "clipped": 0, "clipped_gap": 0.0, "own_gap": 0.0}
    for lo in range(0, len(X), chunk):
        part = X.iloc[lo:lo + chunk]
        a = explainer.explain(part)
        P = model.predict_proba(part)
        served = served_on_scale(model, part, [s == LOG_ODDS for s in a.scales])
        gap = np.abs(a.base + a.phi.sum(axis=2) - served)
        clipped = (P <= PROBA_MIN) | (P >= 1 - PROBA_MIN)
        out["gap"] = max(out["gap"], float(gap[~clipped].max(initial=0.0)))
        out["clipped"] += int(clipped.sum())
        out["clipped_gap"] = max(out["clipped_gap"], float(gap[clipped].max(initial=0.0)))
        out["own_gap"] = max(out["own_gap"], a.max_gap)
        if progress:
            progress(lo + len(part), out["gap"])
    return out


def exactness(explainer: Explainer, model, X: np.ndarray, progress=None) -> tuple[float, float, list[int]]:
    """(largest |base - brute force's|, largest |phi - brute force's|, background sizes) over songs X."""
    base_gap, phi_gap, sizes = 0.0, 0.0, set()
    for i, x in enumerate(X):
        if progress:
            progress(i, max(base_gap, phi_gap))
        a = explainer.explain(x[None])
        Z = explainer.background.songs[:int(a.background_size.max())]
        base, phi = brute_force(model, x, Z, [s == LOG_ODDS for s in a.scales], sizes=a.background_size)
        base_gap = max(base_gap, float(np.abs(a.base[0] - base).max()))
        phi_gap = max(phi_gap, float(np.abs(a.phi[0] - phi).max()))
        sizes.update(int(s) for s in a.background_size)
    return base_gap, phi_gap, sorted(sizes)


def demo_champion(tracking_uri: str):
    """(name, pipeline, declared background) of the champion registered in the MLflow store at tracking_uri."""
    from hit_platform.adapters.model_explanations import load_background
    from hit_platform.adapters.tracking import Tracker
    from hit_platform.settings import Settings

    settings = Settings(warehouse=Path(tempfile.mkdtemp(prefix="bench_exactness_")) / "warehouse",
                        mlflow={"tracking_uri": tracking_uri})
    tracker = Tracker(settings)
    info = tracker.champion_info()
    if info is None:
        raise SystemExit(f"--tracking-uri {tracking_uri}: no champion registered there")
    name = f"champion v{info.version} ({info.tags.get('family')})"
    return name, tracker.load_version(info.version), load_background(tracker, info.version)


def report(name: str, figure: str, value: str, songs: int, sizes, seconds: float, note: str = "") -> None:
    print(f"  {name:26s} {figure:11s} {value:32s} {songs:6d} songs x 72 countries  background "
          f"{'/'.join(map(str, sizes)):6s} {seconds:8.1f} s  {note}".rstrip(), flush=True)


def run(models: dict[str, tuple[object, Background]], X: pd.DataFrame, brute_songs: int, chunk: int,
        skip_additivity: bool = False, verbose: bool = False, brute_from: int = 0) -> None:
    """Both figures for each {name: (pipeline, declared background)}, one line each (and, verbose, a
    line per chunk or brute-forced song with the figure so far)."""
    for name, (model, background) in models.items():
        explainer = Explainer(model, background)
        sizes = sorted({explainer.size, *([] if explainer.maps.affine.all() else [explainer.enumerated_size])})
        t = time.perf_counter()

        def progress(done: int, figure: float, what: str) -> None:
            print(f"    {name} {what}: {done} songs, {figure:.2e} so far, {time.perf_counter() - t:.0f} s", flush=True)
        if not skip_additivity:
            gap = additivity(explainer, model, X, chunk, verbose and (lambda n, g: progress(n, g, "additivity")))
            clip = f"; {gap['clipped']} song-countries at the served clip, gap there {gap['clipped_gap']:.2e}" \
                if gap["clipped"] else ""
            report(name, "additivity", f"max |base+sum-served| {gap['gap']:.2e}", len(X), sizes,
                   time.perf_counter() - t, f"(to the model's own value {gap['own_gap']:.2e}{clip})")
        if brute_songs <= brute_from:
            continue
        t = time.perf_counter()
        base_gap, phi_gap, sizes = exactness(explainer, model, X.iloc[brute_from:brute_songs].to_numpy(),
                                             verbose and (lambda n, g: progress(n, g, "brute force")))
        report(name, "exactness", f"max |diff| {max(base_gap, phi_gap):.2e} (base {base_gap:.1e})",
               brute_songs - brute_from, sizes, time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=10_000, help="songs for additivity")
    parser.add_argument("--brute-songs", type=int, default=50, help="songs for the brute force")
    parser.add_argument("--train-songs", type=int, default=6000, help="demo-world songs the families train on")
    parser.add_argument("--chunk", type=int, default=500, help="songs explained at once")
    parser.add_argument("--tracking-uri", help="also this MLflow store's registered champion (the demo's)")
    parser.add_argument("--families", nargs="*", help="only these models (names as printed; 'champion')")
    parser.add_argument("--skip-additivity", action="store_true")
    parser.add_argument("--brute-from", type=int, default=0, help="brute force songs [FROM, --brute-songs) only")
    parser.add_argument("--song-range", type=int, nargs=2, metavar=("FROM", "TO"),
                        help="additivity on songs [FROM, TO) of the --songs only (runs side by side)")
    parser.add_argument("--verbose", action="store_true", help="a line per chunk and per brute-forced song")
    parser.add_argument("--models-cache", type=Path, help="the trained models: loaded from this file if it exists, "
                                                          "else trained and saved there (for runs side by side)")
    args = parser.parse_args()

    if args.models_cache and args.models_cache.exists():
        trained, train_X = joblib.load(args.models_cache)
    else:
        X, Y = demo_songs(args.train_songs)
        trained, train_X = train_models(X, Y, calibrations=[m for m in METHODS if m != "none"])
        if args.models_cache:
            joblib.dump((trained, train_X), args.models_cache)
    models = {name: (model, declare_background(train_X, name.split("+")[0].rstrip("0123456789"), 0))
              for name, model in trained.items()}
    if args.tracking_uri:
        name, model, background = demo_champion(args.tracking_uri)
        models[name] = (model, background)
    if args.families:
        models = {n: m for n, m in models.items() if n in args.families or ("champion" in args.families
                                                                             and n.startswith("champion"))}
    songs = demo_songs(max(args.songs, 50), seed=1)[0].iloc[:args.songs]  # songs never seen (another world seed)
    if args.song_range:
        songs = songs.iloc[slice(*args.song_range)]
    print(f"explaining {len(songs)} songs (additivity) and the first {args.brute_songs} (brute force, 2^14 "
          f"coalitions) for {len(models)} models: {', '.join(models)}", flush=True)
    run(models, songs, args.brute_songs, args.chunk, args.skip_additivity, args.verbose, args.brute_from)


if __name__ == "__main__":
    main()
