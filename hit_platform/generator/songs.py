"""The song catalogue: ids, fake names and realistic audio features.

Value shapes follow the real Spotify dump: danceability/energy/valence are
Beta-like around 0.6, loudness mostly -5..-10 dB and tied to energy,
acousticness bimodal, instrumentalness mostly 0, speechiness skewed low with a
rap mode (which also makes songs explicit), tempo mostly 80..160 BPM,
time signature mostly 4, durations around 3:20.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.generator import names
from hit_platform.generator.randomness import stream

BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype="S1")
ID_LENGTH = 22
NULL_TEXT_RATE = 0.001  # name/artists/album_name are occasionally null in the real dump (not a fault)
# Spotify's analysis finds no beat in a few tracks (ambient, spoken word): tempo 0 and time_signature 0.
NO_BEAT_RATE = 0.003
# Release date precision (Spotify's release_date_precision), codes into RELEASE_PRECISIONS.
RELEASE_PRECISIONS = ("day", "month", "year")


@dataclass
class Catalogue:
    """All songs that could chart; arrays are indexed by catalogue position."""

    spotify_id: np.ndarray      # object array of 22-char base-62 ids
    name: np.ndarray            # object array, None where null
    artists: np.ndarray         # object array, ", "-joined, None where null
    album_name: np.ndarray      # object array, None where null
    is_explicit: np.ndarray     # bool
    duration_ms: np.ndarray     # int32
    features: dict[str, np.ndarray]  # the 12 audio features (float64 / int32)

    def __len__(self) -> int:
        return len(self.spotify_id)

    def matrix(self) -> np.ndarray:
        """(n, 14) float64: the songs' features in `features.FEATURE_COLUMNS` order, as a taste reads them."""
        from hit_platform.generator.worlds.common import feature_matrix

        return feature_matrix(self.features, self.is_explicit, self.duration_ms)


def spotify_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct random 22-character base-62 ids."""
    ids = np.empty(0, dtype=object)
    while len(ids) < n:  # collisions are astronomically rare; loop only to be exact
        raw = BASE62[rng.integers(0, 62, size=(n - len(ids), ID_LENGTH))]
        fresh = raw.view(f"S{ID_LENGTH}").ravel().astype(str).astype(object)
        ids = np.concatenate([ids, fresh])
        _, first = np.unique(ids, return_index=True)
        ids = ids[np.sort(first)]
    return ids


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def audio_features(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The 12 audio features, `is_explicit` and `duration_ms` for `n` songs."""
    intensity, groove, mood = rng.normal(size=(3, n))
    energy = _sigmoid(0.55 + 0.85 * intensity + 0.25 * rng.normal(size=n))
    danceability = _sigmoid(0.55 + 0.7 * groove + 0.2 * intensity)
    valence = _sigmoid(0.05 + 0.9 * mood + 0.3 * groove)
    # Bimodal acousticness: mostly produced tracks near 0, a quieter acoustic group near 1.
    acoustic_group = (-1.1 * intensity + rng.normal(size=n)) > 1.1
    acousticness = np.where(acoustic_group, rng.beta(3.0, 1.3, n), rng.beta(0.6, 3.5, n))
    loudness = np.clip(-12.5 + 9.0 * energy - 2.0 * acoustic_group + rng.normal(0, 1.5, n), -60.0, 5.0)
    rap = rng.random(n) < 0.22
    speechiness = np.exp(np.where(rap, rng.normal(np.log(0.2), 0.45, n), rng.normal(np.log(0.05), 0.45, n)))
    speechiness = np.clip(speechiness, 0.022, 0.95)
    is_explicit = rng.random(n) < np.where(rap, 0.7, 0.17)
    kind = rng.choice(3, size=n, p=[0.55, 0.33, 0.12])
    instrumentalness = np.select(
        [kind == 0, kind == 1],
        [np.zeros(n), 10.0 ** rng.uniform(-6, -2, n)],
        rng.beta(0.6, 1.6, n))
    liveness = np.clip(0.03 + np.exp(rng.normal(np.log(0.1), 0.55, n)), 0.0, 0.98)
    tempo = np.clip(rng.normal(121.0, 27.0, n), 60.0, 200.0)
    key_weights = np.array([12, 13, 9, 3, 7, 8, 8, 10, 7, 8, 6, 9], dtype=float)
    key = np.where(rng.random(n) < 0.01, -1, rng.choice(12, size=n, p=key_weights / key_weights.sum()))
    mode = (rng.random(n) < 0.57).astype(np.int32)
    time_signature = rng.choice([4, 3, 5, 1], size=n, p=[0.92, 0.05, 0.02, 0.01])
    duration_ms = np.clip(np.exp(rng.normal(np.log(198_000), 0.2, n)), 90_000, 480_000)

    def r3(x):  # the dump shows 3 decimals; +0.0 turns -0.0 into 0.0
        return np.round(x, 3) + 0.0

    features = {
        "danceability": r3(danceability), "energy": r3(energy), "key": key.astype(np.int32),
        "loudness": r3(loudness), "mode": mode, "speechiness": r3(speechiness),
        "acousticness": r3(acousticness), "instrumentalness": np.round(instrumentalness, 6) + 0.0,
        "liveness": r3(liveness), "valence": r3(valence), "tempo": r3(tempo),
        "time_signature": time_signature.astype(np.int32),
    }
    return features, is_explicit, duration_ms.round().astype(np.int32)


