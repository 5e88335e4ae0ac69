"""The request id is the platform's, on every path: a client that sends `x-hit-request-id` itself never
has its id taken (a reused id would be taken for a retry, and the later answers dropped from the log as
duplicates). The real replica (class, app, journal, committer; no Ray), built as each path builds it."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.serving.ingress import INGRESS_HEADER, REQUEST_ID_HEADER, SECRET_VAR, haproxy_wrapper, ingress_secret
from hit_platform.serving.replica import ModelReplica
from hit_platform_tests.support.serving import promote_champion, serving_env, song

CHOSEN = "chosen-by-the-client"


def post_all(app, requests: list[tuple[str, dict, dict]]) -> list[str]:
    """Each (path, json, headers) posted through the replica's ASGI app; the request ids answered."""
    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            out = []
            for path, body, headers in requests:
                r = await client.post(path, json=body, headers=headers)
                assert r.status_code in (200, 422), r.text
                out.append(r.json()["request_id"])
            return out
    return asyncio.run(run())


@pytest.mark.slow
def test_on_a_ray_cluster_a_client_chosen_request_id_is_never_taken(tmp_path: Path, monkeypatch):
    """With RAY_ADDRESS set our HAProxy runs on every node with the serving process's secret: a request
    without it gets the replica's own id. Before: the replica took the client's id, and its second answer
    under that id never reached the log."""
    settings, config = serving_env(tmp_path, ray_address="10.0.0.1:6379", log_flush_seconds=60)
    assert config.replicas_commit()  # the cluster's replica commits its own journal
    secret = ingress_secret(fast_proxy=config.fast_proxy)
    assert secret  # what the serving process hands its replicas and its HAProxy on every node
    promote_champion(settings, seed=5)
    monkeypatch.setenv(SECRET_VAR, secret)  # this node's, as `ray start` got it (never Ray's runtime env)
    replica = ModelReplica(settings.dump_for_child(), config.model_dump(mode="json"), secret)
    reused = {REQUEST_ID_HEADER: CHOSEN}
    ids = post_all(replica.__serve_build_asgi_app__(), [
        ("/predict", song(), reused),  # the lean path
        ("/predict", song(energy=0.3), reused),
        ("/predict?top_k=3&x=1", song(), reused),  # through FastAPI
        ("/predict/batch", {"songs": [song(), song()]}, reused),
        ("/predict", song(energy=7), reused),  # a refusal, logged too
    ])
    assert len(set(ids)) == len(ids) and CHOSEN not in ids, ids
    replica.__del__()  # what Serve calls on shutdown: seal and commit
    assert requests_in_log(Lake(settings), ids) == dict(zip(ids, [1, 1, 1, 2, 1]))


@pytest.mark.slow
def test_a_request_id_is_taken_only_with_the_secret_our_ingress_stamps(tmp_path: Path):
    """On one machine our HAProxy stamps the id and a per-process secret beside it: a request that reaches
    the replica without that secret (a guess, none, or the replica's port called directly) gets its own id."""
    settings, config = serving_env(tmp_path, log_flush_seconds=60, log_committer="process")
    secret = ingress_secret(fast_proxy=config.fast_proxy)
    assert secret and len(secret) >= 32 and secret != ingress_secret(fast_proxy=True)
    assert ingress_secret(fast_proxy=False) is None  # Serve's Python proxy stamps nothing
    promote_champion(settings, seed=6)
    replica = ModelReplica(settings.dump_for_child(), config.model_dump(mode="json"), secret)
    app = replica.__serve_build_asgi_app__()
    stamped = {REQUEST_ID_HEADER: "id-set-by-the-ingress", INGRESS_HEADER: secret}
    guessed = {REQUEST_ID_HEADER: CHOSEN, INGRESS_HEADER: secret[:-1] + ("0" if secret[-1] != "0" else "1")}
    ids = post_all(app, [("/predict", song(), stamped), ("/predict?top_k=3&x=1", song(), stamped),
                         ("/predict", song(), {REQUEST_ID_HEADER: CHOSEN}), ("/predict", song(), guessed),
                         ("/predict/batch", {"songs": [song()]}, guessed)])
    assert ids[:2] == ["id-set-by-the-ingress"] * 2
    assert CHOSEN not in ids[2:] and len(set(ids[2:])) == 3
    replica.logger.close()


