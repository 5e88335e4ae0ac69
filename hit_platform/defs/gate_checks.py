"""How a quality gate becomes a Dagster asset check, and how a failing check becomes an alert.

A gate (`steps/gates.py`) runs on a read-only connection to the lake, in one read transaction (so every
query it makes sees one snapshot); its result becomes an `AssetCheckResult` with the lake snapshot it
judged. Before Dagster hears of it, the verdict is recorded in the lake (`ops.gate_verdicts`) with the
version of the table it judged: what `gate_policy` and every read at a snapshot ask
(`adapters/lake/verdicts.py`). Such a check says so in its metadata (`LAKE_GATE`). Blocking checks stop
what is built on their asset (`gate_policy.py`); freshness and drift warn instead. Every failure lands in
`ops.alerts`.
"""

from collections.abc import Callable

import dagster as dg

from hit_platform.adapters.alerts import raise_alert
from hit_platform.adapters.lake import verdicts
from hit_platform.defs.gate_policy import LAKE_GATE, is_lake_gate, lake_table
from hit_platform.defs.resources import LakeResource

Ctx = dg.AssetCheckExecutionContext


def _plain(metadata) -> dict:
    """The numbers and short strings of a check's metadata (tables stay in the UI)."""
    out = {}
    for k, v in (metadata or {}).items():
        v = v.value if isinstance(v, dg.MetadataValue) else v
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) < 300):
            out[k] = v
    return out


def alert_on_failure(context: Ctx, lake: LakeResource, result: dg.AssetCheckResult,
                     kind: str = "gate_failure") -> dg.AssetCheckResult:
    """A failing check lands in ops.alerts (what, which check, which run), then is returned as is."""
    if not result.passed:
        key = context.check_specs[0].key if context.check_specs else None
        where = key.to_user_string() if key else context.op_def.name
        warn = result.severity == dg.AssetCheckSeverity.WARN
        raise_alert(lake.lake(), kind=kind, severity="warning" if warn else "error", where=where,
                    what=result.description or "check failed", run_id=context.run.run_id,
                    alert_id=f"{kind}:{where}:{context.run.run_id}",
                    details=_plain(result.metadata))
    return result


def run_gate(context: Ctx, lake: LakeResource, gate: Callable, *args, warn: bool = False,
             kind: str = "gate_failure") -> dg.AssetCheckResult:
    """`gate(con, *args)` on one snapshot of the lake, its verdict recorded in ops.gate_verdicts with the
    version of the asset's table it judged, then returned to Dagster (and a failure alerted)."""
    [spec] = context.check_specs
    if not is_lake_gate(spec):
        raise TypeError(f"{spec.key.to_user_string()} runs a lake gate: declare it with metadata=LAKE_GATE "
                        f"({LAKE_GATE}), so the gate policy asks the lake for its verdicts")
    table, the_lake = lake_table(spec.asset_key), lake.lake()
    with the_lake.connection(read_only=True) as con:
        result, snapshot, version = verdicts.judged_on_one_snapshot(con, table, gate, *args)
    severity = dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR
    latest = context.instance.get_latest_materialization_event(spec.asset_key)
    judged = verdicts.GateVerdict(
        spec.name, spec.asset_key.to_user_string(), table, snapshot, version,
        latest.asset_materialization.tags.get("dagster/data_version") if latest else None,
        spec.blocking and not warn, result.passed, result.description, context.run.run_id)
    the_lake.write(lambda c: verdicts.record(c, judged), what="ops.gate_verdicts")
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=result.passed, description=result.description, severity=severity,
        metadata={**result.metadata, "lake_snapshot_id": snapshot, "lake_table_version": version}), kind)
