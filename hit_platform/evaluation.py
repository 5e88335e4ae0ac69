"""Judging a candidate on the test split: against the baseline, the champion and the oracle.

Pure functions (arrays in, numbers and a decision out); the Dagster assets in
`defs/evaluation.py` feed them and store what they return in `ml.evaluations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from hit_platform.countries import COUNTRIES
from hit_platform.quality import GateThresholds


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return ("promote: " if self.promote else "refuse: ") + "; ".join(self.reasons)


def oracle_matrix(path: Path, spotify_ids: np.ndarray) -> np.ndarray | None:
    """The generator's true probabilities for these songs, (n, 72) in COUNTRIES order; None when absent.

    Only evaluation reads the oracle: it says how far the model is from the best possible one.
    """
    if not path.exists():
        return None
    con = duckdb.connect()
    con.register("ids", pd.DataFrame({"spotify_id": spotify_ids, "i": np.arange(len(spotify_ids))}))
    pivot = ", ".join(f"max(probability) FILTER (WHERE country = '{c}') AS \"{c}\"" for c in COUNTRIES)
    df = con.execute(f"""
        SELECT ids.i, {pivot} FROM ids JOIN read_parquet(?) o USING (spotify_id)
        GROUP BY ids.i ORDER BY ids.i""", [str(path)]).df()
    con.close()
    if len(df) != len(spotify_ids) or df[list(COUNTRIES)].isna().any().any():
        raise ValueError(f"oracle {path} does not cover every test song and country "
                         f"({len(df)} of {len(spotify_ids)} songs found): was it written for another dump?")
    return df[list(COUNTRIES)].to_numpy(dtype=float)


def decide(candidate: dict, baseline: dict, champion: dict | None, t: GateThresholds) -> Decision:
    """Promote only when the candidate clearly beats the baseline and is not worse than the
    champion beyond the tolerances, overall and in every country."""
    reasons, ok = [], True
    gain = candidate["mean_roc_auc"] - baseline["mean_roc_auc"]
    if gain < t.min_auc_gain_over_baseline:
        ok = False
        reasons.append(f"mean AUC {candidate['mean_roc_auc']:.4f} beats the baseline's "
                       f"{baseline['mean_roc_auc']:.4f} by only {gain:+.4f} (need {t.min_auc_gain_over_baseline})")
    else:
        reasons.append(f"beats the baseline by {gain:+.4f} mean AUC")
    if champion is None:
        reasons.append("no champion yet")
        return Decision(ok, reasons)
    drop = champion["mean_roc_auc"] - candidate["mean_roc_auc"]
    if drop > t.max_auc_drop_vs_champion:
        ok = False
        reasons.append(f"mean AUC {candidate['mean_roc_auc']:.4f} is {drop:.4f} below the champion's "
                       f"{champion['mean_roc_auc']:.4f} (tolerance {t.max_auc_drop_vs_champion})")
    else:
        reasons.append(f"mean AUC {-drop:+.4f} vs the champion")
    loss_up = candidate["mean_log_loss"] - champion["mean_log_loss"]
    if loss_up > t.max_log_loss_increase_vs_champion:
        ok = False
        reasons.append(f"mean log loss {candidate['mean_log_loss']:.4f} is {loss_up:.4f} above the champion's "
                       f"(tolerance {t.max_log_loss_increase_vs_champion})")
    worst_country, worst_drop = worst_country_drop(candidate, champion)
    if worst_country is not None and worst_drop > t.max_country_auc_drop_vs_champion:
        ok = False
        reasons.append(f"AUC in {worst_country} is {worst_drop:.4f} below the champion's "
                       f"(tolerance {t.max_country_auc_drop_vs_champion} in any country)")
    return Decision(ok, reasons)


def worst_country_drop(candidate: dict, champion: dict) -> tuple[str | None, float]:
    drops = {c: champion["roc_auc"][c] - candidate["roc_auc"][c] for c in COUNTRIES
             if np.isfinite(champion["roc_auc"].get(c, np.nan)) and np.isfinite(candidate["roc_auc"].get(c, np.nan))}
    if not drops:
        return None, 0.0
    c = max(drops, key=drops.get)
    return c, float(drops[c])
