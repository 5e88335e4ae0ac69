"""Serving throughput: the real Ray Serve process vs a plain uvicorn + FastAPI app, same model, same machine.

    .venv/bin/python bench/bench_serving.py [--duration 15] [--family linear] [--no-default-proxy]

1. Trains a champion (a `hit_platform.domain.models` family on synthetic songs; `--family`), registers and
   promotes it in a temp MLflow store (or serves the champion of `--tracking-uri`).
2. Starts the real serving process (`hit_platform.serving.start`: Ray Serve, HAProxy ingress,
   inference log into a temp lake) and a plain app (uvicorn + FastAPI, one worker, defined below,
   same pydantic Song model and same prediction code, no Ray, no inference log).
3. wrk (2 threads, 16 connections, --duration s, POST body via a Lua script) against /predict of
   each, alternating rounds; prints requests/s, p50, p99 and the ratios (target >= 0.8x requests/s,
   p99 no worse).
4. /predict/batch with 10,000 songs against the serving process, as JSON and as Arrow streams, vs
   in-process predict_proba of the same 10,000 songs (target: within 2x).
5. Kill drills (unless --no-kill-drills): wrk recording every answer's request id while one replica
   gets kill -9, then while the serving process gets kill -9 and `hit-platform serve` starts it again;
   after stop, each answer is looked up in ops.inference_log (target for the replica kill: 0 failed
   requests, 0 answered but not logged; for the process kill: 0 answered but not logged).
6. With the default proxy too (unless --no-default-proxy): Ray Serve's Python proxy, for reference.
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


# -- the plain app (run as a subprocess: `bench_serving.py --plain-app PORT`) ---------------------------

def plain_app_main(port: int) -> None:
    """uvicorn + FastAPI, one worker, the champion in memory: the baseline Ray Serve is compared with."""
    import uuid

    import uvicorn

    from hit_platform.serving.encoding import answered, prediction_bytes
    from hit_platform.serving.predictor import features_of, load_predictor, top_k
    from hit_platform.serving.schemas import SONG_ADAPTER
    from hit_platform.adapters.tracking import Tracker

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
        return {"status": "ok", "model_version": model.version}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_plain_app(settings: Settings) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = process.child_env(settings, ServeConfig())
    proc = subprocess.Popen([sys.executable, __file__, "--plain-app", str(port)], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the plain app exited with {proc.returncode}")
        time.sleep(0.2)
    raise SystemExit("the plain app did not start")


# -- wrk (hit_platform_tests/support/load.py) ------------------------------------------------------------

def fmt(r: WrkResult) -> str:
    return r.line()


def median_p99(results: list[WrkResult]) -> float:
    return statistics.median(r.p99 for r in results)


def best_of(results: list[WrkResult]) -> WrkResult:
    return max(results, key=lambda r: r.rps)


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
    ap.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds per app")
    ap.add_argument("--family", default="linear", help="hit_platform.domain.models family of the champion")
    ap.add_argument("--tracking-uri", help="serve the champion of this MLflow store instead of training one")
    ap.add_argument("--batch", type=int, default=10_000, help="songs in the /predict/batch request")
    ap.add_argument("--flush-seconds", type=float, default=ServeConfig().log_flush_seconds,
                    help="inference log flush interval of the serving process (HIT_SERVE_LOG_FLUSH_SECONDS)")
    ap.add_argument("--no-default-proxy", action="store_true", help="skip the Ray Serve default-proxy run")
    ap.add_argument("--no-kill-drills", action="store_true", help="skip killing a replica, then the serving process")
    ap.add_argument("--plain-app", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_app:
        return plain_app_main(args.plain_app)
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
          f"every {config.log_flush_seconds:g} s (HIT_SERVE_* from the environment)")
    print(f"cores: {os.cpu_count()}   load average before: {os.getloadavg()[0]:.2f}")

    plain, plain_url = start_plain_app(settings)
    try:
        t = time.perf_counter()
        endpoint = process.start(settings, config)
        print(f"serving process up in {time.perf_counter() - t:.1f} s at {endpoint} (model version {version})")
        wrk(endpoint + "/predict", SONG, 3)  # warm-up
        wrk(plain_url + "/predict", SONG, 3)
        serve_runs, plain_runs = [], []
        for _ in range(args.rounds):
            plain_runs.append(wrk(plain_url + "/predict", SONG, args.duration))
            serve_runs.append(wrk(endpoint + "/predict", SONG, args.duration))
        s, p = best_of(serve_runs), best_of(plain_runs)
        print(f"\n/predict, wrk -t2 -c16 -d{args.duration}s, best of {args.rounds} alternating rounds")
        print(f"  plain uvicorn+FastAPI : {fmt(p)}")
        print(f"  Ray Serve (HAProxy)   : {fmt(s)}")
        for i, (a, b) in enumerate(zip(plain_runs, serve_runs)):
            print(f"    round {i + 1}: plain {a.rps:.0f} req/s p99 {a.p99:.1f} ms | "
                  f"serve {b.rps:.0f} req/s p99 {b.p99:.1f} ms")
        print(f"  ratio requests/s serve/plain : {s.rps / p.rps:.2f} best vs best, "
              f"{statistics.median(b.rps / a.rps for a, b in zip(plain_runs, serve_runs)):.2f} median of "
              f"rounds   (target >= 0.8)")
        print(f"  ratio p99 serve/plain        : {s.p99 / p.p99:.2f} best vs best, "
              f"{statistics.median(b.p99 / a.p99 for a, b in zip(plain_runs, serve_runs)):.2f} median of "
              f"rounds, {median_p99(serve_runs) / median_p99(plain_runs):.2f} median p99 vs median p99   "
              f"(target <= 1.0)")

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
        plain.terminate()
        plain.wait(10)

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
          f"(wrk counted {sent:,} completed /predict requests in the measured rounds, plus warm-up and batches)")

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
