"""What a person sees from a long command, run as the `hit-platform` script: progress lines on stdout, the
libraries' INFO lines and warnings in a log file it names (not on the terminal), `--json` as one JSON
object a line, `--quiet` with no progress at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # four runs of the script, ~30 s


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HIT_WAREHOUSE": str(tmp_path / "warehouse"), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_CONFIGURE_LOGGING", None)
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run([sys.executable, "-m", "hit_platform.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_ingest_tells_its_progress_and_keeps_the_libraries_logs_in_a_file(tmp_path):
    made = cli(tmp_path, "generate", "--songs", "400", "--history-days", "10", "--increments", "1",
               "--countries", "4", "--fault", "wrong_types=3")
    assert made.returncode == 0, made.stderr
    run = cli(tmp_path, "ingest")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    log = Path(re.fullmatch(r"\(the libraries' logs: (.+)\)", lines[0]).group(1))
    assert lines[1] == "[1/1] raw/chart_rows, quarantine/chart_rows …", lines
    assert re.fullmatch(r"\[1/1\] raw/chart_rows, quarantine/chart_rows \d+\.\d s", lines[2]), lines
    # the terminal holds no library chatter: no INFO line, no Python warning, no Dagster event line
    assert not [line for line in run.stderr.splitlines() if line.strip()], run.stderr
    assert log.is_file() and log.parent == tmp_path / "warehouse" / "logs"
    assert "ingested (" in log.read_text()  # ingest's own INFO line went to the file

    quiet = cli(tmp_path, "ingest", "--quiet")
    assert quiet.returncode == 0 and "[1/1]" not in quiet.stdout and "libraries' logs" not in quiet.stdout
    assert "lake snapshot id" in quiet.stdout  # the result is still said

    told = cli(tmp_path, "ingest", "--json")
    assert told.returncode == 0, told.stderr
    events = [json.loads(line) for line in told.stdout.splitlines()]  # every line is one JSON object
    assert events[0]["event"] == "started" and events[-1] == {**events[-1], "event": "result", "exit_code": 0,
                                                                "ok": True}
    assert [e["event"] for e in events[1:3]] == ["asset_started", "asset_ended"]
    assert events[2]["asset"] == "raw/chart_rows, quarantine/chart_rows" and events[2]["outcome"] == "success"
    assert "lake snapshot id" in Path(events[0]["log"]).read_text()  # the human lines went to the log


# An artifact downloaded after the logs are routed, as serving/deployment downloads the explanation background:
# MLflow's tqdm bar writes to the terminal itself, past logging (the demo printed "Downloading artifacts: 100%").
_DOWNLOAD = """
import sys
from pathlib import Path
from hit_platform.cli.logs import route_logs
route_logs(Path(sys.argv[1]) / "logs", "probe", verbose=sys.argv[2] == "verbose")
import mlflow
mlflow.set_tracking_uri("sqlite:///" + sys.argv[1] + "/mlflow.db")
(Path(sys.argv[1]) / "a.txt").write_text("x")
with mlflow.start_run() as run:
    mlflow.log_artifact(sys.argv[1] + "/a.txt")
mlflow.MlflowClient().download_artifacts(run.info.run_id, "a.txt", sys.argv[1])
"""


def test_an_artifact_download_draws_no_progress_bar_on_the_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for mode, bar in (("quiet", False), ("verbose", True)):
        run = subprocess.run([sys.executable, "-c", _DOWNLOAD, str(tmp_path), mode], env=env, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert ("Downloading artifacts" in run.stderr) is bar, (mode, run.stderr)