def _with_nulls(rng: np.random.Generator, values: list[str]) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    arr[rng.random(len(arr)) < NULL_TEXT_RATE] = None
    return arr


def catalogue_features(seed: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The catalogue's 12 audio features, `is_explicit` and `duration_ms` (what its taste reads)."""
    features, is_explicit, duration_ms = audio_features(stream(seed, "audio_features"), n)
    no_beat = stream(seed, "no_beat").random(n) < NO_BEAT_RATE
    features["tempo"] = np.where(no_beat, 0.0, features["tempo"])
    features["time_signature"] = np.where(no_beat, 0, features["time_signature"]).astype(np.int32)
    return features, is_explicit, duration_ms


def make_catalogue(seed: int, n: int) -> Catalogue:
    """The deterministic catalogue of `n` songs for `seed`."""
    features, is_explicit, duration_ms = catalogue_features(seed, n)
    rng = stream(seed, "names")
    titles = names.track_names(rng, n)
    pool = names.artist_pool(rng, max(40, n // 4))
    artists = names.song_artists(rng, pool, n)
    albums = names.album_names(rng, titles, artists)
    null_rng = stream(seed, "null_text")
    return Catalogue(
        spotify_id=spotify_ids(stream(seed, "spotify_ids"), n),
        name=_with_nulls(null_rng, titles),
        artists=_with_nulls(null_rng, artists),
        album_name=_with_nulls(null_rng, albums),
        is_explicit=is_explicit,
        duration_ms=duration_ms,
        features=features,
    )


def base_popularity(seed: int, appeal: np.ndarray) -> np.ndarray:
    """A song's underlying Spotify popularity (0..100): higher for broadly liked songs."""
    rng = stream(seed, "base_popularity")
    z = (appeal - appeal.mean()) / (appeal.std() + 1e-9)
    return np.clip(62.0 + 9.0 * z + rng.normal(0, 7.0, len(appeal)), 20.0, 95.0)


def release_offsets(seed: int, first_chart_day: np.ndarray) -> np.ndarray:
    """Album release day (relative to the window start) on or before the first chart day.

    Most charting songs are fresh (released days to weeks before charting), some
    are recent catalogue (months) and a few are old catalogue (years)."""
    rng = stream(seed, "release_dates")
    n = len(first_chart_day)
    kind = rng.choice(3, size=n, p=[0.6, 0.28, 0.12])
    lag = np.select(
        [kind == 0, kind == 1],
        [rng.geometric(1 / 12.0, n) - 1, rng.integers(60, 730, n)],
        rng.integers(730, 25 * 365, n))
    return first_chart_day.astype(np.int64) - lag


def release_precision(seed: int, release_day: np.ndarray, first_chart_day: np.ndarray) -> np.ndarray:
    """Index into RELEASE_PRECISIONS per song: Spotify knows the day of most releases, but often only
    the year (or the month) of old catalogue, e.g. "1975", and now and then of a recent one."""
    rng = stream(seed, "release_precision")
    age = first_chart_day.astype(np.int64) - release_day
    u = rng.random(len(age))
    year_share = np.where(age >= 730, 0.35, np.where(age >= 60, 0.01, 0.0))
    month_share = np.where(age >= 730, 0.10, np.where(age >= 60, 0.03, 0.0))
    return np.where(u < year_share, 2, np.where(u < year_share + month_share, 1, 0)).astype(np.int8)
