"""Issue 27, holes 8 and 10: nothing a landing file holds is trusted, against a real temp DuckLake. A small
.csv.gz that inflates past its bound, and a disk that refuses the inflated copy, each reject the file once
with the reason in raw.landed_files (no retry on every run), store nothing and leave no copy behind. A
rejection's reason says what and where, never the file's content (its header line, a bad line)."""

from __future__ import annotations

import gzip
import re
import resource
import signal
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.ingest import ingest_file, ingest_landing
from hit_platform.settings import Settings
from hit_platform.steps.ingest import ingest_report, landed
from hit_platform.steps.ingest.staging import GUNZIPPED
from hit_platform_tests.steps.test_ingest import HEADER, row, table_rows, write_csv

MiB = 1 << 20


def bomb(path: Path, inflated: int) -> Path:
    """A .csv.gz of the dump's header and one good row, then `inflated` bytes of NULs: about 1/1000 of that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with path.open("wb") as f:
        f.write(z.compress(f"{HEADER}\n{row()}\n".encode()))
        block = b"\0" * MiB
        for _ in range(inflated // MiB):
            f.write(z.compress(block))
        f.write(z.flush())
    return path


def spill(settings: Settings) -> Path:
    return settings.warehouse / "duckdb_tmp"


def used(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.exists() else 0


@contextmanager
def spill_watch(folder: Path):
    """The spill folder's disk use before, at its highest while watched (sampled every 5 ms), and after."""
    seen = {"before": used(folder), "peak": used(folder)}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                seen["peak"] = max(seen["peak"], used(folder))
            except FileNotFoundError:  # a copy deleted while it was looked at
                pass
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join()
        seen["after"] = used(folder)


def landed_row(lake: Lake, name: str) -> tuple:
    with lake.connection(read_only=True) as con:
        return con.execute("SELECT status, rows_read, rows_raw, reason FROM raw.landed_files WHERE file_name = ?",
                           [name]).fetchall()[0]


def test_a_gzip_bomb_is_rejected_at_its_bound_and_leaves_nothing_behind(lake: Lake, settings):
    """The drill: 256 MiB of inflated content in a ~260 KB .csv.gz. Each inflate call was bounded, their
    total was not: the whole 256 MiB was written to the spill folder the lake and the journal share."""
    ingest_file(lake, write_csv(settings.landing_dir / "good.csv", [row()]))
    before = table_rows(lake, "raw.chart_rows")
    path = bomb(settings.landing_dir / "bomb.csv.gz", 256 * MiB)
    with spill_watch(spill(settings)) as disk:
        result = ingest_file(lake, path)
    status, rows_read, rows_raw, reason = landed_row(lake, "bomb.csv.gz")
    print(f"\ngzip bomb: {path.stat().st_size:,} bytes inflating to {256 * MiB:,}: {result.status}; spill folder "
          f"{disk['before']:,} bytes before, {disk['peak']:,} at its peak, {disk['after']:,} after; "
          f"raw.landed_files: ({status!r}, {rows_read}, {rows_raw}, {reason!r})")
    assert (result.status, status, rows_read, rows_raw) == ("rejected", "rejected", 0, 0), reason
    assert reason.startswith("inflates past ") and "HIT_INGEST_MAX_INFLATION_RATIO=100" in reason, reason
    assert disk["peak"] <= 100 * path.stat().st_size + MiB, disk  # nothing written past the bound
    assert disk["after"] == disk["before"] and not list(spill(settings).glob(f"{GUNZIPPED}*"))
    assert table_rows(lake, "raw.chart_rows") == before  # nothing of it stored
    assert ingest_file(lake, path).status == "already_landed"  # judged once, not again on every run


def test_the_inflate_bound_is_a_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("HIT_INGEST_MAX_INFLATED_BYTES", "4096")
    settings = Settings(warehouse=tmp_path / "warehouse")
    path = settings.landing_dir / "day.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(("\n".join([HEADER] + [row(spotify_id=f"s{i}", daily_rank=str(i + 1))
                                                          for i in range(40)]) + "\n").encode()))
    result = ingest_file(Lake(settings), path)
    assert result.status == "rejected" and result.reason == "inflates past 4,096 bytes (HIT_INGEST_MAX_INFLATED_BYTES)"


