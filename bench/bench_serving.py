"""Serving throughput: the real Ray Serve process vs a plain uvicorn + FastAPI app, same model, same machine.

    .venv/bin/python bench/bench_serving.py [--duration 10] [--rounds 3] [--family linear] [--quick]

1. Trains a champion (a `hit_platform.domain.models` family on synthetic songs; `--family`), registers and
   promotes it in a temp MLflow store (or serves the champion of `--tracking-uri`).
2. Starts the real serving process (`hit_platform.serving.start`: Ray Serve, HAProxy ingress,
   inference log into a temp lake, `hit-platform serve` defaults) and the plain app (uvicorn + FastAPI,
   `make_plain_app` below: same pydantic Song model and prediction code, no Ray, no inference log) twice:
   one worker, and one worker per core (`uvicorn --workers N`, the fair anchor: it uses every core too).
3. wrk (2 threads, 16 connections, --duration s, POST body via a Lua script) against /predict of each,
   alternating plain(1), plain(N), serve for --rounds; prints requests/s, p50, p99 and the ratios
   serve/plain(N) (targets: requests/s >= 1.0, p99 <= 1.0) and serve/plain(1) (the older anchor).
4. One client (wrk -t1 -c1) against the serving process with /predict batching on and off
   (HIT_SERVE_BATCH_MAX_SIZE=1, a second serving process in its own warehouse), alternating:
   p50/p99 of each and the difference (target: within 1 ms). Skipped while ServeConfig has no
   batch_max_size.
5. /predict/batch with 10,000 songs against the serving process, as JSON and as Arrow streams, vs
   in-process predict_proba of the same 10,000 songs (target: within 2x).
6. Kill drills (unless --no-kill-drills): wrk recording every answer's request id while one replica
   gets kill -9, then while the serving process gets kill -9 and `hit-platform serve` starts it again;
   after stop, each answer is looked up in ops.inference_log (target for the replica kill: 0 failed
   requests, 0 answered but not logged; for the process kill: 0 answered but not logged).
7. With the default proxy too (unless --no-default-proxy): Ray Serve's Python proxy, for reference.
`--quick` (about 3 minutes): 5 s runs, one round, 2,000-song batches, no kill drills, no default proxy.
Needs `wrk` (apt-get install -y wrk).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from fastapi import FastAPI, Query, Request  # module level: FastAPI resolves the route annotations here
from fastapi.responses import Response

REPO = Path(__file__).resolve().parent.parent

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving import ServeConfig, process
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings
from hit_platform_tests.support.load import Wrk, WrkResult, replica_pids, wrk

SONG = {"danceability": 0.71, "energy": 0.62, "key": 5, "loudness": -6.5, "mode": 1, "speechiness": 0.05,
        "acousticness": 0.21, "instrumentalness": 0.0, "liveness": 0.11, "valence": 0.52, "tempo": 121.0,
        "time_signature": 4, "duration_ms": 201_000, "is_explicit": False, "spotify_id": "bench0000000000000000"}


# -- the champion ----------------------------------------------------------------------------------------

def synthetic_songs(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Valid random songs and learnable labels (each country a random logistic taste)."""
    X = pd.DataFrame(probe_rows(n, seed=seed), columns=list(FEATURE_COLUMNS))
    rng = np.random.default_rng(seed + 1)
    Z = (X - X.mean()) / X.std().replace(0, 1)
    logits = Z.to_numpy() @ rng.normal(0, 0.8, (len(FEATURE_COLUMNS), len(COUNTRIES))) - 1.5
    Y = rng.random(logits.shape) < 1 / (1 + np.exp(-logits))
    return X, Y


