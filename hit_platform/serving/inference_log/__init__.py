"""The inference log: every request served, written to the lake table `ops.inference_log`.

One row per song predicted (the 14 model inputs exactly as the model saw
them, the identifiers the client sent, the 72 probabilities answered) plus
one row per refused request (its body and the error answered), each with the
request id, time, endpoint, status, latency and model version. Drift
monitors compare the feature columns with `ml.features` (same names, same
DOUBLE type); an audit finds a request by its id.

Logging never blocks a request, and never loses an answered one:
1. before a replica sends an answer, it `write`s the request's record to its
   open journal segment (`<warehouse>/serving/journal/*.open`): once written,
   it outlives the process, whatever kills it (`journal`);
2. every `flush_seconds` the replica seals the segment: fsync, rename to
   `.seg` (a power cut now spares it too);
3. a `JournalCommitter` (in the serving process; in each replica when they
   run on a cluster) commits the sealed segments, and the open segments of
   replicas that died (marked `recovered_from`, with an `ops.alerts` row),
   to the lake in one retried transaction every `commit_seconds`, then
   deletes them. While the lake refuses (down, locked, misconfigured) the
   files stay and are retried, also after a restart;
4. if the journal cannot be written (disk full, read-only) the records wait
   in a bounded memory buffer; past `buffer_rows` the replica answers 503
   with Retry-After rather than answer what it cannot log.
Inserts skip request ids already in the table (an anti-join), so a segment
committed twice (a crash between commit and delete), or a request retried on
a second replica after the first died, is never doubled.

The parts, one module each: `schema` (a served request as rows), `journal` (the segment files),
`logger` (the replica's side: write before answer, the bounded buffer, the roller), `committer` (journal files ->
the lake). The logger knows nothing of the committer: a replica that commits its own journal hands
`committer.commit` to the logger as the hook it calls after each roll.
The table itself is declared in `adapters/lake/tables.py`.
"""

from hit_platform.adapters.lake.tables import INFERENCE_LOG as TABLE
from hit_platform.serving.inference_log.committer import JournalCommitter, insert
from hit_platform.serving.inference_log.journal import SegmentWriter, encode, journal_files, read_segment
from hit_platform.serving.inference_log.logger import InferenceLogger
from hit_platform.serving.inference_log.schema import Served, to_arrow, truncate_body

__all__ = ["TABLE", "InferenceLogger", "JournalCommitter", "SegmentWriter", "Served", "encode", "insert",
           "journal_files", "read_segment", "to_arrow", "truncate_body"]
