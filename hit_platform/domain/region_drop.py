"""Has a whole region lost ROC AUC? The delayed-label monitor's judgement of each region.

The mean over 72 countries hides a region: Latin America is 18 of them, so its countries must lose
about 0.2 of AUC before the 72-country mean moves 0.05. So each region (`countries.REGIONS`) is judged
on its own: the mean, over its countries, of (test ROC AUC - ROC AUC on the labels revealed since).

That drop is noisy: a few hundred labelled songs give each country an AUC within a few hundredths, and
the test AUC was measured on a finite split too. Its standard error is the Hanley-McNeil (1982) one of
each AUC, from the positives and negatives it was measured on, the countries taken as independent. A
region is breached when its drop, down to the bottom of its one-sided `level` interval, is still more
than the threshold: a drop that sampling noise could make does not fire; a real one fires as soon as
enough labels have arrived to tell it apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from hit_platform.domain.countries import REGIONS


def hanley_mcneil_se(auc: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Standard error of ROC AUCs measured on `positives` hits and `negatives` non-hits (NaN without both)."""
    a = np.asarray(auc, dtype=np.float64)
    p, n = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (a * (1 - a) + (p - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (p * n)
    return np.where((p > 0) & (n > 0), np.sqrt(np.maximum(var, 0.0)), np.nan)


@dataclass(frozen=True)
class RegionDrop:
    """One region: its mean ROC AUC on the test split and on revealed labels, the drop, its interval's
    bottom, and whether that bottom is past the threshold."""

    region: str
    countries: int  # judged: countries with a test AUC and both classes among the revealed labels
    test_auc: float
    revealed_auc: float
    drop: float
    drop_lower: float
    breached: bool

    def describe(self) -> str:
        return (f"region {self.region}: mean ROC AUC {self.revealed_auc:.4f} on revealed labels, {self.drop:+.4f} "
                f"below its test {self.test_auc:.4f} (at least {self.drop_lower:+.4f}; {self.countries} countries)")


def region_drops(test_auc: dict[str, float], revealed_auc: dict[str, float], positives: dict[str, int],
                 songs: int, test_songs: int | None, max_drop: float, level: float = 0.9) -> list[RegionDrop]:
    """Each region's drop of mean ROC AUC from the test split to the revealed labels (see the module).

    test_auc: per-country test ROC AUC the model was promoted with; revealed_auc and positives: per
    country on the `songs` songs with revealed labels; test_songs: the test split's size (its positives
    are taken at the revealed share; None: the test AUC is taken as exact)."""
    z = norm.ppf(level)
    out = []
    for region, members in REGIONS.items():
        t = np.array([test_auc.get(c, np.nan) for c in members], dtype=np.float64)
        r = np.array([revealed_auc.get(c, np.nan) for c in members], dtype=np.float64)
        pos = np.array([positives.get(c, 0) for c in members], dtype=np.float64)
        ok = np.isfinite(t) & np.isfinite(r)
        if not ok.any():
            continue
        t, r, pos = t[ok], r[ok], pos[ok]
        var = hanley_mcneil_se(r, pos, songs - pos) ** 2
        if test_songs:
            test_pos = np.maximum(np.round(pos / songs * test_songs), 1)
            var = var + hanley_mcneil_se(t, test_pos, test_songs - test_pos) ** 2
        se = float(np.sqrt(np.nansum(var)) / len(t))
        drop = float(t.mean() - r.mean())
        lower = drop - z * se
        out.append(RegionDrop(region, int(ok.sum()), float(t.mean()), float(r.mean()), drop, lower,
                              bool(lower > max_drop)))
    return out