def promote_champion(settings: Settings, family: str) -> tuple[str, object]:
    from hit_platform.domain.models import select_best, train_candidates
    from hit_platform.adapters.tracking import Tracker, code_version

    X, Y = synthetic_songs(4000, seed=0)
    Xv, Yv = synthetic_songs(1000, seed=1)
    t = time.perf_counter()
    best = select_best(train_candidates(X, Y, Xv, Yv, seed=0, families=[family]))
    print(f"champion: family {family!r} trained on 4,000 synthetic songs in {time.perf_counter() - t:.1f} s")
    tracker = Tracker(settings)
    tags = {"lake_snapshot_id": "0", "dagster_run_id": "bench", "family": family, **code_version()}
    run_id, uri = tracker.log_candidate(run_name=f"bench-{family}", params=best.params, metrics={},
                                        pipeline=best.pipeline, input_example=Xv.head(3), tags=tags,
                                        figures={}, tables={})
    version = tracker.register(uri, run_id, tags={**tags, "mlflow_run_id": run_id})
    tracker.promote(version.version)
    return str(version.version), best.pipeline


# -- the plain app (`python -m uvicorn bench.bench_serving:make_plain_app --factory --workers N`) ---------

def make_plain_app() -> FastAPI:
    """uvicorn + FastAPI, the champion in memory (each worker loads it from the MLflow store its HIT_*
    environment names): the baseline Ray Serve is compared with."""
    import uuid

    from hit_platform.adapters.tracking import Tracker
    from hit_platform.domain.probabilities import answered
    from hit_platform.serving.encoding import prediction_bytes
    from hit_platform.serving.predictor import features_of, load_predictor, top_k
    from hit_platform.serving.schemas import SONG_ADAPTER

    model = load_predictor(Tracker(Settings()))
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request, k: int = Query(5, ge=1, le=72, alias="top_k")):
        song = SONG_ADAPTER.validate_json(await request.body())
        rid = str(uuid.uuid4())
        P = answered(model.predict(features_of([song])))
        return Response(prediction_bytes(P, top_k(P, k)[0], rid, model.version), media_type="application/json")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model_version": model.version, "pid": os.getpid()}

    return app


