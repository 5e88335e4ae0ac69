"""Generated dumps shared by the generator tests (each is built once per session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pytest

from hit_platform.domain.schema import DUMP_COLUMNS
from hit_platform.generator import FAULT_KINDS, GeneratorConfig, generate

FORMATS = ("csv", "csv.gz", "parquet")
# Every kind at least twice, so some faults land in increments, some in the history.
ALL_FAULTS = {kind: 3 for kind in FAULT_KINDS} | {"out_of_range": 18, "wrong_types": 12, "missing_values": 5}


@dataclass
class Dump:
    manifest: dict
    landing: Path
    truth: Path
    fmt: str
    _con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @property
    def rows(self) -> str:
        """Name of an in-memory table with every data row, typed (loaded once)."""
        if self._con is None:
            self._con = duckdb.connect()
            # a release date at month or year precision ("2024-01", "1975") as the first day of its period
            d = "album_release_date"
            first_day = (f"CASE length({d}) WHEN 4 THEN ({d} || '-01-01')::DATE WHEN 7 THEN ({d} || '-01')::DATE "
                         f"ELSE {d}::DATE END")
            self._con.execute(f"CREATE TABLE dump_rows AS SELECT * REPLACE ({first_day} AS {d}) "
                              f"FROM {self.typed_source()}")
        return "dump_rows"

    def data_paths(self) -> list[Path]:
        """History + increments, in landing order (not the bad files)."""
        return [self.landing / f["name"] for f in self.manifest["files"] if f["kind"] in ("history", "increment")]

    def typed_source(self) -> str:
        """A DuckDB FROM-expression over all data files, with the schema's column types."""
        files = [str(p) for p in self.data_paths()]
        if self.fmt == "parquet":
            return f"read_parquet({files})"
        # release dates keep Spotify's precision ("1975"): text, not DATE
        types = {c.name: c.sql_type for c in DUMP_COLUMNS} | {"album_release_date": "VARCHAR"}
        return f"read_csv({files}, header=true, columns={types})"

    def text_source(self, path: Path) -> str:
        """One data file with every column as VARCHAR (how a loader sees raw values)."""
        if self.fmt == "parquet":
            cols = ", ".join(f"CAST({c.name} AS VARCHAR) AS {c.name}" for c in DUMP_COLUMNS)
            return f"(SELECT {cols} FROM read_parquet('{path}'))"
        return f"read_csv('{path}', header=true, all_varchar=true)"

    def text_all(self) -> str:
        """Every data file as text columns (files may differ in type: wrong_types in Parquet)."""
        return "(" + " UNION ALL ".join(f"SELECT * FROM {self.text_source(p)}" for p in self.data_paths()) + ")"

    def sql(self, query: str):
        """Run a query; it may use the `rows` table."""
        _ = self.rows
        return self._con.sql(query)


def build(root: Path, fmt: str, **kw) -> Dump:
    kw.setdefault("start_date", date(2024, 1, 1))
    config = GeneratorConfig(out_dir=root / "landing", truth_dir=root / "generator", fmt=fmt, **kw)
    manifest = generate(config)
    return Dump(manifest, root / "landing", root / "generator", fmt)


@pytest.fixture(scope="session", params=FORMATS)
def clean_dump(request, tmp_path_factory) -> Dump:
    """All 73 charts, 8 days, no faults: in each format."""
    root = tmp_path_factory.mktemp(f"clean_{request.param.replace('.', '_')}")
    return build(root, request.param, seed=11, songs=1500, history_days=6, increments=2)


@pytest.fixture(scope="session", params=("csv.gz", "parquet"))
def faulty_dump(request, tmp_path_factory) -> Dump:
    """Every fault kind, spread over a history and three increments."""
    root = tmp_path_factory.mktemp(f"faulty_{request.param.replace('.', '_')}")
    return build(root, request.param, seed=5, songs=3000, countries=30, history_days=40, increments=3,
                 faults=ALL_FAULTS)


@pytest.fixture(scope="session")
def calibration_dump(tmp_path_factory) -> Dump:
    """The default size (20k songs, 90 + 7 days): enough songs to check the oracle's calibration."""
    root = tmp_path_factory.mktemp("calibration")
    return build(root, "parquet", seed=3, songs=20_000, history_days=90, increments=7)
