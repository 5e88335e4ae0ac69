"""Figures for MLflow runs and reports: per-country AUC bars, calibration curves (pooled and per
country), ROC curves, and time axes that span the data they show."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen: render to files

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from datetime import datetime, timedelta, timezone  # noqa: E402

from hit_platform.domain.countries import COUNTRIES, REGIONS  # noqa: E402
from hit_platform.domain.models.calibration import (  # noqa: E402
    DEFAULT_BINS, expected_calibration_error, reliability)


def auc_bars(per_country_auc: dict[str, float], title: str, reference: dict[str, float] | None = None):
    fig, ax = plt.subplots(figsize=(14, 4))
    xs = np.arange(len(COUNTRIES))
    ax.bar(xs, [per_country_auc.get(c, np.nan) for c in COUNTRIES], color="#4477aa", label="model")
    if reference:
        ax.plot(xs, [reference.get(c, np.nan) for c in COUNTRIES], "k_", markersize=9, label="oracle")
        ax.legend(loc="lower right")
    ax.set_xticks(xs, COUNTRIES, rotation=90, fontsize=7)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("ROC AUC")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def calibration(Y: np.ndarray, P: np.ndarray, title: str, bins: int = 15):
    """Mean predicted vs observed positive rate, pooled over all 72 countries (quantile bins)."""
    y, p = Y.ravel().astype(float), P.ravel()
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    mean_p = np.bincount(idx, p, len(edges) - 1) / np.maximum(np.bincount(idx, None, len(edges) - 1), 1)
    mean_y = np.bincount(idx, y, len(edges) - 1) / np.maximum(np.bincount(idx, None, len(edges) - 1), 1)
    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(mean_p.max(), mean_y.max()) * 1.05
    ax.plot([0, top], [0, top], "k--", linewidth=0.8)
    ax.plot(mean_p, mean_y, "o-", color="#cc6677")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reliability_by_country(Y: np.ndarray, P: np.ndarray, title: str, bins: int = DEFAULT_BINS,
                           countries: tuple[str, ...] = COUNTRIES, columns: int = 9):
    """One small reliability curve per country (mean predicted vs observed rate over the equal-mass
    bins that its ECE is measured on, with the diagonal), its ECE in the panel's label. Each panel has
    its own scale, 0 to its label's `top`: a country's probabilities span a small range, which a shared
    0..1 axis would hide.

    The panels are drawn in ONE Axes, each in its own unit cell, as three collections and one label a
    panel: 72 Axes of their own (ticks, spines, titles) cost ~3 s a figure, on every candidate's run."""
    curve = reliability(Y, P, bins)
    ece = expected_calibration_error(Y, P, bins)
    rows = -(-len(countries) // columns)
    fig, ax = plt.subplots(figsize=(1.9 * columns, 1.75 * rows))
    frames, diagonals, curves, points = [], [], [], []
    for j, country in enumerate(countries):
        x, y = curve.mean_predicted[:, j], curve.observed_rate[:, j]
        top = min(1.0, np.ceil(np.nanmax(np.concatenate([x, y, [0.01]])) * 20) / 20)  # up to the next 0.05
        x0, y0, side = j % columns, rows - 1 - j // columns, 0.78  # the cell's corner, the panel's side
        frames.append([(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0)])
        diagonals.append([(x0, y0), (x0 + side, y0 + side)])
        shown = np.isfinite(x) & np.isfinite(y)
        xy = np.column_stack([x0 + side * x[shown] / top, y0 + side * y[shown] / top])
        curves.append(xy)
        points.append(xy)
        ax.text(x0, y0 + side + 0.03, f"{country}  ECE {ece[j]:.3f}  (0-{top:g})", fontsize=7, va="bottom")
    ax.add_collection(LineCollection(frames, colors="0.6", linewidths=0.5))
    ax.add_collection(LineCollection(diagonals, colors="k", linewidths=0.5, linestyles="dashed"))
    ax.add_collection(LineCollection(curves, colors="#cc6677", linewidths=1))
    ax.scatter(*np.vstack(points).T, s=4, color="#cc6677", zorder=3)
    ax.set_xlim(-0.05, columns)
    ax.set_ylim(-0.05, rows)
    ax.set_axis_off()
    ax.set_title(f"{title}: mean ECE {np.nanmean(ece):.4f} ({bins} equal-mass bins per country; in each panel "
                 "x: mean predicted probability, y: observed rate, both from 0 to the panel's top)", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95)
    return fig


def roc(Y: np.ndarray, P: np.ndarray, title: str, countries: tuple[str, ...] = ("US", "BR", "DE", "JP", "IN")):
    fig, ax = plt.subplots(figsize=(5, 5))
    for c in countries:
        j = COUNTRIES.index(c)
        if Y[:, j].min() == Y[:, j].max():
            continue
        fpr, tpr, _ = roc_curve(Y[:, j], P[:, j])
        ax.plot(fpr, tpr, label=c)
    fpr, tpr, _ = roc_curve(Y.ravel(), P.ravel())
    ax.plot(fpr, tpr, "k", linewidth=2, label="all countries pooled")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def importance_heatmap(imp, title: str):
    """A global importance (`domain.explain.Importance`) as features x countries: each cell the feature's
    share of the country's total mean |attribution| (so countries on different scales compare), the
    features in order of their share over all countries (largest on top), the countries grouped by
    region. A country where the model uses no feature (the prior) is left blank."""
    shares = imp.shares()
    order = [c for region in REGIONS.values() for c in region]
    cols = [imp.countries.index(c) for c in order]
    overall = imp.feature_shares()
    rows = sorted(range(len(imp.features)), key=lambda j: -np.nan_to_num(overall[imp.features[j]], nan=-1))
    cells = np.ma.masked_invalid(shares[np.ix_(cols, rows)].T)
    fig, ax = plt.subplots(figsize=(14, 4.6))
    image = ax.imshow(cells, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{imp.features[j]} ({overall[imp.features[j]]:.0%})" for j in rows], fontsize=8)
    edge = 0
    for region, countries in REGIONS.items():  # the regions: a line between them, the name above
        ax.text(edge + len(countries) / 2 - 0.5, -0.8, region, ha="center", va="bottom", fontsize=8)
        edge += len(countries)
        if edge < len(order):
            ax.axvline(edge - 0.5, color="white", linewidth=1.5)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="share of the country's |attribution|")
    ax.set_title(title + ("" if cells.count() else ": the model uses no feature"), pad=18)
    fig.tight_layout()
    return fig


def time_axis(ax, times, one: str, window: timedelta = timedelta(hours=1), pad: float = 0.05) -> str | None:
    """The x axis spans the times it shows (a margin of `pad` of the span on each side), in UTC, with ticks
    for that span. Matplotlib alone widens a single date to four years; data at one point in time (all
    within `window`/30 of each other: the checks of one build, seconds apart) get a window of `window` on
    each side instead, and the words `one` ("one estimate so far") in the plot, which are returned for
    the text around it (None when the data span more than one point in time, or there are none)."""
    ts = sorted({_utc(t) for t in times if t is not None})
    if not ts:
        return None
    lo, hi = ts[0], ts[-1]
    said = None
    if hi - lo <= window / 30:
        middle = lo + (hi - lo) / 2
        lo, hi, said = middle - window, middle + window, one
        ax.text(0.01, 0.97, one, transform=ax.transAxes, ha="left", va="top", fontsize=9, color="#555555")
    else:
        margin = (hi - lo) * pad
        lo, hi = lo - margin, hi + margin
    ax.set_xlim(lo, hi)
    locator = mdates.AutoDateLocator(tz=timezone.utc, minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(  # the offset (the date below the ticks) says UTC
        locator, tz=timezone.utc, offset_formats=["", "%Y", "%Y-%m", "%Y-%m-%d UTC", "%Y-%m-%d UTC",
                                                  "%Y-%m-%d %H:%M UTC"]))
    return said


def x_span(ax) -> tuple[datetime, datetime]:
    """The x axis's limits as UTC times (what a reader sees the time axis span)."""
    lo, hi = ax.get_xlim()
    return mdates.num2date(lo, tz=timezone.utc), mdates.num2date(hi, tz=timezone.utc)


def _utc(t) -> datetime:
    t = t.to_pydatetime() if hasattr(t, "to_pydatetime") else t
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def close(*figs) -> None:
    for f in figs:
        plt.close(f)