def start_plain_app(settings: Settings, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = process.child_env(settings, ServeConfig())
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.bench_serving:make_plain_app", "--factory",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--log-level", "warning", "--no-access-log"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    ready = set()  # workers share the socket: up once each has answered (a worker listens once its model loaded)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            ready.add(httpx.get(url + "/healthz", timeout=1).json()["pid"])
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit(f"the plain app ({workers} workers) exited with {proc.returncode}")
            time.sleep(0.2)
            continue
        if len(ready) == workers:
            return proc, url
        time.sleep(0.02)
    raise SystemExit("the plain app did not start")


def stop_plain_app(proc: subprocess.Popen) -> None:
    proc.terminate()  # uvicorn's supervisor stops its workers on SIGTERM
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- wrk (hit_platform_tests/support/load.py) ------------------------------------------------------------

def fmt(r: WrkResult) -> str:
    return r.line()


def median_p99(results: list[WrkResult]) -> float:
    return statistics.median(r.p99 for r in results)


def best_of(results: list[WrkResult]) -> WrkResult:
    return max(results, key=lambda r: r.rps)


def ratios(serve: list[WrkResult], plain: list[WrkResult], name: str, rps_target: float) -> None:
    """Requests/s and p99 of serve over plain: best vs best, and the median of per-round ratios."""
    s, p = best_of(serve), best_of(plain)
    print(f"  serve/{name:9} requests/s : {s.rps / p.rps:.2f} best vs best, "
          f"{statistics.median(b.rps / a.rps for a, b in zip(plain, serve)):.2f} median of rounds   "
          f"(target >= {rps_target:g})")
    print(f"  serve/{name:9} p99        : {s.p99 / p.p99:.2f} best vs best, "
          f"{statistics.median(b.p99 / a.p99 for a, b in zip(plain, serve)):.2f} median of rounds, "
          f"{median_p99(serve) / median_p99(plain):.2f} median p99 vs median p99   (target <= 1.0)")


def batching_of(config: ServeConfig) -> str:
    if "batch_max_size" not in ServeConfig.model_fields:
        return "no /predict batching (ServeConfig has no batch_max_size yet)"
    if config.batch_max_size <= 1:
        return "/predict unbatched (batch_max_size 1)"
    return f"/predict batched: batch_max_size {config.batch_max_size}, batch_wait_ms {config.batch_wait_ms:g}"


def one_client(settings: Settings, config: ServeConfig, endpoint: str, args) -> None:
    """wrk -t1 -c1 against the serving process (batched, as configured) and against a second one in its
    own warehouse with batch_max_size=1, alternating rounds: what batching costs a lone client."""
    print(f"\n/predict, one client (wrk -t1 -c1 -d{args.duration}s), median of {args.rounds} alternating rounds")
    if "batch_max_size" not in ServeConfig.model_fields:
        runs = [wrk(endpoint + "/predict", SONG, args.duration, threads=1, connections=1) for _ in range(args.rounds)]
        print(f"  Ray Serve ({batching_of(config)}): p50 {statistics.median(r.p50 for r in runs):.2f} ms   "
              f"p99 {median_p99(runs):.2f} ms   {statistics.median(r.rps for r in runs):.0f} req/s")
        return
    other = Settings(warehouse=settings.warehouse.parent / "warehouse_unbatched",
                     mlflow={"tracking_uri": settings.tracking_uri})
    unbatched_config = config.model_copy(update={"port": free_port(), "batch_max_size": 1})
    unbatched = process.start(other, unbatched_config)
    try:
        wrk(unbatched + "/predict", SONG, 3, threads=1, connections=1)  # warm-up
        batched_runs, unbatched_runs = [], []
        for _ in range(args.rounds):
            batched_runs.append(wrk(endpoint + "/predict", SONG, args.duration, threads=1, connections=1))
            unbatched_runs.append(wrk(unbatched + "/predict", SONG, args.duration, threads=1, connections=1))
    finally:
        process.stop(other, unbatched_config)
    rows = []
    for label, cfg, runs in (("batched", config, batched_runs), ("unbatched", unbatched_config, unbatched_runs)):
        p50, p99 = statistics.median(r.p50 for r in runs), median_p99(runs)
        rows.append((p50, p99))
        print(f"  {label:9} ({batching_of(cfg)}): p50 {p50:.2f} ms   p99 {p99:.2f} ms   "
              f"{statistics.median(r.rps for r in runs):.0f} req/s")
    (b50, b99), (u50, u99) = rows
    print(f"  batched - unbatched: p50 {b50 - u50:+.2f} ms   p99 {b99 - u99:+.2f} ms   (target: within 1 ms)")


# -- batch helpers ----------------------------------------------------------------------------------------

def arrow_stream(songs: list[dict]) -> bytes:
    import pyarrow as pa
    table = pa.table({c: [s[c] for s in songs] for c in FEATURE_COLUMNS})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def post_timed(endpoint: str, path: str, body: bytes, headers: dict, n: int, songs: int) -> tuple[list[float], int]:
    """Seconds per POST on one kept-alive connection (stdlib http.client: reads each answer in one call,
    so the figure is the server's, not a Python client's chunk loop); checks every answer."""
    import http.client
    from urllib.parse import urlsplit

    import pyarrow as pa
    u = urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    times, size = [], 0
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            times.append(time.perf_counter() - t)
            assert r.status == 200, data[:300]
            size = len(data)
        if "arrow" in r.getheader("content-type", ""):
            assert pa.ipc.open_stream(data).read_all().num_rows == songs
        else:
            assert len(json.loads(data)["predictions"]) == songs
    finally:
        conn.close()
    return times, size


# -- kill drills ------------------------------------------------------------------------------------------

def kill_drills(settings: Settings, config: ServeConfig, endpoint: str, duration: int) -> list[tuple[str, WrkResult]]:
    """kill -9 of one replica, then of the serving process followed by `hit-platform serve`, each a third
    of the way into a wrk run that records every answer's request id."""
    out = []
    pid = process.status(settings, config).pid
    load = Wrk(endpoint + "/predict", SONG, duration, record=True)
    time.sleep(duration / 3)
    os.kill(replica_pids(pid)[0], signal.SIGKILL)
    out.append(("a replica kill -9", load.result()))
    time.sleep(5)  # Serve restarts the replica
    load = Wrk(endpoint + "/predict", SONG, duration, record=True)
    time.sleep(duration / 3)
    os.kill(pid, signal.SIGKILL)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hit_platform.cli", "serve"], env=process.child_env(settings, config),
                   cwd=REPO, check=True, capture_output=True)
    restart = time.perf_counter() - t
    out.append((f"serving process kill -9, serve again ({restart:.0f} s)", load.result()))
    return out


