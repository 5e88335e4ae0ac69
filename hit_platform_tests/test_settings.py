"""One Settings, in sections, read once: what a child process, a resource or a sensor gets is what
the settings say, and the scale profile refuses to start without its services."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import hit_platform
from hit_platform.definitions import build_definitions
from hit_platform.defs.resources import GatesResource, resources_for
from hit_platform.settings import GateThresholds, Settings

SECTIONS = ("lake", "duckdb", "s3", "mlflow", "training", "gates", "monitors", "serving", "sensors")


def test_every_section_is_there_and_the_environment_fills_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HIT_GATE_MAX_PSI", "0.4")
    monkeypatch.setenv("HIT_MODEL_NAME", "other_model")
    monkeypatch.setenv("HIT_TRAIN_FAMILIES", '["linear"]')
    monkeypatch.setenv("HIT_SERVE_PORT", "8123")
    monkeypatch.setenv("HIT_LANDING_SENSOR_INTERVAL_S", "7")
    s = Settings(warehouse=tmp_path)
    assert all(hasattr(s, name) for name in SECTIONS)
    assert (s.gates.max_psi, s.mlflow.model_name, s.training.families, s.serving.port,
            s.sensors.landing_sensor_interval_s) == (0.4, "other_model", ["linear"], 8123, 7)


def test_a_section_given_in_code_overrides_only_its_fields(monkeypatch, tmp_path):
    monkeypatch.setenv("HIT_LAKE_CATALOG", str(tmp_path / "c.sqlite"))
    s = Settings(warehouse=tmp_path, lake={"retries": 40})
    assert (s.lake.retries, s.lake.catalog) == (40, str(tmp_path / "c.sqlite"))
    assert s.override(gates={"max_psi": 0.9}).gates.max_psi == 0.9
    assert s.override(gates={"max_psi": 0.9}).lake.retries == 40


def test_the_gates_section_gives_the_promotion_rules_their_thresholds_as_plain_values(tmp_path):
    gates = Settings(warehouse=tmp_path, gates={"max_auc_drop_vs_champion": 0.02}).gates
    t = gates.promotion()
    assert t.max_auc_drop_vs_champion == 0.02
    assert dataclasses.asdict(t) == gates.model_dump(include=set(dataclasses.asdict(t)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.max_auc_drop_vs_champion = 1.0  # type: ignore[misc]


def test_reading_the_settings_loads_no_data_library():
    """Every process reads the settings (the CLI's --help, each serving replica, each Dagster step):
    they stay plain pydantic, and the column names they need come without pandas or pandera."""
    code = ("import sys, hit_platform.settings; "
            "print(sorted(m for m in ('pandas', 'pandera', 'numpy', 'sklearn', 'duckdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_bad_value_says_which_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("HIT_SERVE_PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        Settings(warehouse=tmp_path)


def test_the_environment_of_to_env_rebuilds_the_same_settings(tmp_path):
    s = Settings(warehouse=tmp_path, gates={"max_psi": 0.33}, training={"families": ["linear"], "seed": 3},
                 mlflow={"model_name": "m2"}, s3={"secret_access_key": "s3cr3t"}, serving={"port": 8124})
    code = "from hit_platform.settings import Settings; import json; print(json.dumps(Settings().dump_for_child()))"
    out = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", **s.to_env()},
                         capture_output=True, text=True, check=True).stdout
    child = json.loads(out)
    mine = s.dump_for_child()
    child["s3"].pop("aws"), mine["s3"].pop("aws")  # the AWS_* variables of each process
    assert child == mine


def test_scale_profile_refuses_to_start_without_its_services(tmp_path):
    with pytest.raises(ValidationError) as err:
        Settings(warehouse=tmp_path, profile="scale")
    for needed in ("HIT_LAKE_CATALOG", "HIT_LAKE_DATA_PATH", "HIT_MLFLOW_TRACKING_URI"):
        assert needed in str(err.value)
    scale = Settings(warehouse=tmp_path, profile="scale",
                     lake={"catalog": "postgres:dbname=lake host=db", "data_path": "s3://bucket/lake"},
                     mlflow={"tracking_uri": "http://mlflow:5000"})
    assert scale.catalog.startswith("postgres:") and scale.data_on_s3


def test_resources_and_sensors_are_built_from_the_settings(tmp_path):
    s = Settings(warehouse=tmp_path, gates={"max_psi": 0.31}, training={"families": ["linear"], "seed": 5},
                 serving={"port": 8125}, sensors={"landing_sensor_interval_s": 9, "drift_sensor_interval_s": 11,
                                                  "automation_interval_s": 13})
    resources = resources_for(s)
    assert resources["lake"].settings().warehouse == tmp_path
    assert resources["gates_config"].thresholds().max_psi == 0.31
    assert (resources["training"].families, resources["training"].seed) == (["linear"], 5)
    assert resources["serving"].config().port == 8125
    defs = build_definitions(settings=s)
    intervals = {sensor.name: sensor.minimum_interval_seconds for sensor in defs.sensors}
    assert (intervals["landing_sensor"], intervals["drift_retrain_sensor"], intervals["automation"]) == (9, 11, 13)
    assert defs.resources["gates_config"].thresholds().max_psi == 0.31


def test_a_resource_is_a_view_of_the_settings_a_setting_is_read_in_one_place(monkeypatch, tmp_path):
    """The environment is read once, into Settings; each resource is handed every value of its section
    (what the launchpad shows) and never reads the environment again."""
    monkeypatch.setenv("HIT_GATE_MAX_PSI", "0.77")
    monkeypatch.setenv("HIT_SERVE_PORT", "8126")
    resources = resources_for(Settings(warehouse=tmp_path))
    shown = json.loads(resources["gates_config"].values_json)
    assert shown["max_psi"] == 0.77 and set(shown) == set(GateThresholds.model_fields)  # every value, in force
    assert resources["gates_config"].thresholds().max_psi == 0.77
    assert json.loads(resources["serving"].values_json)["port"] == resources["serving"].config().port == 8126
    # a resource given one value holds the section's defaults for the rest, not what the environment says
    assert GatesResource(values_json='{"min_positive_rate": 0.01}').thresholds().max_psi == \
        GateThresholds.model_fields["max_psi"].default != 0.77
    monkeypatch.setenv("HIT_GATE_MAX_PSI", "0.11")  # changed after the resources were built: they keep theirs
    assert resources["gates_config"].thresholds().max_psi == 0.77


def test_a_resource_override_naming_no_setting_is_an_error():
    with pytest.raises(ValueError, match="max_pzi"):
        GatesResource(values_json='{"max_pzi": 0.3}').thresholds()
    with pytest.raises(ValueError, match="not valid JSON"):
        GatesResource(values_json="{max_psi: 0.3}").thresholds()


# Modules that touch the environment for a reason other than reading a setting.
ENV_WRITERS = {
    "serving/loopback.py": "whether this serving process keeps Ray on loopback (its own flag)",
    "serving/ray_env.py": "Ray's own variables for the serving process: one an operator already set wins",
    "serving/process.py": "passes its environment on to the serving process",
    "serving/main.py": "applies loopback's Ray variables before ray.init",
    "cli/dagster_instance.py": "DAGSTER_HOME is Dagster's own convention",
    "adapters/lake/extensions.py": "XDG_CACHE_HOME: where the per-user extension links go",
    "cli/logs.py": "MLFLOW_CONFIGURE_LOGGING, MLflow's own switch: its terminal handler stays off (quiet by default)",
    "cluster/nodes.py": "passes its environment on to `ray start` on each node; Ray's own RAY_AUTH_MODE",
    "serving/replica.py": "its node's HIT_INGRESS_SECRET, as `ray start` got it: no secret travels in a Ray runtime env",
}


def test_no_module_reads_the_environment_on_its_own():
    package = Path(hit_platform.__file__).parent
    readers = set()
    for path in package.rglob("*.py"):
        rel = str(path.relative_to(package))
        if rel.startswith(("settings/", "generator/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                readers.add(rel)
    assert readers <= set(ENV_WRITERS), sorted(readers - set(ENV_WRITERS))