def test_our_haproxy_stamps_the_secret_from_its_environment_and_no_file_holds_it(tmp_path: Path):
    """The wrapper (this user's only) hands HAProxy the secret in its environment; the config names it."""
    secret = ingress_secret(fast_proxy=True)
    wrapper = haproxy_wrapper(tmp_path, [], secret)
    assert stat.S_IMODE(os.stat(wrapper).st_mode) == 0o700
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("frontend http_frontend\n    bind 127.0.0.1:8000\n")
    fake = tmp_path / "fake-haproxy"
    fake.write_text('#!/bin/sh\necho "$HIT_INGRESS_SECRET"\n')
    fake.chmod(0o755)
    text = wrapper.read_text()
    wrapper.write_text(text.replace(text.split("HIT_HAPROXY_REAL=", 1)[1].split("\n", 1)[0], str(fake)))
    out = subprocess.run([str(wrapper), "-f", str(cfg)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == secret
    edited = cfg.read_text()
    assert f'http-request set-header {INGRESS_HEADER} "${{HIT_INGRESS_SECRET}}"' in edited and secret not in edited
    assert f"http-request set-header {REQUEST_ID_HEADER} %[uuid]" in edited


def test_on_a_ray_cluster_the_secret_comes_from_the_nodes_environment_never_the_runtime_env(tmp_path: Path):
    """On a cluster the serving process hands Serve's proxies its ingress environment in a Ray runtime env,
    which Ray's runtime-env agent logs whole on every node: the secret is not in it. The secret is the
    nodes' own HIT_INGRESS_SECRET; without it `serve` refuses, and a replica whose node holds another one
    refuses to start (that node's HAProxy would stamp ids every replica refuses)."""
    from hit_platform.serving.ingress import IngressSecretMissing, cluster_ingress_secret, node_secret_problem
    from hit_platform.serving.ray_env import ray_env

    secret = ingress_secret(fast_proxy=True)
    joined = ray_env(host="0.0.0.0", fast_proxy=True, state_dir=tmp_path, joining_cluster=True, ingress_secret=secret)
    assert joined["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and "HIT_INGRESS_SECRET" not in joined
    assert secret not in " ".join(joined.values())
    alone = ray_env(host="127.0.0.1", fast_proxy=True, state_dir=tmp_path, joining_cluster=False, ingress_secret=secret)
    assert secret in Path(alone["RAY_SERVE_HAPROXY_BINARY_PATH"]).read_text()  # one machine: the 0700 wrapper
    assert cluster_ingress_secret({"HIT_INGRESS_SECRET": secret}) == secret
    for environ in ({}, {"HIT_INGRESS_SECRET": "short"}):
        with pytest.raises(IngressSecretMissing, match="HIT_INGRESS_SECRET .* in the environment of `ray start`"):
            cluster_ingress_secret(environ)
    assert node_secret_problem(secret, {"HIT_INGRESS_SECRET": secret}, "10.0.0.2") is None
    assert node_secret_problem(None, {}, "10.0.0.2") is None  # Serve's Python proxy: no secret anywhere
    assert "node 10.0.0.2: HIT_INGRESS_SECRET in this node's environment (as `ray start` got it) differs" in \
        node_secret_problem(secret, {"HIT_INGRESS_SECRET": "x" * 48}, "10.0.0.2")
    assert "is missing" in node_secret_problem(secret, {}, "10.0.0.2")
    # `hit-platform serve` hands the node's secret on to the serving process (other HIT_* come from Settings)
    from hit_platform.serving.process import child_env
    from hit_platform.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIT_INGRESS_SECRET", secret)
        settings = Settings(warehouse=tmp_path)
        assert child_env(settings, settings.serving)["HIT_INGRESS_SECRET"] == secret
    # the serving process itself, joining a cluster without the secret: one line, exit 2, before any Ray
    env = {k: v for k, v in os.environ.items() if k != "HIT_INGRESS_SECRET"}
    done = subprocess.run([sys.executable, "-m", "hit_platform.serving.main"], capture_output=True, text=True,
                          env={**env, "HIT_WAREHOUSE": str(tmp_path / "warehouse"), "RAY_ADDRESS": "10.0.0.1:6379"},
                          timeout=120)
    assert done.returncode == 2 and "serving on a Ray cluster needs HIT_INGRESS_SECRET" in done.stderr, done.stderr
