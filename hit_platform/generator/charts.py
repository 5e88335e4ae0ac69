"""The chart schedule: which song holds which rank on which chart day.

Labels are charts: a song is positive for a chart iff it appears there at least
once in the window. The schedule makes that hold exactly:

1. every positive song of a chart gets a streak of consecutive days,
   1 <= length <= D (D = days in the window), heavy-tailed and longer for
   songs the chart likes more (hits stay longer), with the lengths summing to
   exactly 50 * D;
2. the streaks are laid end to end (in a random order) along one sequence of
   50 * D slots, cut into 50 "lanes" of D days: slot p is lane p // D on day
   p % D. A streak crossing a lane end continues at the start of the next
   lane; since a streak is at most D long, a song is never twice on one day;
3. each day the 50 songs are ordered by a score (base popularity + where the
   song is in its streak's rise and fall + daily noise) to give ranks 1..50.

Under a taste shift the songs released after its day must not chart before
their release: a chart with such songs orders its streaks by `lay_out_held`
instead of at random (every other world is laid out exactly as before).

Nothing here is stored per row: any range of days is recomputed from the
streaks (a binary search per slot) and stateless hash noise, so chunks can be
generated independently and identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hit_platform.domain.countries import CHART_SIZE
from hit_platform.generator.randomness import hash_logistic, hash_uniform, stream

LOOKBACK_DAYS = 7  # weekly_movement compares with the chart a week earlier
# A song held back to its release day may start charting this many days later, where that saves a gap
# that a free streak would have to fill (see lay_out_held).
MAX_HELD_DELAY = 1


def allocate_streaks(weights: np.ndarray, total: int, cap) -> np.ndarray:
    """Integer lengths, 1 <= length <= cap, summing to `total`, roughly proportional to weights.

    `cap` is one number, or one per song (a song released late in the window has fewer days left).
    Water-filling: share the days beyond the first in proportion to the
    weights, clamp at the cap and re-share the excess; then round by largest
    remainder (ties broken by position, so it is deterministic)."""
    k = len(weights)
    room = np.broadcast_to(np.asarray(cap) - 1, (k,))
    if not k <= total <= k + int(room.sum()):
        raise ValueError(f"cannot give {k} songs streaks of 1..{np.max(cap, initial=0)} days summing to {total}")
    extra = float(total - k)
    share = np.zeros(k)
    free = np.ones(k, dtype=bool)
    left = extra
    while free.any() and left > 0:
        w = np.where(free, weights, 0.0)
        share = np.where(free, left * w / w.sum(), share)
        over = free & (share > room)
        if not over.any():
            break
        share[over] = room[over]
        free &= ~over
        left = extra - share[~free].sum()
    whole = np.floor(share + 1e-9).astype(np.int64)
    whole = np.minimum(whole, room)
    missing = int(total - k - whole.sum())
    if missing:
        frac = share - whole
        frac[whole >= room] = -1.0  # full streaks cannot grow
        order = np.lexsort((np.arange(k), -frac))
        whole[order[:missing]] += 1
    return whole + 1


def lay_out_held(length: np.ndarray, earliest: np.ndarray, days: int,
                 order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start slots (0 .. CHART_SIZE * days) and lengths of one chart's streaks when some songs may
    not chart before a day: a song with earliest[i] > 0 ("held", e.g. released that day) starts on
    or after it and does not cross its lane's end (which would bring it back at day 0); the others
    are free.

    The held streaks are dealt to the lanes first, in order of their day, packed so that few gaps
    are left to fill: each goes right after a lane's held streaks when they end on its day (or up
    to MAX_HELD_DELAY days later), else into the shortest gap before its day; the last lane takes
    none. Then the streaks are laid end to end as in ChartSchedule, lane by lane: the free ones in
    `order` (a random permutation) until the lane's next held streak may start, then that one. A free streak that would run past the last
    day the held one can start on (leaving room for the lane's later held ones) gives way to the
    longest free one that does not; when none is short enough, the shortest is cut to fit and the
    days cut are added to the next streaks that have room. So a held song charts from its
    release day or a little later, and the lengths still fill the chart exactly."""
    length = np.array(length, dtype=np.int64)
    held = sorted((int(i) for i in order if earliest[i] > 0), key=lambda i: (int(earliest[i]), -int(length[i]), i))
    # The last lane takes no held streak: what is left of the free ones fills it, ending the chart exactly.
    lane_free = np.zeros(CHART_SIZE - 1, dtype=np.int64)
    dealt: list[list[int]] = [[] for _ in range(CHART_SIZE)]
    for i in held:
        day = int(earliest[i])
        fits = np.maximum(lane_free, day) + length[i] <= days
        if not fits.any():
            raise ValueError(f"cannot place a {length[i]}-day streak of a song held back to day {day}: "
                             f"every lane of the chart is taken until day {lane_free.min()} of {days}")
        # right after a lane's held streaks, else in the shortest gap, else wherever it starts the soonest
        late = np.flatnonzero(fits & (lane_free >= day) & (lane_free <= day + MAX_HELD_DELAY))
        gap = np.flatnonzero(fits & (lane_free < day))
        lane = (int(late[np.argmin(lane_free[late])]) if len(late) else
                int(gap[np.argmax(lane_free[gap])]) if len(gap) else int(np.argmin(lane_free)))
        day = max(day, int(lane_free[lane]))
        lane_free[lane] = day + length[i]
        dealt[lane].append(i)
    last_start = {}
    for lane, songs in enumerate(dealt):
        end = (lane + 1) * days
        for i in reversed(songs):
            last_start[i] = end = end - int(length[i])
    free = [int(i) for i in order if earliest[i] <= 0][::-1]  # taken from the end, so in `order`
    start = np.full(len(length), -1, dtype=np.int64)
    pos, cut = 0, 0

    def place_free(room: int) -> None:
        nonlocal pos, cut
        if not free:
            raise ValueError(f"no free streak is left before slot {pos + room} of a chart with held songs")
        k = len(free) - 1
        if length[free[k]] > room:
            fits = [k for k in range(len(free)) if length[free[k]] <= room]
            k = (max(fits, key=lambda k: (length[free[k]], k)) if fits
                 else min(range(len(free)), key=lambda k: (length[free[k]], -k)))
        f = free.pop(k)
        if length[f] > room:
            cut += int(length[f]) - room
            length[f] = room
        elif cut:
            grow = min(cut, room - int(length[f]), days - int(length[f]))
            length[f] += grow
            cut -= grow
        start[f] = pos
        pos += int(length[f])

    for lane, songs in enumerate(dealt):
        for n, i in enumerate(songs):
            first = lane * days + int(earliest[i])
            while pos < first:
                place_free(last_start[i] - pos)
            if pos > last_start[i]:  # the deal left room for every held streak: cannot happen
                raise AssertionError(f"held streak at slot {pos}, after its last start {last_start[i]}")
            if cut:  # a held streak takes days cut from free ones too, where the lane leaves room
                end = last_start[songs[n + 1]] if n + 1 < len(songs) else (lane + 1) * days
                grow = min(cut, end - pos - int(length[i]))
                length[i] += grow
                cut -= grow
            start[i] = pos
            pos += int(length[i])
    while free:
        place_free(days)
    if pos != CHART_SIZE * days or cut:
        raise ValueError(f"laid out {pos} of {CHART_SIZE * days} chart places ({cut} days cut and not placed)")
    return start, length


