"""Fake but plausible track, artist and album names.

Names are built from small word lists (English, Spanish, Portuguese and a few
K-pop style words) so the dump looks like a chart, while no real song or artist
is named. Everything is drawn from the Generator passed in, so names are
deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

ADJECTIVES = (
    "Golden", "Broken", "Electric", "Midnight", "Wild", "Sweet", "Lonely", "Crazy",
    "Blue", "Neon", "Silent", "Burning", "Lost", "Perfect", "Dangerous", "Little",
    "Summer", "Cold", "Velvet", "Bitter", "Fading", "Higher", "Savage", "Pretty",
    "Endless", "Secret", "Last", "First", "Heavy", "Easy", "Tropical", "Sad",
)
NOUNS = (
    "Heart", "Night", "Fire", "Dreams", "Love", "Rain", "Stars", "Ocean", "City",
    "Lights", "Roses", "Money", "Paradise", "Ghost", "Summer", "Angel", "Moon",
    "Memories", "Diamonds", "Shadows", "Wave", "Party", "Butterflies", "Tears",
    "Weekend", "Sunset", "Thunder", "Mirror", "Highway", "Heaven", "Vibes", "Gravity",
)
VERB_PHRASES = (
    "Hold Me", "Call Me", "Dance With Me", "Don't Stop", "Take Me Home", "Let It Go",
    "Say My Name", "Stay", "Run Away", "Fall Again", "Come Back", "Feel It",
    "Move", "Tell Me Why", "Miss You", "Wake Up", "Need You", "Breathe",
)
SPANISH_NOUNS = (
    "Corazón", "Noche", "Fuego", "Amor", "Luna", "Playa", "Baile", "Calle", "Cielo",
    "Verano", "Besos", "Mentiras", "Perreo", "Saudade", "Coração", "Festa", "Vida",
)
SPANISH_TITLES = (
    "Me Porto Bonito", "Dime Que Sí", "Otra Vez", "Sin Ti", "Contigo", "Tú y Yo",
    "Ella Baila", "Quédate", "Vai Malandra", "Mi Gente Bonita", "Tá Tranquilo",
)
KPOP_WORDS = ("Hype", "Shine", "Candy", "Boom", "Pink", "Magic", "Cherry", "Flash", "Crush", "Nova",
              "사랑", "밤하늘", "夜に駆ける", "ÉCLAT")
FIRST_NAMES = (
    "Ava", "Leo", "Mia", "Noah", "Luna", "Mateo", "Zoe", "Kai", "Ivy", "Ezra", "Nina",
    "Diego", "Sofia", "Jonas", "Lea", "Omar", "Yara", "Hana", "Min", "Ji", "Ravi",
    "Amara", "Tomas", "Elif", "Anya", "Felix", "Camila", "Bruno", "Lucas", "Maya",
)
LAST_NAMES = (
    "Rivers", "Stone", "Vega", "Moreno", "Kim", "Park", "Santos", "Silva", "Keller",
    "Nova", "Blake", "Reyes", "Cruz", "Lind", "Novak", "Haddad", "Tanaka", "Rossi",
    "Dubois", "Fischer", "Costa", "Okafor", "Quinn", "Lopez", "Ferreira", "Marsh",
)
STAGE_WORDS = (
    "Aurora", "Zenith", "Blaze", "Echo", "Rogue", "Sable", "Orbit", "Vortex", "Nyx",
    "Halo", "Onyx", "Ember", "Kairo", "Lumen", "Saint", "Prism", "Jade", "Rebel",
)
BAND_SUFFIXES = ("Kids", "Club", "Boys", "Girls", "Collective", "Brothers", "Machine", "Society")


def _pick(rng: np.random.Generator, words: tuple[str, ...], n: int) -> np.ndarray:
    return np.asarray(words, dtype=object)[rng.integers(0, len(words), n)]


def track_names(rng: np.random.Generator, n: int) -> list[str]:
    """`n` track titles in a handful of styles, some with a remix/version suffix."""
    style = rng.choice(6, size=n, p=[0.25, 0.2, 0.2, 0.15, 0.12, 0.08])
    adj, noun, noun2 = _pick(rng, ADJECTIVES, n), _pick(rng, NOUNS, n), _pick(rng, NOUNS, n)
    verb, es, es2 = _pick(rng, VERB_PHRASES, n), _pick(rng, SPANISH_NOUNS, n), _pick(rng, SPANISH_NOUNS, n)
    es_title, kpop = _pick(rng, SPANISH_TITLES, n), _pick(rng, KPOP_WORDS, n)
    # Soundtrack songs carry their film in quotes, as in the real dump: Song (From "Film").
    suffix = rng.choice(
        np.array(["", " - Remix", " - Sped Up", " (Acoustic)", " - Live", " Pt. 2", " (From \"{}\")"], dtype=object),
        size=n, p=[0.85, 0.05, 0.03, 0.02, 0.02, 0.02, 0.01])
    out = []
    for i in range(n):
        s = style[i]
        if s == 0:
            title = f"{adj[i]} {noun[i]}"
        elif s == 1:
            title = str(noun[i]) if noun[i] != noun2[i] else f"{noun[i]} {noun2[i]}"
        elif s == 2:
            title = str(verb[i])
        elif s == 3:
            title = f"{es[i]} de {es2[i]}" if rng.random() < 0.5 else str(es_title[i])
        elif s == 4:
            title = f"{noun[i]} & {noun2[i]}"
        else:
            title = f"{kpop[i]} {kpop[(i + 3) % n]}" if n > 3 else str(kpop[i])
        out.append(title + suffix[i].format(f"{adj[(i + 1) % n]} {noun2[i]}"))
    return out


def artist_pool(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct artist names: people, stage names and bands."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        style = rng.integers(0, 5)
        if style <= 1:
            name = f"{_pick(rng, FIRST_NAMES, 1)[0]} {_pick(rng, LAST_NAMES, 1)[0]}"
        elif style == 2:
            name = str(_pick(rng, STAGE_WORDS, 1)[0])
            if rng.random() < 0.5:
                name = f"{rng.choice(['Lil', 'DJ', 'MC', 'Young'])} {name}"
        elif style == 3:
            name = f"{_pick(rng, ADJECTIVES, 1)[0]} {_pick(rng, BAND_SUFFIXES, 1)[0]}"
        else:
            name = f"{_pick(rng, STAGE_WORDS, 1)[0]} {_pick(rng, LAST_NAMES, 1)[0]}"
        if name in seen:  # small word lists: make later names distinct with a number
            name = f"{name} {len(names) % 97 + 2}"
            if name in seen:
                continue
        seen.add(name)
        names.append(name)
    return names


def song_artists(rng: np.random.Generator, pool: list[str], n: int) -> list[str]:
    """For each of `n` songs, 1-3 distinct artists from the pool joined by ", ".

    Artist popularity is Zipf-like, so a few artists have many songs."""
    weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
    weights /= weights.sum()
    count = rng.choice([1, 2, 3], size=n, p=[0.68, 0.24, 0.08])
    picks = rng.choice(len(pool), size=(n, 3), p=weights)
    out = []
    for i in range(n):
        chosen = list(dict.fromkeys(picks[i, : count[i]].tolist()))  # keep order, drop repeats
        out.append(", ".join(pool[j] for j in chosen))
    return out


def album_names(rng: np.random.Generator, titles: list[str], artists: list[str]) -> list[str]:
    """Album titles: singles carry the track title, others an album-style name."""
    n = len(titles)
    style = rng.choice(4, size=n, p=[0.45, 0.3, 0.15, 0.10])
    adj, noun = _pick(rng, ADJECTIVES, n), _pick(rng, NOUNS, n)
    out = []
    for i in range(n):
        if style[i] == 0:
            out.append(titles[i])
        elif style[i] == 1:
            out.append(f"{adj[i]} {noun[i]}")
        elif style[i] == 2:
            out.append(f"{noun[i]} (Deluxe Edition)")
        else:
            out.append(artists[i].split(", ")[0])  # self-titled
    return out
