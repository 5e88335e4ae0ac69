"""The challenger against the champion on the same live songs: what `ml/shadow_evaluation` and its
`shadow_gate` judge.

Every pair is one song the champion answered (`ops.inference_log`) and the challenger scored off the
response path (`ops.shadow_log`), joined on (request_id, item). Agreement needs no labels: per
country the mean |challenger - champion| probability, the PSI of the challenger's probabilities
against the champion's (in tenths of probability, see PSI_GRIDS), and how often the country's place in the top 5 agrees; per song the share
of the champion's top-5 countries the challenger also ranks top 5. Once labels arrive for enough of
the shadowed songs (those outside the train split), both models' ROC AUC on those very songs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import _q
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.drift import psi
from hit_platform.domain.models import evaluate
from hit_platform.settings import ShadowSettings
from hit_platform.steps.performance_estimates import served_labels

TOP = 5
# PSI of probabilities in tenths of [0, 1], the smaller of two grids offset by half a tenth. Quantile
# bins of a country whose probabilities sit in a narrow peak are a few millionths wide, and a single
# grid has an edge through some peak (a country answered ~0.0999 by one model and ~0.1002 by the
# other): a harmless shift would read as a huge PSI. A shift under 0.05 crosses at most one grid's edge.
PSI_GRIDS = (np.linspace(0.0, 1.0, 11), np.concatenate([[0.0], np.linspace(0.05, 0.95, 10), [1.0]]))


def prediction_psi(champion: np.ndarray, challenger: np.ndarray) -> float:
    return min(psi(champion, challenger, edges=grid) for grid in PSI_GRIDS)


@dataclass
class ShadowComparison:
    champion_version: str
    challenger_version: str
    songs: int = 0
    requests: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    mean_abs_diff: dict[str, float] = field(default_factory=dict)
    prediction_psi: dict[str, float] = field(default_factory=dict)
    top5_agreement: dict[str, float] = field(default_factory=dict)  # share of songs where the country's top-5 place agrees
    top5_overlap: float = float("nan")  # mean share of the champion's top 5 also in the challenger's
    labelled_songs: int = 0
    champion_roc_auc: float | None = None
    challenger_roc_auc: float | None = None

    def judge(self, t: ShadowSettings) -> tuple[bool, list[str]]:
        """(passed, the reasons it did not): enough songs, agreement within the thresholds, and, once enough
        shadowed songs have labels, no loss of ROC AUC beyond the tolerance."""
        pair = f"challenger {self.challenger_version} vs champion {self.champion_version}"
        if self.songs < t.min_requests:
            return False, [f"{pair}: {self.songs} shadowed songs, fewer than HIT_SHADOW_MIN_REQUESTS="
                           f"{t.min_requests}; waiting for live traffic"]
        reasons = []
        worst = max(self.mean_abs_diff, key=self.mean_abs_diff.get)
        if self.mean_abs_diff[worst] > t.max_mean_abs_diff:
            reasons.append(f"mean |difference| in {worst} is {self.mean_abs_diff[worst]:.3f} > "
                           f"HIT_SHADOW_MAX_MEAN_ABS_DIFF={t.max_mean_abs_diff:g}")
        if self.top5_overlap < t.min_top5_overlap:
            reasons.append(f"top-5 overlap {self.top5_overlap:.3f} < HIT_SHADOW_MIN_TOP5_OVERLAP={t.min_top5_overlap:g}")
        worst = max(self.prediction_psi, key=self.prediction_psi.get)
        if self.prediction_psi[worst] > t.max_prediction_psi:
            reasons.append(f"prediction PSI in {worst} is {self.prediction_psi[worst]:.3f} > "
                           f"HIT_SHADOW_MAX_PREDICTION_PSI={t.max_prediction_psi:g}")
        if self.labelled_songs >= t.min_labelled_songs and self.champion_roc_auc is not None:
            drop = self.champion_roc_auc - self.challenger_roc_auc
            if drop > t.max_auc_drop:
                reasons.append(f"on {self.labelled_songs} labelled shadowed songs the challenger's mean ROC AUC "
                               f"{self.challenger_roc_auc:.4f} is {drop:.4f} below the champion's "
                               f"{self.champion_roc_auc:.4f} (HIT_SHADOW_MAX_AUC_DROP={t.max_auc_drop:g})")
        return not reasons, [f"{pair}: {r}" for r in reasons]

    def summary(self, t: ShadowSettings) -> str:
        passed, reasons = self.judge(t)
        if passed:
            labels = (f"; on {self.labelled_songs} labelled songs mean ROC AUC {self.challenger_roc_auc:.4f} vs "
                      f"{self.champion_roc_auc:.4f}" if self.champion_roc_auc is not None else "")
            return (f"challenger {self.challenger_version} agrees with champion {self.champion_version} on "
                    f"{self.songs} shadowed songs: worst mean |difference| {max(self.mean_abs_diff.values()):.3f}, "
                    f"top-5 overlap {self.top5_overlap:.3f}, worst PSI {max(self.prediction_psi.values()):.3f}"
                    f"{labels}: promote")
        return "; ".join(reasons)

    def metadata(self) -> dict:
        def worst(d: dict, n: int = 5, reverse: bool = True) -> dict:
            return {c: round(v, 4) for c, v in sorted(d.items(), key=lambda kv: kv[1], reverse=reverse)[:n]}

        out = {"champion_version": self.champion_version, "challenger_version": self.challenger_version,
               "shadowed_songs": self.songs, "shadowed_requests": self.requests,
               "first_shadowed_at": str(self.first_at), "last_shadowed_at": str(self.last_at),
               "labelled_songs": self.labelled_songs}
        if self.songs:
            out.update({"max_mean_abs_diff": max(self.mean_abs_diff.values()),
                        "mean_abs_diff": float(np.mean(list(self.mean_abs_diff.values()))),
                        "top5_overlap": self.top5_overlap, "max_prediction_psi": max(self.prediction_psi.values()),
                        "min_top5_agreement": min(self.top5_agreement.values()),
                        "worst_mean_abs_diff": worst(self.mean_abs_diff), "worst_prediction_psi": worst(self.prediction_psi),
                        "worst_top5_agreement": worst(self.top5_agreement, reverse=False)})
        if self.champion_roc_auc is not None:
            out.update({"champion_mean_roc_auc": self.champion_roc_auc,
                        "challenger_mean_roc_auc": self.challenger_roc_auc})
        return out


def _top(P: np.ndarray) -> np.ndarray:
    """(n, 72) booleans: each song's TOP most likely countries."""
    idx = np.argpartition(-P, TOP - 1, axis=1)[:, :TOP]
    mask = np.zeros(P.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def latest_pair(lake: Lake) -> tuple[str, str] | None:
    """(champion, challenger) of the newest shadow score, or None."""
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:  # no lake yet
        return None
    with con:
        if not lake.table_exists(con, "ops", "shadow_log"):
            return None
        row = con.execute("SELECT champion_model_version, shadow_model_version FROM ops.shadow_log "
                          "ORDER BY received_at DESC LIMIT 1").fetchall()
    return tuple(row[0]) if row else None


def shadowed_songs(lake: Lake, champion: str, challenger: str) -> int:
    """How many songs the challenger has scored beside this champion (0 without a shadow log)."""
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:  # no lake yet
        return 0
    with con:
        if not lake.table_exists(con, "ops", "shadow_log"):
            return 0
        return con.execute("SELECT count(*) FROM ops.shadow_log WHERE champion_model_version = ? "
                           "AND shadow_model_version = ?", [champion, challenger]).fetchall()[0][0]


def compare(lake: Lake, champion: str, challenger: str, *, min_labelled: int = 1) -> ShadowComparison:
    """The comparison of the two versions on every song the challenger shadowed beside this champion."""
    out = ShadowComparison(str(champion), str(challenger))
    cols = ", ".join(f"l.probabilities.{_q(c)}, s.probabilities.{_q(c)}" for c in COUNTRIES)
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:  # no lake yet
        return out
    with con:
        if not (lake.table_exists(con, "ops", "shadow_log") and lake.table_exists(con, "ops", "inference_log")):
            return out
        rows = con.execute(f"""
            SELECT s.request_id, s.spotify_id, s.received_at, {cols}
            FROM ops.shadow_log s JOIN ops.inference_log l USING (request_id, item)
            WHERE s.champion_model_version = ? AND s.shadow_model_version = ? AND l.status = 200
              AND l.model_version = s.champion_model_version
            ORDER BY s.received_at, s.request_id, s.item""", [out.champion_version, out.challenger_version]
                           ).fetchnumpy()
        if len(rows["request_id"]) == 0:
            return out
        both = np.column_stack([np.asarray(rows[k], dtype=np.float64) for k in list(rows)[3:]])
        A, B = both[:, 0::2], both[:, 1::2]  # champion, challenger: (n, 72) each
        ids = np.asarray(rows["spotify_id"], dtype=object)
        out.songs, out.requests = len(A), len(set(rows["request_id"]))
        out.first_at, out.last_at = rows["received_at"][0], rows["received_at"][-1]
        diff = np.abs(B - A).mean(axis=0)
        top_a, top_b = _top(A), _top(B)
        agree = (top_a == top_b).mean(axis=0)
        out.mean_abs_diff = {c: float(d) for c, d in zip(COUNTRIES, diff)}
        out.top5_agreement = {c: float(a) for c, a in zip(COUNTRIES, agree)}
        out.prediction_psi = {c: prediction_psi(A[:, j], B[:, j]) for j, c in enumerate(COUNTRIES)}
        out.top5_overlap = float((top_a & top_b).sum(axis=1).mean() / TOP)
        # labels: one pair per song (its first shadowed answer), songs outside the train split
        has_id = np.array([i is not None for i in ids])
        _, first = np.unique(ids[has_id], return_index=True)
        keep = np.flatnonzero(has_id)[first]
        if len(keep) and lake.table_exists(con, "core", "song_labels"):
            labels = served_labels(con, lake, list(ids[keep]))
            known = keep[np.isin(ids[keep], labels.index.to_numpy())]
            out.labelled_songs = len(known)
            if len(known) >= max(2, min_labelled):
                Y = labels.loc[ids[known], list(COUNTRIES)].fillna(False).to_numpy(bool)
                out.champion_roc_auc = float(evaluate(Y, A[known])["mean_roc_auc"])
                out.challenger_roc_auc = float(evaluate(Y, B[known])["mean_roc_auc"])
    return out
