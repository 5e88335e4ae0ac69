"""A journal file that does not read to its end: a torn tail only where a writer can have died mid-append
(the end of an open segment), damage everywhere else. Damage is never dropped in silence: every record
that reads is committed, the file is kept in `journal/unreadable/`, and ops.alerts says so. Real segment
files, a real DuckLake."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from hit_platform.adapters.alerts import list_alerts
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving.inference_log import (JournalCommitter, SegmentWriter, Served, encode, journal_files,
                                                read_segment)
from hit_platform.serving.inference_log.committer import UNREADABLE
from hit_platform_tests.serving.test_inference_log import logged, sealed, served

LENGTH_AT = 4  # a record: b"HITJ" | payload length (u32) | crc32 (u32) | payload


def left_open(journal: Path, entries: list[Served]) -> Path:
    """An open segment whose writer died (its lock gone with it), as a killed replica leaves it."""
    writer = SegmentWriter(journal, fsync=False)
    for e in entries:
        writer.append(encode(e))
    os.close(writer.fd)
    return writer.path


def flip(path: Path, at: int, bit: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[at] ^= 1 << bit
    path.write_bytes(bytes(data))
    return bytes(data)


def errors(lake: Lake) -> list[dict]:
    return [a for a in list_alerts(lake, kind="inference_log") if a["severity"] == "error"]


def test_a_sealed_segment_with_a_flipped_length_bit_keeps_every_other_record_and_the_file(lake: Lake, tmp_path: Path):
    """One flipped bit in the length field of record 1 of 1,000 in a sealed segment (before: 1 committed,
    999 dropped, the file deleted, no alert)."""
    journal = tmp_path / "journal"
    entries = [served(1) for _ in range(1000)]
    path = sealed(journal, entries)
    second = len(encode(entries[0]))
    damaged = flip(path, second + LENGTH_AT + 3, 7)  # the length's top bit: it now runs past the file's end
    seg = read_segment(path)
    assert not seg.torn_tail and seg.corrupt_at == second and len(seg.entries) == 999

    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 999
    assert logged(lake) == {e.request_id: 1 for i, e in enumerate(entries) if i != 1}
    assert journal_files(journal) == [] and (journal / UNREADABLE / path.name).read_bytes() == damaged
    [alert] = errors(lake)
    assert path.name in alert["what"] and f"bytes {second}-" in alert["what"] and "999" in alert["what"]
    committer.close()


def test_a_sealed_segment_cut_short_is_damaged_not_torn(lake: Lake, tmp_path: Path):
    """A sealed segment was fsynced whole: a last record cut short (or with a bad checksum) is damage."""
    journal = tmp_path / "journal"
    cut_entries, crc_entries = [served(2) for _ in range(4)], [served(1) for _ in range(3)]
    cut = sealed(journal, cut_entries)
    data = cut.read_bytes()
    cut.write_bytes(data[:-10])
    crc = sealed(journal, crc_entries)
    flip(crc, crc.stat().st_size - 1, 0)  # a bit of the last record's payload: its crc no longer matches
    for path, whole in ((cut, 3), (crc, 2)):
        seg = read_segment(path)
        assert not seg.torn_tail and seg.corrupt_at is not None and len(seg.entries) == whole

    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 3 * 2 + 2
    assert logged(lake) == {**{e.request_id: 2 for e in cut_entries[:3]}, **{e.request_id: 1 for e in crc_entries[:2]}}
    assert sorted(p.name for p in (journal / UNREADABLE).iterdir()) == sorted([cut.name, crc.name])
    assert journal_files(journal) == [] and len(errors(lake)) == 2
    committer.close()


def test_an_open_segment_of_a_dead_writer_is_torn_only_at_its_end(lake: Lake, tmp_path: Path):
    """A writer killed mid-append leaves its last record short: dropped (never answered), the recovered
    alert says so, the file goes. A flipped length bit or a bad checksum anywhere else, the last record
    included when it is whole, is damage: kept with an alert, every record that reads committed."""
    journal = tmp_path / "journal"
    torn_entries = [served(1) for _ in range(5)]
    torn = left_open(journal, torn_entries)
    torn.write_bytes(torn.read_bytes()[:-25])
    seg = read_segment(torn)
    assert seg.torn_tail and seg.corrupt_at is None and len(seg.entries) == 4

    length_entries = [served(1) for _ in range(200)]
    bad_length = left_open(journal, length_entries)
    flip(bad_length, len(encode(length_entries[0])) + LENGTH_AT + 3, 6)
    crc_entries = [served(1) for _ in range(3)]
    bad_crc = left_open(journal, crc_entries)
    flip(bad_crc, bad_crc.stat().st_size - 1, 0)  # the last record is whole, its checksum wrong
    for path, whole in ((bad_length, 199), (bad_crc, 2)):
        seg = read_segment(path)
        assert not seg.torn_tail and seg.corrupt_at is not None and len(seg.entries) == whole

    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 4 + 199 + 2
    expected = {e.request_id: 1 for e in torn_entries[:4] + crc_entries[:2]}
    expected.update({e.request_id: 1 for i, e in enumerate(length_entries) if i != 1})
    assert logged(lake) == expected
    assert sorted(p.name for p in (journal / UNREADABLE).iterdir()) == sorted([bad_length.name, bad_crc.name])
    assert not list(journal.glob("*.open")) and not list(journal.glob("*.seg"))
    assert sorted(a["where"] for a in errors(lake)) == sorted(f"journal/{p.name}" for p in (bad_length, bad_crc))
    recovered = [a for a in list_alerts(lake, kind="inference_log") if "replica that died" in a["what"]]
    assert len(recovered) == 3 and any("unfinished last record was dropped" in a["what"] for a in recovered)
    committer.close()


def test_damage_in_the_header_of_the_first_record_still_commits_the_rest(lake: Lake, tmp_path: Path):
    """The magic of record 0 overwritten: nothing before the damage, every record after it committed."""
    journal = tmp_path / "journal"
    entries = [served(1) for _ in range(10)]
    path = sealed(journal, entries)
    data = bytearray(path.read_bytes())
    data[0:4] = b"\x00" * 4
    path.write_bytes(bytes(data))
    assert struct.unpack_from("<4s", data)[0] != b"HITJ"
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 9
    assert logged(lake) == {e.request_id: 1 for e in entries[1:]}
    assert (journal / UNREADABLE / path.name).exists() and len(errors(lake)) == 1
    committer.close()


def test_a_dead_writers_unnamed_file_is_swept_and_a_live_writers_never_is(lake: Lake, tmp_path: Path, monkeypatch):
    """A writer killed between creating its segment and naming it leaves an empty hidden `.new` file: the
    committer removes it once it is old. A live writer racing a sweep (the sweep takes its file between its
    creation and its lock) takes a new file and loses nothing: the race CI met once, forced here."""
    from hit_platform.serving.inference_log import committer as committer_module
    from hit_platform.serving.inference_log.journal import NEW
    journal = tmp_path / "journal"
    journal.mkdir()
    fresh, stale = journal / f".1-1-fresh{NEW}", journal / f".0-1-stale{NEW}"
    fresh.touch()
    stale.touch()
    os.utime(stale, (0, 0))
    committer = JournalCommitter(lake, journal)
    committer.commit()
    assert fresh.exists() and not stale.exists()
    fresh.unlink()
    # every `.new` file is fair game to the sweep now, and it sweeps without pause while writers open segments
    monkeypatch.setattr(committer_module, "UNBORN_AFTER_S", -1.0)
    stop, swept = threading.Event(), []
    def sweep():
        while not stop.is_set():
            committer._sweep_unborn()
            swept.append(1)
    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        entries = [served() for _ in range(3000)]
        for e in entries:  # each one its own segment: thousands of creations raced by the sweep
            writer = SegmentWriter(journal, fsync=False)
            writer.append(encode(e))
            assert writer.seal() is not None
    finally:
        stop.set()
        sweeper.join(timeout=30)
    assert len(swept) > 0 and not list(journal.glob(".*" + NEW))
    committer.commit()
    assert logged(lake) == {e.request_id: 1 for e in entries}
