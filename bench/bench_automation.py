"""From a daily file landing to the retrained champion serving, with the default sensor intervals.

    .venv/bin/python bench/bench_automation.py [--songs 20000] [--history-days 120] [--increments 2]
                                               [--families '[]']

A real `dagster-daemon` (landing sensor every 15 s, automation every 30 s), the
README's default data size and every model family unless --families says otherwise:
1. the history lands: time until the first champion serves;
2. each daily increment lands: time until the served model version changes (or, when the
   promotion gate refuses the candidate, until the chain has finished), and the runs it took.
Target: under 5 minutes from landing to serving.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from hit_platform.defs.ml.evaluation import EVALUATION
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform_tests.support.drill import Drill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=20_000)
    ap.add_argument("--history-days", type=int, default=120)
    ap.add_argument("--increments", type=int, default=2)
    ap.add_argument("--families", default="[]", help='JSON list of model families; [] = all (the default)')
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_automation_"))
    t = time.perf_counter()
    d = Drill(root, songs=args.songs, history_days=args.history_days, increments=args.increments,
              families=args.families)
    print(f"generated {args.songs:,} songs, {args.history_days} days + {args.increments} increments "
          f"in {time.perf_counter() - t:.0f} s; families {args.families}; default sensor intervals")
    d.start_daemon()
    try:
        t0 = d.land(d.staging / "charts_history.csv.gz")
        d.wait(lambda: d.materializations(DEPLOYMENT), 3600, "the first deployment", poll=1)
        print(f"\nhistory landed -> version {d.served_version()} serving: {time.time() - t0:.0f} s")
        print("\n".join("  " + line for line in d.run_report(t0)))
        d.settled(40)
        figures = []
        for path in d.increments:
            before, n_eval = d.served_version(), len(d.materializations(EVALUATION))
            t1 = d.land(path)

            def done():
                if d.served_version() not in (None, before):
                    return "promoted"
                if len(d.materializations(EVALUATION)) > n_eval and d.idle():
                    return "refused"
                return None

            outcome = d.wait(done, 3600, f"the retrain after {path.name}", poll=0.5)
            took = time.time() - t1
            figures.append(took)
            print(f"\n{path.name} landed -> {outcome}; serving {before} -> {d.served_version()}: {took:.0f} s")
            print("\n".join("  " + line for line in d.run_report(t1)))
            d.settled(40)
        print(f"\nlanding -> retrained champion serving: {', '.join(f'{f:.0f} s' for f in figures)} "
              f"(target < 300 s)")
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
