"""The serving process: `python -m hit_platform.serving.main` (started by `process.start`).

Reads Settings (HIT_*, its serving section HIT_SERVE_*) from its environment,
starts an embedded Ray (`ray.init(num_cpus=2, include_dashboard=False)`,
on loopback) or joins RAY_ADDRESS, starts Serve's HTTP ingress on
host:port, deploys the champion, records itself in the pid file and stays
up. Signals: SIGHUP = serve the current champion (in-place reconfigure);
SIGTERM / SIGINT = shut down (Serve first, so replicas flush the inference
log to the journal; then Ray; then the journal is committed to the lake)
and remove the pid file. With `--warm` and no champion yet it starts Ray and Serve, says "warm" in the
pid file and deploys the champion as soon as one is promoted (the demo starts it so while it trains). While up,
this process commits the replicas'
inference-log journal to the lake (`JournalCommitter`), and the challenger,
if any, scores what was committed (`serving.shadow.ShadowScorer`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone

import httpx
from mlflow.exceptions import MlflowException

from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving.inference_log import JournalCommitter
from hit_platform.serving.ingress import IngressSecretMissing, cluster_ingress_secret, ingress_secret
from hit_platform.serving.predictor import load_predictor
from hit_platform.serving.ray_env import ray_env
from hit_platform.serving.shadow import SCORE_EVERY_COMMITS, ShadowScorer
from hit_platform.settings import ServeConfig
from hit_platform.serving.process import pid_file, read_pid_file, update_pid_file
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import Tracker

log = logging.getLogger("hit_platform.serving")
WARM_POLL_S = 2.0  # a warm process asks the registry for a champion this often (at once on SIGHUP)


class ServingProcess:
    def __init__(self, settings: Settings, config: ServeConfig, ingress_secret: str | None = None,
                 cluster_env: dict[str, str] | None = None):
        self.settings, self.config = settings, config
        self.cluster_env = cluster_env or {}  # on a cluster: what Serve's actors on every node need (ray_env)
        self.ingress_secret = ingress_secret  # the replicas take a request id only with it (serving.ingress)
        self.pid_path = pid_file(settings, config)
        self.tracker = Tracker(settings)
        self.code_version = f"serving-{os.getpid()}-{int(time.time())}"
        self.version: str | None = None
        self.challenger: str | None = None  # the version shadowing it, if any
        self.stop_requested = threading.Event()
        self.update_requested = threading.Event()
        # The inference log's one lake writer for every replica on this machine (see inference_log), and the
        # consumer of what it commits that scores it with the challenger (serving.shadow).
        self.scorer, self.committer = None, None
        self.committing = False  # started with the first deployment (a warm process touches no lake before)
        if not config.replicas_commit():
            self.scorer = ShadowScorer(Lake(settings), every_seconds=SCORE_EVERY_COMMITS * config.log_commit_seconds)
            self.committer = JournalCommitter(Lake(settings), config.journal(settings), on_committed=self.scorer.take)

    # -- Ray and Serve ------------------------------------------------------------------------
    def start_ray(self) -> None:
        import ray
        from ray import serve

        address = self.config.ray_address
        runtime_env = {"env_vars": self.cluster_env} if self.cluster_env else None
        if address:
            # The nodes' processes inherit their raylet's environment, not this one: Serve's controller, its
            # proxies (our HAProxy) and the replicas get ours through the job's runtime env. No secret in it:
            # each node's runtime-env agent logs it whole (the ingress secret is in every node's environment).
            ray.init(address=address, namespace="hit_platform", logging_level=logging.WARNING,
                     runtime_env=runtime_env)
        else:
            ray.init(num_cpus=self.config.ray_cpus, include_dashboard=False, namespace="hit_platform",
                     logging_level=logging.WARNING)
        deadline = time.monotonic() + self.config.start_timeout_s
        while True:
            try:
                serve.start(http_options={"host": self.config.host, "port": self.config.port},
                            controller_options={"runtime_env": runtime_env} if runtime_env else None)
                return
            except TimeoutError as exc:
                # Serve waits 60 s for a proxy on every node; on a busy cluster a node's first worker starts
                # cold. Its controller goes on starting them: asked again, serve.start finds it running.
                if time.monotonic() > deadline:
                    raise
                log.warning("Serve's proxies are not all up yet (%s); waiting for them", exc)

    def deploy(self, version: str, challenger: str | None = None) -> None:
        """Deploy (or re-deploy with a new user_config) and wait until it answers with `version`
        (shadowed by `challenger`)."""
        from ray import serve
        from ray.serve.schema import LoggingConfig

        from hit_platform.serving.replica import APP_NAME, bind_application

        # This process commits the journal, so the challenger scores here (serving.shadow): load it first,
        # so that a version that cannot load changes nothing.
        scorer = self.scorer is not None and challenger != self._scoring()
        predictor = load_predictor(self.tracker, challenger) if scorer and challenger else None
        requested_at = datetime.now(timezone.utc).isoformat()
        app = bind_application(self.settings, self.config, version, code_version=self.code_version,
                               requested_at=requested_at, challenger_version=challenger,
                               ingress_secret=self.ingress_secret)
        # Serve's per-request access log would duplicate the inference log and cost CPU per request.
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False,
                  logging_config=LoggingConfig(enable_access_log=False, log_level="WARNING"))
        self.wait_serving(version, challenger)
        if scorer:
            self.scorer.set_challenger(predictor)
        self.version, self.challenger = version, challenger

    def _scoring(self) -> str | None:
        """The challenger version the scorer scores with now (it may already hold one at start-up)."""
        held = self.scorer.challenger if self.scorer is not None else None
        return held.version if held is not None else None

    def wait_serving(self, version: str, challenger: str | None = None, timeout: float = 120.0) -> None:
        """Serve reports RUNNING before the HTTP ingress routes to the replica: wait for /healthz."""
        deadline, last = time.monotonic() + timeout, None
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                try:
                    r = client.get(f"{self.config.endpoint}/healthz")
                    last = f"{r.status_code} {r.text[:200]}"
                    if r.status_code == 200 and (str(r.json().get("model_version")), r.json().get(
                            "challenger_version")) == (version, challenger):
                        return
                    if r.status_code == 200:  # answering with other versions: did a swap fail?
                        err = client.get(f"{self.config.endpoint}/model").json().get("last_update_error")
                        if err and any(f"version {v}:" in err for v in (version, challenger) if v):
                            raise RuntimeError(err)
                except httpx.HTTPError as exc:
                    last = str(exc)
                time.sleep(0.2)
        raise TimeoutError(f"{self.config.endpoint}/healthz did not report version {version} "
                           f"within {timeout:.0f} s (last answer: {last})")

    # -- lifecycle ------------------------------------------------------------------------------
    def update(self) -> None:
        """SIGHUP: serve whatever the champion alias names now, shadowed by the challenger alias."""
        try:
            info = self.tracker.champion_info()
            shadow = self.tracker.challenger_info()
        except MlflowException as exc:  # the registry unreachable: keep serving what we serve, say why
            log.error("update: cannot read the champion alias from %s: %s", self.tracker.uri, exc)
            update_pid_file(self.pid_path, update_error=f"{type(exc).__name__}: {exc}", update_error_version=None)
            return
        if info is None:
            update_pid_file(self.pid_path, update_error="no champion alias", update_error_version=None)
            return
        target = str(info.version)
        challenger = str(shadow.version) if shadow is not None and str(shadow.version) != target else None
        if (target, challenger) == (self.version, self.challenger):
            update_pid_file(self.pid_path, model_version=target, challenger_version=challenger, update_error=None)
            return
        log.warning("updating the served models: version %s -> %s, challenger %s -> %s", self.version, target,
                    self.challenger, challenger)
        try:
            self.deploy(target, challenger)
        except Exception as exc:
            log.error("update to version %s (challenger %s) failed: %s", target, challenger, exc)
            update_pid_file(self.pid_path, update_error=f"{type(exc).__name__}: {exc}",
                            update_error_version=target, update_error_challenger=challenger)
            return
        update_pid_file(self.pid_path, model_version=target, challenger_version=challenger, update_error=None,
                        update_error_version=None, update_error_challenger=None, updated_at=time.time())

    def record_placement(self) -> None:
        """The replicas' nodes, in the pid file for `hit-platform status` (a cluster only)."""
        from hit_platform.serving.placement import replica_nodes, running_per_node

        try:
            replicas = replica_nodes()
        except Exception as exc:  # the controller busy: the next round asks again
            log.warning("could not read where the replicas run: %s", exc)
            return
        update_pid_file(self.pid_path, replicas=replicas, running_per_node=running_per_node(replicas))

    def shutdown(self) -> None:
        import ray
        from ray import serve

        update_pid_file(self.pid_path, state="stopping")
        try:
            serve.shutdown()  # replicas drain, seal their journal segments (or die holding them open)
        finally:
            # Commit before ray.shutdown: after it, Ray may end this process at once. Wait for the
            # replicas' segments to be sealed or released by their exit, so `stop` returns with the log
            # in the lake.
            if self.committing:
                try:
                    if not self.committer.drain(timeout=30):
                        log.warning("inference log: segments left in %s after shutdown (%s); the next serve or "
                                    "stop commits them", self.committer.journal_dir, self.committer.last_error)
                except Exception:
                    log.exception("inference log: commit at shutdown failed; the journal stays for the next run")
                try:  # what the commits handed it (a score it cannot write now, the next start looks back for)
                    self.scorer.close()
                except Exception:
                    log.exception("shadow scorer: scoring at shutdown failed; the next start looks back for it")
            ray.shutdown()
            if self.committing:
                self.committer.close()
            info = read_pid_file(self.pid_path)
            if info and info.get("pid") == os.getpid():
                self.pid_path.unlink(missing_ok=True)

    def start_committer(self, challenger: str | None) -> None:
        """The journal's committer and the shadow scorer (when this process commits): its first round commits
        what an earlier run left in the journal, scored by the challenger like any answer (a killed run's too)."""
        if self.committer is None:
            return
        if challenger:
            try:
                self.scorer.set_challenger(load_predictor(self.tracker, challenger))
            except Exception as exc:  # deploy tries again, and reports it
                log.error("challenger version %s cannot be loaded: %s", challenger, exc)
        self.scorer.start()
        self.committer.start(self.config.log_commit_seconds)
        self.committing = True

    def served_aliases(self):
        """(champion, challenger version or None) as the registry names them now; champion None: no alias yet."""
        champion, shadow = self.tracker.champion_info(), self.tracker.challenger_info()
        if champion is None:
            return None, None
        return champion, str(shadow.version) if shadow is not None and shadow.version != champion.version else None

    def wait_for_champion(self):
        """Warm: Ray and Serve are up, nothing is deployed. Poll the registry (at once on SIGHUP) until a champion
        alias exists, then return it with its challenger; (None, None) when stopped first."""
        update_pid_file(self.pid_path, pid=os.getpid(), state="warm", endpoint=self.config.endpoint,
                        ray_address=self.config.ray_address, warm_at=time.time())
        log.warning("warm: Ray and Serve are up at %s; the champion is deployed as soon as one is promoted",
                    self.config.endpoint)
        while not self.stop_requested.is_set():
            self.update_requested.wait(WARM_POLL_S)
            self.update_requested.clear()
            try:
                champion, challenger = self.served_aliases()
            except MlflowException as exc:  # a registry being created or busy: the next poll asks again
                log.warning("warm: cannot read the champion alias yet: %s", exc)
                continue
            if champion is not None:
                return champion, challenger
        return None, None

    def run(self, warm: bool = False) -> int:
        champion, challenger = self.served_aliases()
        if champion is None and not warm:
            print(f"hit_platform serving: no champion alias on registered model {self.settings.mlflow.model_name!r} "
                  f"in {self.tracker.uri}; nothing to serve", file=sys.stderr)
            return 2
        signal.signal(signal.SIGHUP, lambda *_: self.update_requested.set())  # one sent during Ray's start waits
        if champion is not None:
            self.start_committer(challenger)
        self.start_ray()
        # Ray installs its own SIGTERM handler in ray.init; ours replaces it for a clean shutdown.
        signal.signal(signal.SIGTERM, lambda *_: self.stop_requested.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_requested.set())
        signal.signal(signal.SIGHUP, lambda *_: self.update_requested.set())
        try:
            if champion is None:  # warm: no lake is touched (the committer waits too) until there is a model
                champion, challenger = self.wait_for_champion()
                if champion is None:
                    return 0
                self.start_committer(challenger)
            self.deploy(str(champion.version), challenger)
            update_pid_file(self.pid_path, pid=os.getpid(), state="running", model_version=self.version,
                            challenger_version=self.challenger,
                            endpoint=self.config.endpoint, ready_at=time.time(),
                            ray_address=self.config.ray_address)
            log.warning("serving %s version %s at %s", self.settings.mlflow.model_name, self.version, self.config.endpoint)
            if (read_pid_file(self.pid_path) or {}).get("requested_version") not in (None, self.version):
                self.update_requested.set()  # asked for while starting, when no SIGHUP was sent (process.update)
            placed = 0.0
            while not self.stop_requested.is_set():
                if self.update_requested.wait(0.5):
                    self.update_requested.clear()
                    self.update()
                if self.config.ray_address and time.monotonic() - placed > 5:  # where the replicas run now
                    placed = time.monotonic()
                    self.record_placement()
        finally:
            self.shutdown()
        return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per readiness poll
    settings = Settings()
    config = settings.serving
    # Decide "auto" here, once: the replicas receive this config and must not decide it again.
    config = config.model_copy(update={"log_committer": "replica" if config.replicas_commit() else "process"})
    state = config.state_dir(settings)
    state.mkdir(parents=True, exist_ok=True)
    # Our HAProxy stamps each request id with this secret, on this machine or on every node of a cluster
    # (None with Serve's Python proxy: the replicas name every request themselves). On a cluster it is the
    # nodes' own (in every node's environment), never handed to Ray: Ray logs the runtime envs it creates.
    joining = bool(config.ray_address)
    try:
        secret = cluster_ingress_secret(os.environ) if joining and config.fast_proxy else \
            ingress_secret(fast_proxy=config.fast_proxy)
    except IngressSecretMissing as exc:
        print(f"hit_platform serving: {exc}", file=sys.stderr)
        return 2
    # Ray reads these at import time: set them before anything imports it.
    env = ray_env(host=config.host, fast_proxy=config.fast_proxy, state_dir=state, joining_cluster=joining,
                  ingress_secret=secret)
    os.environ.update(env)
    return ServingProcess(settings, config, secret, cluster_env=env if joining else None).run(warm=WARM in sys.argv[1:])


WARM = "--warm"  # start Ray and Serve before there is a champion; deploy it once promoted (process.start(warm=True))


if __name__ == "__main__":
    sys.exit(main())
