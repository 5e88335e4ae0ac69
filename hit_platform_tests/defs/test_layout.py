"""The layout holds: an asset's key prefix, Dagster group and module name the same thing, checks
live with their asset, the four layers import only downward, and the Definitions load as Dagster
loads them."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

import hit_platform
import hit_platform.defs
from hit_platform.definitions import defs

PACKAGE = Path(hit_platform.__file__).parent


def _defs_modules():
    for info in pkgutil.walk_packages(hit_platform.defs.__path__, "hit_platform.defs."):
        yield importlib.import_module(info.name)


def _defined_in(fn) -> str:
    return getattr(fn, "decorated_fn", fn).__module__


def _home(key: dg.AssetKey) -> str:
    return f"hit_platform.defs.{key.path[0]}"


def test_every_asset_lives_in_the_module_of_its_key_prefix_and_group():
    where: dict[dg.AssetKey, str] = {}
    for module in _defs_modules():
        for asset in dg.load_assets_from_modules([module]):
            if isinstance(asset, dg.SourceAsset):  # the landing folder, observed
                fn, specs = asset.observe_fn, [(asset.key, asset.group_name)]
            else:
                fn, specs = asset.node_def.compute_fn, [(s.key, s.group_name) for s in asset.specs]
            if _defined_in(fn) != module.__name__:
                continue  # imported here, defined elsewhere
            first = specs[0][0]
            for key, group in specs:
                where[key] = module.__name__
                assert group == key.path[0], (key, group)
                # a multi-asset that writes two schemas lives with the first
                assert module.__name__ == _home(first) or module.__name__.startswith(_home(first) + "."), \
                    (key, module.__name__)
    assert set(where) == set(defs.resolve_asset_graph().get_all_asset_keys())


def test_every_check_lives_with_its_asset():
    found = set()
    for module in _defs_modules():
        for checks in dg.load_asset_checks_from_modules([module]):
            if _defined_in(checks.node_def.compute_fn) != module.__name__:
                continue
            for key in checks.check_keys:
                found.add(key)
                assert module.__name__ == _home(key.asset_key) or \
                    module.__name__.startswith(_home(key.asset_key) + "."), (key, module.__name__)
    assert found == set(defs.resolve_asset_graph().asset_check_keys)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def _imports(path: Path) -> set[str]:
    """The modules a file imports (`from package import module` names the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            modules = [n for n in names if n.startswith("hit_platform.") and _is_module(n)]
            out |= set(modules) if modules else {node.module}
    return out


# What each layer may import from the package (besides itself) and from outside it.
LAYERS = {
    # the domain is given its thresholds as plain values; it never reads the settings
    "domain": ({"hit_platform.domain"}, {"dagster", "mlflow", "ray", "duckdb"}),
    # the settings need the column names (plain Python) and convert a section to the promotion rules' values
    "settings": ({"hit_platform.settings", "hit_platform.domain.columns", "hit_platform.domain.promotion"},
                 {"dagster", "mlflow", "ray", "duckdb", "pandas", "pandera"}),
    "steps": ({"hit_platform.domain", "hit_platform.steps", "hit_platform.adapters.lake", "hit_platform.settings"},
              {"dagster", "mlflow", "ray"}),
    "adapters": ({"hit_platform.domain", "hit_platform.steps", "hit_platform.adapters", "hit_platform.settings"},
                 {"dagster", "ray"}),
    # private_apis: the pinned Serve code version and the replicas' loopback gRPC (no Dagster is loaded)
    "serving": ({"hit_platform.domain", "hit_platform.adapters", "hit_platform.serving", "hit_platform.settings",
                 "hit_platform.private_apis"},
                {"dagster"}),
    "generator": ({"hit_platform.domain", "hit_platform.generator"}, {"dagster", "mlflow", "ray", "duckdb"}),
}


def test_layers_import_only_downward():
    wrong = []
    for layer, (allowed, banned) in LAYERS.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in banned:
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
                elif top == "hit_platform" and not any(name == a or name.startswith(a + ".") for a in allowed):
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_domain_never_reads_the_settings():
    readers = [f"{path.relative_to(PACKAGE)} imports {name}" for path in sorted((PACKAGE / "domain").rglob("*.py"))
               for name in _imports(path) if name == "hit_platform.settings" or name.startswith("hit_platform.settings.")]
    assert not readers, "\n".join(readers)


MAX_LINES = 400  # a longer module holds more than one idea


def test_no_module_is_longer_than_one_idea():
    long = {str(path.relative_to(PACKAGE)): n for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_dagster_definitions_validate_loads_the_code_location():
    out = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
                          "-m", "hit_platform.definitions"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


# Test folders that have no package folder of the same name, and why.
TEST_ONLY = {"support": "helpers shared by the tests and bench/", "scale": "the scale profile, across the layers"}


def test_the_tests_mirror_the_package():
    tests = Path(__file__).resolve().parents[1]
    test_dirs = {p.relative_to(tests).as_posix() for p in tests.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    package_dirs = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
                    if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))}
    strays = {d for d in test_dirs if d.split("/")[0] not in TEST_ONLY and d not in package_dirs}
    assert not strays, f"test folders with no package folder of that name: {sorted(strays)}"
    layers = {"domain", "steps", "adapters", "defs", "serving", "generator", "cli"}
    assert layers <= test_dirs, sorted(layers - test_dirs)
