"""`hit-platform serve`, `stop` and `audit`: the champion served over HTTP, one real prediction to
try, and where a served or batch prediction came from."""

from __future__ import annotations

import argparse
import json

from hit_platform.settings import Settings

SAMPLE_SONG = {"danceability": 0.72, "energy": 0.81, "key": 5, "loudness": -5.2, "mode": 1, "speechiness": 0.06,
               "acousticness": 0.12, "instrumentalness": 0.0, "liveness": 0.11, "valence": 0.64, "tempo": 122.0,
               "time_signature": 4, "duration_ms": 201000, "is_explicit": False}


def _curl(endpoint: str) -> str:
    return (f"curl -s -X POST '{endpoint}/predict?top_k=5' -H 'content-type: application/json' "
            f"-d '{json.dumps(SAMPLE_SONG)}'")


def print_prediction(endpoint: str) -> None:
    """One real request to the running endpoint, its answer, and how to repeat and trace it."""
    import httpx

    r = httpx.post(f"{endpoint}/predict", params={"top_k": 5}, json=SAMPLE_SONG, timeout=30)
    r.raise_for_status()
    body = r.json()
    print(f"\none real prediction over HTTP (request {body['request_id']}, model version {body['model_version']}):")
    for t in body["top_countries"]:
        print(f"  {t['country']}  {t['probability']:.3f}")
    print(f"repeat it:  {_curl(endpoint)}")
    print(f"trace it:   .venv/bin/hit-platform audit {body['request_id']}")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.serving import process

    endpoint = process.start(settings)
    st = process.status(settings)
    print(f"serving model version {st.model_version} at {endpoint} (pid {st.pid}; log {st.log_file})")
    print(f"try it:  {_curl(endpoint)}")
    return 0


def print_serving_status(settings: Settings) -> None:
    """One line on the serving process; on a Ray cluster, a line per node with its replicas."""
    from hit_platform.serving import process

    st = process.status(settings)
    if not st.running:
        print("serving: not running")
        return
    where = f" on the Ray cluster at {st.ray_address}" if st.ray_address else ""
    print(f"serving: model version {st.model_version} at {st.endpoint} ({st.state}, pid {st.pid}){where}")
    nodes: dict[str, list[str]] = {}
    for r in st.replicas or []:
        nodes.setdefault(r.get("node_ip") or "?", []).append(f"{r['replica_id']} {r['state'].lower()} pid {r['pid']}")
    for ip, replicas in sorted(nodes.items()):
        print(f"  node {ip}: {len(replicas)} replica{'s' if len(replicas) != 1 else ''} ({'; '.join(replicas)})")


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.serving import process

    print("stopped" if process.stop(settings) else "was not running")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.reports.audit import audit

    report = audit(settings, args.id)  # not found, or inconsistent rows (AuditError): one line from `main`
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        width = max(len(k) for k in report)
        for k, v in report.items():
            lines = v if isinstance(v, list) else [v]  # a list: one line each (the explanation)
            for i, line in enumerate(lines or [""]):
                print(f"{k if i == 0 else '':<{width}}  {line}")
    return 0
