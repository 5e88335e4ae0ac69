"""Landing files -> `raw.chart_rows` and `quarantine.chart_rows`, in DuckDB SQL.

One landing file is one unit of work and one lake transaction:

1. its content hash is checked against the files already landed (a file landed
   twice, under any name, is ingested once);
2. DuckDB's own reader stages it in memory/spill (CSV as text, Parquet columns
   already of the lake's type as they are), keeping row order, so every row
   keeps its row number; a .gz is first inflated whole to a plain copy, which
   DuckDB reads on every core; a file that cannot be read whole (truncated
   gzip, missing or renamed column, empty) is rejected with its reason and
   nothing of it reaches the lake;
3. each row gets at most one reason, in a fixed order (missing required value,
   wrong type, out of range, unknown country, exact duplicate, key duplicate);
4. one transaction (`adapters.lake.ingest` runs it, and retries it whole) writes
   the good rows (typed) to `raw.chart_rows`, the bad ones (as text, with reason,
   column and value) to `quarantine.chart_rows`, and the file's record (rows read
   = raw + quarantined) to `raw.landed_files`.

Every ingest transaction also bumps the one row of `raw.ingest_sequence`, so two
writers ingesting at once always conflict, and the loser retries and then sees
the winner's file: no file is ever doubled, on SQLite or PostgreSQL catalogs.

The walk, one module a step: `landing` (which files, their hash), `staging` (2),
`rules` (3, as SQL generated from the one schema), `quarantine` (3's duplicates and
the rows 4 quarantines), `transaction` (1 and 4, as SQL on the connection it is given), `summary` (what
the lake holds afterwards).
"""

from hit_platform.steps.ingest.landing import LANDING_SUFFIXES, file_sha256, landing_file, landing_files
from hit_platform.steps.ingest.summary import IngestReport, Landed, ingest_report, lake_summary, landed
from hit_platform.steps.ingest.transaction import FileResult, Staged, stage, store_file

__all__ = ["LANDING_SUFFIXES", "FileResult", "IngestReport", "Landed", "Staged", "file_sha256", "ingest_report",
           "lake_summary", "landed", "landing_file", "landing_files", "stage", "store_file"]
