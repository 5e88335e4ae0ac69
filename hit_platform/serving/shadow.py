"""Shadow scoring: the challenger scores what the champion answered, where the journal is committed.

Every answered request is journaled with its feature rows before its answer
leaves (see inference_log). The committer that moves those records into the
lake (the serving process; each replica on a cluster) holds the challenger
too, and in each commit round scores every answered request it commits with
one model call, then commits those scores to `ops.shadow_log` in the same
transaction as the answers. So:

- a replica does nothing more per request with a challenger than without:
  the client's latency and bytes cannot change (measured in
  bench/bench_lifecycle.py; a scorer thread inside the replica cost 11% of
  its requests/s and 1.3x its p99 through the GIL);
- the scores are exactly as durable as the answers: they are derived from the
  same journal records, a dead replica's recovered answers included;
- a request is scored within one commit round (HIT_SERVE_LOG_COMMIT_SECONDS)
  of its answer; `latency_ms` of a shadow row is that delay.

A request answered by the challenger's own version (after a promotion) is not
scored; scores an older replica journaled itself (`Served.shadow_of`) are
committed as they are.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from hit_platform.domain.probabilities import answered
from hit_platform.serving.inference_log.schema import Served

if TYPE_CHECKING:
    from hit_platform.serving.predictor import Predictor


def to_shadow(e: Served, challenger_version: str) -> bool:
    """Whether the challenger should score this journaled request: answered with songs by another version."""
    return (e.shadow_of is None and e.status == 200 and e.X is not None and len(e.X) > 0
            and e.model_version != challenger_version)


def shadow_scores(challenger: Predictor, entries: list[Served]) -> list[Served]:
    """The challenger's scores of these answered requests (see `to_shadow`), one model call for all:
    each a `Served` with `shadow_of` = the version that answered, as ops.shadow_log rows."""
    chosen = [e for e in entries if to_shadow(e, challenger.version)]
    if not chosen:
        return []
    P = answered(challenger.predict(np.concatenate([e.X for e in chosen])))
    now = datetime.now(timezone.utc)
    out, at = [], 0
    for e in chosen:
        n = len(e.X)
        out.append(Served(e.request_id, e.received_at, e.endpoint, 200, (now - e.received_at).total_seconds() * 1e3,
                          challenger.version, None, e.X, P[at:at + n], e.extras, recovered_from=e.recovered_from,
                          shadow_of=e.model_version))
        at += n
    return out
