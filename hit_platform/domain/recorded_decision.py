"""A promotion decides on what the platform computed, never on what anyone can report.

Dagster lets anyone record a materialization by hand (the UI's "Report materialization", GraphQL,
`report_runless_asset_event`) with whatever metadata they type, and a check or an asset that reads the
latest metadata would take it for a decision. So the promotions (`ml/champion_model`,
`ml/shadow_promotion`) and their gates re-read the decision from the lake row that the run which
materialized the evaluation wrote, and promote only a registered version that no run abandoned.
Pure: the caller looks up the run, the row and the version's tags and hands them in.
"""

from __future__ import annotations


def unrecorded(asset: str, table: str, run_id: str | None, run_known: bool, row: dict | None,
               claimed: dict, keys: tuple[str, ...]) -> str | None:
    """Why the latest materialization of `asset` (made by Dagster run `run_id`, "" for a runless one; its
    metadata `claimed`) carries no decision the platform computed, or None when it does: the run exists, it
    wrote a row to `table` (`row`, its newest) and the row agrees with the metadata on `keys`."""
    again = f"materialize {asset} to judge again"
    if not run_id:
        return (f"the latest {asset} was reported by hand (a runless materialization: the UI's 'Report "
                f"materialization', GraphQL or the API), not computed by a run: it decides nothing; {again}")
    if not run_known:
        return (f"the latest {asset} names Dagster run {run_id}, which this instance never ran: it decides "
                f"nothing; {again}")
    if row is None:
        return f"Dagster run {run_id} wrote no row to {table}: its {asset} decides nothing; {again}"
    differ = [f"{k} {claimed[k]!r} where the run wrote {row.get(k)!r}" for k in keys
              if k in claimed and str(claimed[k]) != str(row.get(k))]
    if differ:
        return f"the latest {asset}'s metadata says {', '.join(differ)} in {table}: it decides nothing; {again}"
    return None


def unpromotable(version: str, model_name: str, tags: dict | None, abandoned_tag: str) -> str | None:
    """Why registered version `version` can never become champion or challenger (`tags`: its registry tags,
    None when it is not registered), or None."""
    if tags is None:
        return f"version {version} of {model_name!r} is not in the registry"
    if abandoned_tag in tags:
        return f"version {version} of {model_name!r} is tagged {abandoned_tag}: {tags[abandoned_tag]}"
    return None
