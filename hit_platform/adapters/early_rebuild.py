"""The reproducibility check's refits, started while the training goes on.

`candidates_reproducible` refits the best candidate from its recipe and compares the bytes. Its heavy
part is refitting the chosen grid point of each heavy family (the trees, the MLP), and those points are
known long before the training ends: a one-point grid's before its search starts (its refit then runs
beside its own fit, on the other core), a larger grid's the moment it is scored, while the other families
and the blend are still to come. So `ml/candidate_models` starts each such refit right then, in a process
of its own, which reads the splits from the lake at the training snapshot itself (time travel, as the
check does), checks their fingerprint and fits the grid point (`grid_point`: what the fit and the
calibration chose after it are chosen again by the check's `refit`, which takes this fit as `ready`). The
result waits in `<warehouse>/rebuilds/<dagster run>/<key>.joblib`.

The check takes one only when its key, (snapshot, splits fingerprint, family, grid point, seed, code
version), is the one its own recipe gives; it waits while that process lives, and refits by itself when
there is none, when the process died, or when anything in the key differs. It then removes the run's
folder. `hit-platform rebuild` never takes one: a later rebuild stands alone.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import joblib

from hit_platform.adapters import processes
from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.models import refit
from hit_platform.domain.models.candidates import FAMILIES, grid_point
from hit_platform.settings import Settings
from hit_platform.steps.datasets import at_version, load_split
from hit_platform.steps.transforms import table_fingerprint

STALE_AFTER_S = 24 * 3600  # a run folder no check removed (its run died): swept at the next start


def rebuild_key(snapshot: int, splits_fingerprint: str, family: str, params: dict, seed: int,
                code: dict[str, str]) -> str:
    """Everything a refit depends on, hashed: a refit is taken only for exactly the refit asked for."""
    recipe = {"snapshot": int(snapshot), "splits_fingerprint": splits_fingerprint, "family": family,
              "params": grid_point(params), "seed": int(seed), "code": code}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:32]


def worth_starting(family: str) -> bool:
    """Families whose refit is worth a process of its own: they fit something heavy themselves."""
    fam = FAMILIES.get(family)
    return fam is not None and not fam.light and not fam.members


class EarlyRebuilds:
    """The refits of one training run (one Dagster run), in their own folder."""

    def __init__(self, settings: Settings, run_id: str):
        self.settings = settings
        self.root = settings.warehouse / "rebuilds"
        self.folder = self.root / run_id

    def start(self, snapshot: int, splits_fingerprint: str, family: str, params: dict, seed: int,
              code: dict[str, str]) -> str | None:
        """Fit `family`'s grid point of `params` in a new process; returns its key (None: not worth a
        process, or started already by this run)."""
        if not worth_starting(family):
            return None
        self._sweep()
        self.folder.mkdir(parents=True, exist_ok=True)
        key = rebuild_key(snapshot, splits_fingerprint, family, params, seed, code)
        if (self.folder / f"{key}.pending").exists():
            return None  # started before its search (a one-point grid); chosen now, nothing more to start
        # spawn, not fork: the caller holds threads (Dagster, DuckDB) that a fork would copy mid-state
        p = multiprocessing.get_context("spawn").Process(
            target=_refit_to_file, name=f"hit-platform early rebuild {family}",
            args=(self.settings, str(self.folder), key, snapshot, splits_fingerprint, family, grid_point(params),
                  seed))
        p.start()
        pending = self.folder / f"{key}.pending"
        pending.write_text(processes.process_token(p.pid))
        return key

    def take(self, snapshot: int, splits_fingerprint: str, family: str, params: dict, seed: int,
             code: dict[str, str], poll_s: float = 0.2):
        """The grid point fitted for exactly this recipe (uncalibrated: `refit(..., ready=)` calibrates),
        once its process is done; None when there is none, or its process ended without one (the caller
        then refits by itself)."""
        key = rebuild_key(snapshot, splits_fingerprint, family, params, seed, code)
        done, pending = self.folder / f"{key}.joblib", self.folder / f"{key}.pending"
        while not done.exists():
            try:
                token = pending.read_text()
            except FileNotFoundError:
                return None
            if not processes.is_alive(token):
                if done.exists():  # finished between the two looks
                    break
                return None
            time.sleep(poll_s)
        return joblib.load(done)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _sweep(self) -> None:
        if not self.root.is_dir():
            return
        now = time.time()
        for folder in self.root.iterdir():
            if folder != self.folder and now - folder.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)


def _refit_to_file(settings: Settings, folder: str, key: str, snapshot: int, splits_fingerprint: str,
                   family: str, params: dict, seed: int) -> None:
    """In the refit's own process: the splits at `snapshot` read here, checked, refitted, kept."""
    with Lake(settings).connection(read_only=True) as con:
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        fingerprint = table_fingerprint(con, at_version("ml.splits", snapshot))
    if fingerprint != splits_fingerprint:
        return  # not the data it was asked for: nothing to take, the check refits by itself
    pipeline = refit(family, params, train.X, train.Y, seed)  # a grid point: nothing calibrated
    tmp = Path(folder) / f".{key}.{os.getpid()}.tmp"
    joblib.dump(pipeline, tmp)
    os.replace(tmp, Path(folder) / f"{key}.joblib")  # whole or absent: the check never reads half a file
