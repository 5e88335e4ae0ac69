"""Files in the public dump's own style (`universal_top_spotify_songs.csv`) keep every legitimate row.

Its quirks: every field quoted, booleans True/False, `""` for the global chart's country and for nulls,
release dates at Spotify's precision ("2024-08-16", "2024-01", "1975"), key -1, time_signature 0 and 1,
tempo 0, quotes and unicode in titles, new tracks with every audio feature empty.
"""

from __future__ import annotations

from datetime import date

from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.schema import AUDIO_FEATURES, RELEASE_DATE_PRECISION
from hit_platform.generator import GeneratorConfig, generate
from hit_platform.adapters.lake.ingest import ingest_landing
from hit_platform.steps.ingest import landing_files
from hit_platform.steps.ingest.rules import release_date_text

KAGGLE_HEADER = ('"spotify_id","name","artists","daily_rank","daily_movement","weekly_movement","country",'
                 '"snapshot_date","popularity","is_explicit","duration_ms","album_name","album_release_date",'
                 '"danceability","energy","key","loudness","mode","speechiness","acousticness",'
                 '"instrumentalness","liveness","valence","tempo","time_signature"')
# Rows as the public file writes them (values of real chart entries).
KAGGLE_ROWS = [
    '"2plbrEY59IikOBgBGLjaoe","Die With A Smile","Lady Gaga, Bruno Mars","1","0","1","","2024-10-18","98",'
    '"False","251667","Die With A Smile","2024-08-16","0.521","0.592","6","-7.777","0","0.0304","0.308","0",'
    '"0.122","0.535","157.969","3"',
    '"7tFiyTwD0nx5a1eklYtX2J","Bohemian Rhapsody - Remastered 2011","Queen","38","3","-2","GB","2024-10-18","87",'
    '"False","354320","A Night At The Opera (2011 Remaster)","1975","0.392","0.402","-1","-9.961","0","0.0536",'
    '"0.288","0","0.243","0.228","0","0"',
    '"5vNRhkKd0yEAg8suGBpjeY","APT.","ROSÉ, Bruno Mars","2","0","0","KR","2024-10-18","96","False","169917",'
    '"APT.","2024-10","0.777","0.783","0","-4.477","0","0.26","0.0283","0","0.355","0.939","149.027","1"',
    '"0WbMK4wrZ1wFSty9F7FCgu","What Was I Made For? [From ""Barbie The Album""]","Billie Eilish","40","-1","4","US",'
    '"2024-10-18","88","False","222369","What Was I Made For? [From ""Barbie The Album""]","2023-07-13","0.444",'
    '"0.0911","0","-17.665","1","0.0307","0.959","0","0.0946","0.142","78.403","4"',
    '"6dOtVTDdiauQNBQEDOtlAB","Birds of a Feather","Billie Eilish","5","0","0","","2024-10-18","","False",'
    '"210373","","2024-05-17","","","","","","","","","","","",""',
]


def test_the_public_files_rows_are_all_kept_with_their_values(lake: Lake, settings):
    path = settings.landing_dir / "universal_top_spotify_songs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([KAGGLE_HEADER, *KAGGLE_ROWS]) + "\n", encoding="utf-8")
    [result] = ingest_landing(lake, [path])
    assert (result.status, result.rows_read, result.rows_raw, result.rows_quarantined) == ("ingested", 5, 5, 0)
    with lake.connection(read_only=True) as con:
        rows = con.execute(f"""
            SELECT name, country, is_explicit, album_release_date, {RELEASE_DATE_PRECISION},
                   {release_date_text("album_release_date", RELEASE_DATE_PRECISION)}, key, tempo, time_signature,
                   popularity, album_name, danceability
            FROM raw.chart_rows ORDER BY source_row""").fetchall()
    smile, rhapsody, apt, barbie, feather = rows
    assert smile[1:6] == ("", False, date(2024, 8, 16), "day", "2024-08-16")  # "" country: the global chart
    assert rhapsody[3:9] == (date(1975, 1, 1), "year", "1975", -1, 0.0, 0)
    assert apt[0] == "APT." and apt[3:6] == (date(2024, 10, 1), "month", "2024-10") and apt[8] == 1
    assert barbie[0] == 'What Was I Made For? [From "Barbie The Album"]'
    assert feather[9:] == (None, None, None)  # "" is null: popularity, album name and the audio features