@dataclass
class ChartDays:
    """Charts for a range of days, rank-ordered: arrays of shape (days, charts, 50)."""

    day: np.ndarray            # (days,) window day index
    song: np.ndarray           # catalogue index of the song at rank r+1
    daily_movement: np.ndarray
    weekly_movement: np.ndarray
    popularity: np.ndarray


class ChartSchedule:
    """Streaks of every chart of the dump, laid out into 50 lanes per chart."""

    def __init__(self, seed: int, labels: np.ndarray, prob: np.ndarray, base_popularity: np.ndarray,
                 total_days: int, chart_keys: list[int], earliest: np.ndarray | None = None):
        """labels/prob: (n_songs, n_charts) for the dump's charts; chart_keys: stable ids for hashing;
        earliest: None, or (n_songs, n_charts) the first day a song may be on a chart (0 = any day):
        a chart with such songs lays its streaks out by `lay_out_held`, the others as always."""
        self.seed = seed
        self.total_days = D = total_days
        self.chart_keys = np.asarray(chart_keys, dtype=np.int64)
        self.n_charts = labels.shape[1]
        self.popularity_base = base_popularity
        self._pop_z = (base_popularity - 62.0) / 9.0
        slots = CHART_SIZE * D
        songs, starts, lengths = [], [], []
        for c in range(self.n_charts):
            rng = stream(seed, "streaks", int(self.chart_keys[c]))
            positives = np.flatnonzero(labels[:, c])
            p = prob[positives, c]
            weights = np.exp(rng.normal(0.0, 1.0, len(positives))) * (p / p.mean()) ** 0.8
            first = earliest[positives, c] if earliest is not None else None
            if first is None or not first.any():
                length = allocate_streaks(weights, slots, D)
                order = rng.permutation(len(positives))
                length = length[order]
                start = np.concatenate([[0], np.cumsum(length)[:-1]]) + c * slots
                songs.append(positives[order])
            else:
                length = allocate_streaks(weights, slots, D - first)
                start, length = lay_out_held(length, first, D, rng.permutation(len(positives)))
                order = np.argsort(start, kind="stable")
                length, start = length[order], start[order] + c * slots
                songs.append(positives[order])
            starts.append(start)
            lengths.append(length)
        self.seq_song = np.concatenate(songs).astype(np.int64)
        self.seq_start = np.concatenate(starts).astype(np.int64)
        self.seq_length = np.concatenate(lengths).astype(np.int64)
        # Scratch (chart, song) -> rank table for movements, reused between calls (one thread at a time).
        self._rank_of = np.zeros((self.n_charts, labels.shape[0]), dtype=np.int8)
        self._chart_column = np.arange(self.n_charts)[:, None]

    def first_chart_day(self, n_songs: int) -> np.ndarray:
        """Each song's first day on any chart of the dump (D for songs that never chart)."""
        D = self.total_days
        lane_day = self.seq_start % D
        wraps = lane_day + self.seq_length > D  # continues at day 0 of the next lane
        first = np.where(wraps, 0, lane_day)
        out = np.full(n_songs, D, dtype=np.int64)
        np.minimum.at(out, self.seq_song, first)
        return out

    def _ranked(self, day_lo: int, day_hi: int) -> np.ndarray:
        """Songs in rank order for days [day_lo, day_hi): (days, charts, 50)."""
        D = self.total_days
        days = np.arange(day_lo, day_hi, dtype=np.int64)
        charts = np.arange(self.n_charts, dtype=np.int64)
        lanes = np.arange(CHART_SIZE, dtype=np.int64)
        slot = (charts[None, :, None] * CHART_SIZE + lanes[None, None, :]) * D + days[:, None, None]
        j = np.searchsorted(self.seq_start, slot, side="right") - 1
        song = self.seq_song[j]
        length = self.seq_length[j]
        phase = (slot - self.seq_start[j] + 0.5) / length
        # Longer streaks climb higher, every song rises and falls along its streak.
        arc = np.sin(np.pi * phase) * (np.log1p(length) / np.log1p(D))
        noise = hash_logistic(self.seed, "rank_noise", self.chart_keys[None, :, None], days[:, None, None], song)
        score = 0.9 * self._pop_z[song] + 1.6 * arc + 0.45 * noise
        order = np.argsort(-score, axis=2, kind="stable")
        return np.take_along_axis(song, order, axis=2)

    def songs_on(self, day: int) -> np.ndarray:
        """Songs in rank order on one window day: (charts, 50)."""
        return self._ranked(day, day + 1)[0]

    def days(self, day_lo: int, day_hi: int) -> ChartDays:
        """The charts of window days [day_lo, day_hi), with movements and popularity."""
        if not 0 <= day_lo < day_hi <= self.total_days:
            raise ValueError(f"days [{day_lo}, {day_hi}) outside the window 0..{self.total_days}")
        ext_lo = max(0, day_lo - LOOKBACK_DAYS)
        ranked = self._ranked(ext_lo, day_hi)
        here = np.arange(day_lo - ext_lo, day_hi - ext_lo)
        song = ranked[here]
        rank = np.arange(1, CHART_SIZE + 1, dtype=np.int8)

        def movement(lag: int) -> np.ndarray:
            """Rank `lag` days earlier minus today's rank; 0 for songs not on that chart then."""
            out = np.zeros(song.shape, dtype=np.int32)
            for i, t in enumerate(here):
                if t - lag < 0:  # before the window there is no chart: movement 0
                    continue
                prev = ranked[t - lag]
                self._rank_of[self._chart_column, prev] = rank
                before = self._rank_of[self._chart_column, song[i]]
                out[i] = np.where(before > 0, before - rank, 0)
                self._rank_of[self._chart_column, prev] = 0
            return out

        days = np.arange(day_lo, day_hi, dtype=np.int64)
        u = hash_uniform(self.seed, "popularity", self.chart_keys[None, :, None], days[:, None, None], song)
        popularity = self.popularity_base[song] + 10.0 * (CHART_SIZE - rank) / (CHART_SIZE - 1) - 5.0 + 6.0 * (u - 0.5)
        popularity = np.clip(np.rint(popularity), 0, 100).astype(np.int32)
        return ChartDays(day=days, song=song.astype(np.int32), daily_movement=movement(1),
                         weekly_movement=movement(LOOKBACK_DAYS), popularity=popularity)
