"""DuckDB extensions loaded by path from their PyPI packages (`duckdb-extension-*`, pinned to the `duckdb`
version), and the files whose signature this process checked already (`Lake.connect`)."""

from __future__ import annotations

import importlib.util
import os
import random
import tempfile
from pathlib import Path

import duckdb

# Extensions whose DuckDB name (and so the `<name>_duckdb_cpp_init` entry point that
# LOAD derives from the file name) differs from their PyPI package's file name.
_ENTRYPOINT_NAME = {"postgres": "postgres_scanner"}
# The extension files (path, device, inode, size, mtime) this process's DuckDB verified the signature of. A
# new DuckDB instance checks a file's signature again on every LOAD: it hashes the whole file (ducklake and
# sqlite_scanner are 35 MB each, 0.27 s of CPU per connection, most of what opening one costs); a file
# verified once here and unchanged since is loaded without that check (`allow_unsigned_extensions`).
VERIFIED: set[tuple] = set()


def file_identity(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def extension_path(name: str) -> Path | None:
    """The `.duckdb_extension` file shipped by the `duckdb-extension-<name>` package."""
    package = "duckdb_extension_" + name.replace("-", "_")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
    path = base / f"{name}.duckdb_extension"
    return path if path.exists() else None


def _link_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hit_platform" / "duckdb_extensions" / f"v{duckdb.__version__}"


def loadable_extension_path(name: str) -> Path | None:
    """A path DuckDB can LOAD for extension `name` from its PyPI package.

    DuckDB finds an extension's entry point from the file name, and the
    `duckdb-extension-postgres` package ships `postgres.duckdb_extension` whose
    entry point is `postgres_scanner_duckdb_cpp_init`; such a file is loaded
    through a symlink with the right name in a per-user cache folder.
    """
    path = extension_path(name)
    wanted = _ENTRYPOINT_NAME.get(name)
    if path is None or wanted is None:
        return path
    for folder in (_link_dir(), Path(tempfile.gettempdir()) / f"hit_platform_ext_{os.getuid()}"
                   / f"v{duckdb.__version__}"):
        link = folder / f"{wanted}.duckdb_extension"
        try:
            if link.is_symlink() and os.readlink(link) == str(path):
                return link
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{wanted}.{os.getpid()}.{random.getrandbits(32):08x}"
            tmp.symlink_to(path)
            os.replace(tmp, link)  # atomic: concurrent processes agree on the same link
            return link
        except OSError:
            continue
    return None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    path = loadable_extension_path(name)
    if path is not None:
        con.execute(f"LOAD '{path}'")
    else:  # a machine with internet and no wheel: DuckDB's own repository
        con.execute(f"INSTALL {name}; LOAD {name}")