def test_a_generated_dump_in_the_public_style_keeps_every_row(lake: Lake, settings):
    manifest = generate(GeneratorConfig(
        out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=3, songs=6000, countries=6,
        history_days=30, increments=1, start_date=date(2024, 6, 1), fmt="csv", csv_quoting="all",
        faults={"missing_audio_features": 3}))
    files = landing_files(settings.landing_dir)
    history = files[0].read_text(encoding="utf-8").splitlines()
    assert history[0] == KAGGLE_HEADER
    assert all(line.startswith('"') and line.endswith('"') for line in history[1:])
    assert any(',"",' in line.split('"snapshot_date"')[0] for line in history[1:])  # global chart: ""

    with lake.connection() as con:  # the quirks are there, in the text as written
        text = f"read_csv({[str(f) for f in files]}, header=true, all_varchar=true)"
        quirks = con.execute(f"""
            SELECT count(*) FILTER (WHERE length(album_release_date) = 4),
                   count(*) FILTER (WHERE length(album_release_date) = 7),
                   count(*) FILTER (WHERE key = '-1'), count(*) FILTER (WHERE time_signature = '0'),
                   count(*) FILTER (WHERE time_signature = '1'), count(*) FILTER (WHERE tempo::DOUBLE = 0),
                   count(*) FILTER (WHERE name LIKE '%"%'), count(*) FILTER (WHERE regexp_matches(name, '[^\\x00-\\x7F]')),
                   count(*) FILTER (WHERE {' AND '.join(f'{c} IS NULL' for c in AUDIO_FEATURES)}),
                   count(*) FILTER (WHERE country IS NULL)
            FROM {text}""").fetchone()
    names = ("year dates", "month dates", "key -1", "time_signature 0", "time_signature 1", "tempo 0",
             "quotes in titles", "unicode titles", "no audio features", "global chart")
    assert all(n > 0 for n in quirks), dict(zip(names, quirks))

    results = ingest_landing(lake, files)
    assert [(r.status, r.rows_quarantined) for r in results] == [("ingested", 0)] * len(files)
    assert sum(r.rows_raw for r in results) == manifest["total_rows"]
    with lake.connection(read_only=True) as con:
        # the stored date and precision give back the text of the file, row for row
        differ = con.execute(f"""
            SELECT count(*) FROM raw.chart_rows r
            JOIN (SELECT row_number() OVER () AS source_row, album_release_date AS text FROM
                  read_csv('{files[0]}', header=true, all_varchar=true)) f USING (source_row)
            WHERE r.source_file = '{files[0].name}'
              AND {release_date_text("r.album_release_date", "r." + RELEASE_DATE_PRECISION)} IS DISTINCT FROM f.text
            """).fetchone()[0]
    assert differ == 0


def test_a_lake_ingested_before_release_date_precision_gains_it(lake: Lake, settings):
    from hit_platform.adapters.lake.tables import FILES_DDL, QUARANTINE_DDL, RAW_DDL, SEQUENCE_DDL

    old_raw = RAW_DDL.replace(f", {RELEASE_DATE_PRECISION} VARCHAR)", ")")
    assert old_raw != RAW_DDL

    def old_lake(con):
        for ddl in (old_raw, QUARANTINE_DDL, FILES_DDL, SEQUENCE_DDL):
            con.execute(ddl)
        con.execute("INSERT INTO raw.ingest_sequence VALUES (0)")
        con.execute("INSERT INTO raw.chart_rows (spotify_id, daily_rank, snapshot_date, album_release_date) "
                    "VALUES ('old', 1, DATE '2024-01-01', DATE '2023-12-01'), ('old2', 2, DATE '2024-01-01', NULL)")
    lake.write(old_lake)
    path = settings.landing_dir / "universal_top_spotify_songs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([KAGGLE_HEADER, *KAGGLE_ROWS]) + "\n", encoding="utf-8")
    [result] = ingest_landing(lake, [path])
    assert result.rows_raw == 5
    with lake.connection(read_only=True) as con:
        precisions = con.execute(f"SELECT spotify_id, {RELEASE_DATE_PRECISION} FROM raw.chart_rows "
                                 "ORDER BY source_file NULLS FIRST, source_row, spotify_id").fetchall()
    assert precisions[:2] == [("old", "day"), ("old2", None)]  # whole days were all the old ingest kept
    assert [p for _, p in precisions[2:]] == ["day", "year", "month", "day", "day"]
