"""The inference log: every request served, written to the lake table `ops.inference_log`.

One row per song predicted (the 14 model inputs exactly as the model saw
them, the identifiers the client sent, the 72 probabilities answered) plus
one row per refused request (its body and the error answered), each with the
request id, time, endpoint, status, latency and model version. Drift
monitors compare the feature columns with `ml.features` (same names, same
DOUBLE type); an audit finds a request by its id.

Logging never blocks or fails a request, and never loses one:
1. the request path appends to an in-memory buffer (`InferenceLogger.log`);
2. the replica's flusher thread writes the buffer every `flush_seconds` to a
   new Arrow IPC file in the journal (`<warehouse>/serving/journal/`):
   milliseconds, and no lake work inside the process that answers requests;
3. a `JournalCommitter` (in the serving process; in each replica when they
   run on a cluster) commits all waiting journal files to the lake in one
   retried transaction every `commit_seconds`, then deletes them. While the
   lake refuses (down, locked, misconfigured) the files stay and are retried,
   also after a restart.
Inserts skip request ids already in the table (an anti-join), so a file
committed twice (a crash between commit and delete) is never doubled.

The parts, one module each: `schema` (a served request as rows), `journal` (the Arrow IPC files),
`buffer` (the replica's in-memory buffer and its flusher), `committer` (journal files -> the lake).
The table itself is declared in `adapters/lake/tables.py`.
"""

from hit_platform.adapters.lake.tables import INFERENCE_LOG as TABLE
from hit_platform.serving.inference_log.buffer import InferenceLogger
from hit_platform.serving.inference_log.committer import JournalCommitter, insert
from hit_platform.serving.inference_log.journal import journal_files, read_journal, write_journal
from hit_platform.serving.inference_log.schema import Served, to_arrow, truncate_body

__all__ = ["TABLE", "InferenceLogger", "JournalCommitter", "Served", "insert", "journal_files", "read_journal",
           "to_arrow", "truncate_body", "write_journal"]