@contextmanager
def file_size_limit(max_bytes: int):
    """This process may write no file past `max_bytes` (RLIMIT_FSIZE): the kernel refuses the write (EFBIG),
    as a full disk refuses one (ENOSPC). SIGXFSZ is ignored, so the write fails instead of the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_disk_that_refuses_the_inflated_copy_rejects_the_file_once(tmp_path):
    """An OSError while staging escaped ingest: no raw.landed_files row, so every build took the file again."""
    settings = Settings(warehouse=tmp_path / "warehouse", ingest={"max_inflation_ratio": 10_000})
    lake = Lake(settings)
    ingest_file(lake, write_csv(settings.landing_dir / "good.csv", [row()]))
    before = table_rows(lake, "raw.chart_rows")
    path = bomb(settings.landing_dir / "big.csv.gz", 48 * MiB)  # within its bounds; past what the disk takes
    with file_size_limit(16 * MiB):
        [result] = ingest_landing(lake, [path])
    status, rows_read, _, reason = landed_row(lake, "big.csv.gz")
    assert (result.status, status, rows_read) == ("rejected", "rejected", 0), reason
    assert reason.startswith(f"could not be inflated into {spill(settings)}: [Errno 27] File too large"), reason
    assert not list(spill(settings).glob(f"{GUNZIPPED}*"))  # the partial copy is deleted
    assert table_rows(lake, "raw.chart_rows") == before
    assert ingest_file(lake, path).status == "already_landed"


MARKUP = "<img src=x onerror=alert(1)>|[link](http://example.com)"


@pytest.mark.parametrize("case", ["header", "line"])
def test_a_rejection_says_what_and_where_never_the_files_content(lake: Lake, settings, case):
    """The header line went into raw.landed_files and the UI as it was (every unexpected column name in full);
    DuckDB's reason for a bad line quoted the line ("Original Line: ...")."""
    if case == "header":  # a column renamed to a long name with markup, another to one with a newline
        header = HEADER.replace("danceability", MARKUP + "X" * 5000).replace("energy", '"en\nergy"')
        path = write_csv(settings.landing_dir / "header.csv", [row()], header=header)
    else:  # line 21,002 (past DuckDB's sniffing sample) has a 26th field holding a secret
        path = write_csv(settings.landing_dir / "line.csv", [row()] * 21_000 + [row() + ",SECRET-FIELD-CONTENT"])
    result = ingest_file(lake, path)
    _, _, _, reason = landed_row(lake, path.name)
    assert result.status == "rejected" and reason == result.reason
    assert "\n" not in reason and len(reason) <= 400, reason
    if case == "header":
        assert reason.startswith("missing column(s) danceability, energy; unexpected column(s) '<img"), reason
        assert "X" * 100 not in reason and "'en\\nergy'" in reason, reason
    else:
        assert reason == "unreadable csv file: CSV error on line 21002: Expected Number of Columns: 25 Found: 26"
        assert "SECRET" not in reason
    with lake.connection(read_only=True) as con:
        markdown = ingest_report([result], landed(con)).files_markdown  # the Dagster UI's files table
    line = markdown.splitlines()[2]
    assert len(re.split(r"(?<!\\)\|", line)) == 8, line  # six cells: no pipe of the reason splits one
    assert not re.search(r"(?<!\\)[<>\[\]()]", line.split(" | ", 5)[5]), line  # markup escaped, never rendered


def test_a_landing_file_is_a_plain_file_directly_in_landing(settings, tmp_path):
    """Issue 27, hole 10: a run's `files` took absolute and '../' paths (a file from outside landing/ was
    ingested). Names that are paths, links leading out, folders and hidden files are refused in one line;
    the folder's listing (the sensor's, a run's by default) leaves out the same."""
    from hit_platform.steps.ingest import landing_file, landing_files

    landing = settings.landing_dir
    good = write_csv(landing / "day.csv", [row()])
    outside = write_csv(tmp_path / "outside" / "secret.csv", [row()])
    (landing / "out.csv").symlink_to(outside)
    (landing / "alias.csv").symlink_to(good)  # a link to a file of landing/ is that file
    (landing / "folder.csv").mkdir()
    (landing / "sub").mkdir()
    write_csv(landing / "sub" / "nested.csv", [row()])
    (landing / "nested.csv").symlink_to(landing / "sub" / "nested.csv")
    write_csv(landing / ".partial.csv", [row()])
    refused = {name: "a path, or '..'" for name in (str(outside), "../outside/secret.csv", "sub/nested.csv",
                                                     "..", "day.csv/", "")}
    refused |= {"out.csv": "a link that leads outside", "nested.csv": "a link that leads outside",
                "folder.csv": "not a plain file", ".partial.csv": "hidden", "missing.csv": "not in the landing",
                "notes.txt": "not a landing file"}
    for name, why in refused.items():
        with pytest.raises(ValueError) as info:
            landing_file(landing, name)
        message = str(info.value)
        assert why in message and "\n" not in message and len(message) < 300, (name, message)
    assert landing_file(landing, "day.csv") == good and landing_file(landing, "alias.csv") == landing / "alias.csv"
    assert [p.name for p in landing_files(landing)] == ["alias.csv", "day.csv"]
