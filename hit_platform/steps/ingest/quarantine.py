"""The staged file's bad rows: the good rows that repeat an earlier one (in the file, or already in
`raw.chart_rows`), and every bad row as the text it was written with, its reason, column and value,
for `quarantine.chart_rows`."""

from __future__ import annotations

import duckdb

from hit_platform.domain.columns import CHART_KEYS, COLUMN_NAMES, RELEASE_DATE_PRECISION
from hit_platform.steps.ingest.rules import (CLASSIFIED, DUPLICATE_RULES, RAW_VALUES, release_date_text, row_rules,
                                             sql_literal)


def find_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table `duplicates` (source_row, rule, other): good rows that repeat an earlier row.

    Must run inside the write transaction: keys are also checked against what
    `raw.chart_rows` holds at that snapshot (earlier files come first).
    """
    rules = row_rules()
    exact, key_id, key_rank = (len(rules) + i for i in range(3))
    con.execute("CREATE OR REPLACE TEMP TABLE duplicates (source_row BIGINT, rule INTEGER, other VARCHAR)")
    con.execute(f"CREATE OR REPLACE TEMP VIEW file_rows AS SELECT rowid + 1 AS source_row, * FROM {CLASSIFIED}")
    id_key, rank_key = ", ".join(CHART_KEYS[1]), ", ".join(CHART_KEYS[0])
    # Duplicates are rare: find the repeated keys with a hash aggregate, then order only their rows.
    # An exact duplicate (all 25 values equal to an earlier row) always repeats the id key too.
    con.execute(f"""
        INSERT INTO duplicates
        WITH repeated AS (
            SELECT c.* FROM file_rows c
            SEMI JOIN (SELECT {id_key} FROM file_rows WHERE rule IS NULL GROUP BY ALL HAVING count(*) > 1) k
                USING ({id_key})
            WHERE c.rule IS NULL),
        ranked AS (
            SELECT source_row,
                   min(source_row) OVER (PARTITION BY hash({", ".join(RAW_VALUES)})) AS first_same,
                   min(source_row) OVER (PARTITION BY {id_key}) AS first_key
            FROM repeated)
        SELECT source_row, CASE WHEN first_same < source_row THEN {exact} ELSE {key_id} END,
               'row ' || CASE WHEN first_same < source_row THEN first_same ELSE first_key END
        FROM ranked WHERE first_key < source_row""")
    con.execute(f"""
        INSERT INTO duplicates
        WITH good AS (SELECT c.source_row, {rank_key} FROM file_rows c ANTI JOIN duplicates d USING (source_row)
                      WHERE c.rule IS NULL)
        SELECT source_row, {key_rank}, 'row ' || first_row FROM (
            SELECT source_row, min(source_row) OVER (PARTITION BY {rank_key}) AS first_row
            FROM good SEMI JOIN (SELECT {rank_key} FROM good GROUP BY ALL HAVING count(*) > 1) k
                USING ({rank_key}))
        WHERE first_row < source_row""")
    # Keys already in raw from earlier files (only the file's dates are scanned; the
    # first file of a lake, or one with new days only, skips this).
    overlap = con.execute(f"""
        SELECT count(*) FROM (SELECT 1 FROM raw.chart_rows WHERE snapshot_date BETWEEN
            (SELECT min(snapshot_date) FROM {CLASSIFIED}) AND (SELECT max(snapshot_date) FROM {CLASSIFIED})
            LIMIT 1)""").fetchall()[0][0]
    for key, code in ((CHART_KEYS[1], key_id), (CHART_KEYS[0], key_rank)) if overlap else ():
        on = " AND ".join(f"k.{c} = r.{c}" for c in key)
        con.execute(f"""
            INSERT INTO duplicates
            WITH good AS (SELECT c.* FROM file_rows c ANTI JOIN duplicates d USING (source_row)
                          WHERE c.rule IS NULL)
            SELECT k.source_row, {code}, 'a row already in raw from ' || any_value(r.source_file)
            FROM good k JOIN raw.chart_rows r ON {on}
            WHERE r.snapshot_date BETWEEN (SELECT min(snapshot_date) FROM good)
                                      AND (SELECT max(snapshot_date) FROM good)
            GROUP BY k.source_row""")


def quarantine_select(file_sql: str) -> str:
    """Bad rows as text with reason, column, value and detail. Rows broken by a row rule keep
    their original text; duplicates are valid rows, stored as their values' text."""
    rules = [*row_rules(), *DUPLICATE_RULES]

    def case(f) -> str:
        return "CASE b.rule " + " ".join(f"WHEN {i} THEN {f(r)}" for i, r in enumerate(rules)) + " END"
    def as_text(c: str) -> str:
        if c == "album_release_date":
            return release_date_text(f"s.{c}", f"s.{RELEASE_DATE_PRECISION}")
        return f"CAST(s.{c} AS VARCHAR)"
    text = ", ".join(f"coalesce(s.text[{i}], {as_text(c)}) AS {c}" for i, c in enumerate(COLUMN_NAMES, 1))
    return f"""
        SELECT {', '.join(COLUMN_NAMES)}, {file_sql}, source_row, now(),
               {case(lambda r: sql_literal(r.reason))}, {case(lambda r: sql_literal(r.column))},
               {case(lambda r: r.column)}, {case(lambda r: r.detail.replace('other', 'b.other'))}
        FROM (SELECT b.source_row, b.rule, b.other, {text}
              FROM (SELECT source_row, rule, NULL AS other FROM file_rows WHERE rule IS NOT NULL
                    UNION ALL SELECT source_row, rule, other FROM duplicates) b
              JOIN file_rows s USING (source_row)) b
        ORDER BY source_row"""


def quarantined_by_reason(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The staged file's bad rows by reason, counted in the temp tables (not in the lake's quarantine,
    which holds every file's rows)."""
    reasons = [r.reason for r in (*row_rules(), *DUPLICATE_RULES)]
    counts: dict[str, int] = {}
    for code, n in con.execute(f"""
            SELECT rule, count(*) FROM (SELECT rule FROM {CLASSIFIED} WHERE rule IS NOT NULL
                                        UNION ALL SELECT rule FROM duplicates)
            GROUP BY rule""").fetchall():
        counts[reasons[code]] = counts.get(reasons[code], 0) + n
    return dict(sorted(counts.items()))