# -- main -----------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds per app")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="uvicorn workers of the fair plain app (default: one per core)")
    ap.add_argument("--family", default="linear", help="hit_platform.domain.models family of the champion")
    ap.add_argument("--tracking-uri", help="serve the champion of this MLflow store instead of training one")
    ap.add_argument("--batch", type=int, default=10_000, help="songs in the /predict/batch request")
    ap.add_argument("--flush-seconds", type=float, default=ServeConfig().log_flush_seconds,
                    help="inference log flush interval of the serving process (HIT_SERVE_LOG_FLUSH_SECONDS)")
    ap.add_argument("--no-default-proxy", action="store_true", help="skip the Ray Serve default-proxy run")
    ap.add_argument("--no-kill-drills", action="store_true", help="skip killing a replica, then the serving process")
    ap.add_argument("--quick", action="store_true", help="5 s runs, one round, 2,000-song batches, no kill drills, "
                                                         "no default proxy (about 3 minutes)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds, args.batch = 5, 1, min(args.batch, 2_000)
        args.no_kill_drills = args.no_default_proxy = True
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    settings = Settings(warehouse=tmp / "warehouse", mlflow={"tracking_uri": args.tracking_uri})
    if args.tracking_uri:
        from hit_platform.adapters.tracking import Tracker
        pipeline, info = Tracker(settings).load_champion()
        version = str(info.version)
        print(f"champion: version {version} of {args.tracking_uri}")
    else:
        version, pipeline = promote_champion(settings, args.family)
    config = ServeConfig(port=free_port(), log_flush_seconds=args.flush_seconds)
    print(f"serving config: {config.replicas} replica(s) x {config.replica_cpus} CPU, inference log flushed "
          f"every {config.log_flush_seconds:g} s, {batching_of(config)} (HIT_SERVE_* from the environment)")
    print(f"cores: {os.cpu_count()}   load average before: {os.getloadavg()[0]:.2f}")

    plains = {}
    try:
        for n in sorted({1, args.workers}):
            plains[n] = start_plain_app(settings, n)
        t = time.perf_counter()
        endpoint = process.start(settings, config)
        print(f"serving process up in {time.perf_counter() - t:.1f} s at {endpoint} (model version {version})")
        names = {n: f"plain {n} worker{'s' if n > 1 else ''}" for n in plains} | {"serve": "Ray Serve (HAProxy)"}
        apps = {names[n]: url + "/predict" for n, (_, url) in plains.items()} | {names["serve"]: endpoint + "/predict"}
        for url in apps.values():
            wrk(url, SONG, 3)  # warm-up
        runs = {label: [] for label in apps}
        for _ in range(args.rounds):
            for label, url in apps.items():
                runs[label].append(wrk(url, SONG, args.duration))
        plain_1, plain_n, serve_runs = runs[names[1]], runs[names[args.workers]], runs[names["serve"]]
        print(f"\n/predict, wrk -t2 -c16 -d{args.duration}s, best of {args.rounds} alternating rounds")
        for label, results in runs.items():
            print(f"  {label:22}: {fmt(best_of(results))}")
        for i in range(args.rounds):
            print(f"    round {i + 1}: " + " | ".join(f"{label.split(' (')[0]} {results[i].rps:.0f} req/s "
                                                     f"p99 {results[i].p99:.1f} ms" for label, results in runs.items()))
        ratios(serve_runs, plain_n, f"plain({args.workers})", 1.0)
        ratios(serve_runs, plain_1, "plain(1)", 0.8)
        for proc, _ in plains.values():
            stop_plain_app(proc)  # the rest measures the serving process alone
        plains.clear()

        one_client(settings, config, endpoint, args)

        # -- batch ---------------------------------------------------------------------------------
        X, _ = synthetic_songs(args.batch, seed=7)
        songs = [{c: (bool(v) if c == "is_explicit" else int(v) if c in ("key", "mode", "time_signature",
                                                                         "duration_ms") else float(v))
                  for c, v in zip(FEATURE_COLUMNS, row)} for row in X.to_numpy()]
        json_body = json.dumps({"songs": songs}).encode()
        arrow_body = arrow_stream(songs)
        frame = pd.DataFrame([[float(s[c]) for c in FEATURE_COLUMNS] for s in songs], columns=list(FEATURE_COLUMNS))
        inproc = []
        for _ in range(7):
            t = time.perf_counter()
            pipeline.predict_proba(frame)
            inproc.append(time.perf_counter() - t)
        b = statistics.median(inproc)
        ARROW = "application/vnd.apache.arrow.stream"
        print(f"\n/predict/batch with {args.batch:,} songs, median of 7 (client: http.client, one read per body)")
        print(f"  in-process predict_proba(DataFrame)                       : {b * 1000:8.1f} ms")
        for label, body, headers in (
                ("JSON in, JSON out (the contract's default)", json_body, {"content-type": "application/json"}),
                ("Arrow in, Arrow out (Content-Type/Accept Arrow)", arrow_body, {"content-type": ARROW,
                                                                               "accept": ARROW})):
            times, size = post_timed(endpoint, "/predict/batch", body, headers, 7, args.batch)
            a = statistics.median(times)
            print(f"  {label:48}: {a * 1000:8.1f} ms  ({len(body) / 1e6:.1f} MB in, {size / 1e6:.1f} MB out) "
                  f"-> {a / b:5.1f}x in-process (target <= 2)")
        st = process.status(settings, config)
        print(f"\nstatus: {st.state}, model version {st.model_version}")
        if not args.no_kill_drills:
            drills = kill_drills(settings, config, endpoint, args.duration)
    finally:
        process.stop(settings, config)
        for proc, _ in plains.values():
            stop_plain_app(proc)

    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.lake.tables import requests_in_log
    lake = Lake(settings)
    logged = requests_in_log(lake)
    with lake.connection(read_only=True) as con:
        inside = con.execute("SELECT median(latency_ms) FROM (SELECT any_value(latency_ms) AS latency_ms "
                             "FROM ops.inference_log WHERE endpoint = '/predict/batch' AND status = 200 "
                             "AND n_songs = ? GROUP BY request_id)", [args.batch]).fetchall()[0][0]
    print(f"/predict/batch of {args.batch:,} songs inside the replica (inference log latency_ms, median, both "
          f"formats): {inside:.1f} ms; the rest is moving the bodies through HAProxy")
    sent = sum(r.requests for r in serve_runs)
    print(f"inference log after stop: {len(logged):,} requests, {sum(logged.values()):,} rows "
          f"(wrk counted {sent:,} completed /predict requests in the measured rounds, plus warm-up, one-client "
          f"runs and batches)")

    if not args.no_kill_drills:
        print(f"\nkill drills, wrk -t2 -c16 -d{args.duration}s (0 failed and 0 unlogged is the target of the first)")
        for label, result in drills:
            ok = [i for i, status in result.answered.items() if status == 200]
            found = requests_in_log(lake, ok)
            print(f"  {label:44}: {result.requests:,} answered ({len(ok):,} with 200), non-2xx {result.non2xx}, "
                  f"socket errors {result.socket_error_total}, answered but not logged {len(ok) - len(found)}, "
                  f"logged twice {sum(1 for n in found.values() if n > 1)}")

    if not args.no_default_proxy:
        cfg = ServeConfig(port=free_port(), fast_proxy=False)
        process.start(settings, cfg)
        try:
            wrk(cfg.endpoint + "/predict", SONG, 3)
            d = wrk(cfg.endpoint + "/predict", SONG, args.duration)
            print(f"\nfor reference, Ray Serve default proxy: {fmt(d)}")
        finally:
            process.stop(settings, cfg)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
