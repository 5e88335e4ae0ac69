"""The per-row rules, as SQL generated from the one schema, and the one pass over a staged file that
types every value and gives each row the first rule it breaks (`classify_sql`).

A row gets at most one reason, in a fixed order: missing required value, wrong type, out of range,
unknown country; then (`quarantine.find_duplicates`) exact duplicate, key duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass

from hit_platform.domain.columns import (COLUMN_NAMES, DUMP_COLUMNS, RELEASE_DATE_FORMATS, RELEASE_DATE_PRECISION,
                                         Column)
from hit_platform.domain.countries import COUNTRIES, GLOBAL_CHART

CLASSIFIED = "classified"  # temp table in the ingesting connection, not in the lake
# What a raw row holds: the dump's values (with the release date's precision), then its lineage.
RAW_VALUES = (*COLUMN_NAMES, RELEASE_DATE_PRECISION)

# Reasons a row is quarantined, in the order they are checked.
REASONS = ("missing_value", "wrong_type", "out_of_range", "unknown_country",
           "exact_duplicate", "key_duplicate")


def sql_literal(s: str) -> str:
    """`s` as a SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


@dataclass(frozen=True)
class Rule:
    reason: str
    column: str
    condition: str  # over text columns `v_<name>` and typed columns `t_<name>`
    detail: str  # SQL over the text columns


def _release_date(v: str) -> str:
    """A release date at day ("2024-08-16"), month ("2024-01") or year ("1975") precision as the
    first day of its period (NULL when it does not parse)."""
    t = f"trim({v})"
    return (f"(CASE length({t}) WHEN 4 THEN TRY_CAST({t} || '-01-01' AS DATE) "
            f"WHEN 7 THEN TRY_CAST({t} || '-01' AS DATE) ELSE TRY_CAST({t} AS DATE) END)")


def _release_date_precision(v: str, date: str) -> str:
    """'day', 'month' or 'year': the precision of the text `v` that parsed as `date`."""
    t = f"length(trim({v}))"
    return f"(CASE WHEN {date} IS NULL THEN NULL WHEN {t} = 4 THEN 'year' WHEN {t} = 7 THEN 'month' ELSE 'day' END)"


def release_date_text(date: str, precision: str) -> str:
    """SQL for the dump's text of a stored release date: the inverse of `_release_date`."""
    formats = " ".join(f"WHEN '{p}' THEN strftime({date}, '{f}')" for p, f in RELEASE_DATE_FORMATS.items())
    return f"(CASE {precision} {formats} END)"


def _typed(c: Column, v: str) -> str:
    """SQL for a text value cast to the column's type (NULL when it does not parse)."""
    if c.name == "album_release_date":
        return _release_date(v)
    if c.sql_type == "INTEGER":
        # '3.0' is an integer written by a float-typed writer; '3.5' and '3rd' are not.
        d = f"TRY_CAST({v} AS DOUBLE)"
        return f"(CASE WHEN {d} = floor({d}) THEN TRY_CAST({d} AS INTEGER) END)"
    if c.name == "country":
        return f"coalesce(trim({v}), '{GLOBAL_CHART}')"
    if c.sql_type == "VARCHAR":
        return v
    return f"TRY_CAST({v} AS {c.sql_type})"


def _num(x: float | None) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


def _text(name: str, native: frozenset[str] = frozenset()) -> str:
    """SQL for a column's text as written: `v_<name>`, or for a column the file already holds in the
    lake's type (`native`: Parquet), the text of its value `t_<name>`, made only where it is used."""
    return f"CAST(t_{name} AS VARCHAR)" if name in native else f"v_{name}"


def _missing(c: Column, v: str) -> str:
    blank = f"{v} IS NULL OR trim({v}) = ''"
    if c.sql_type == "VARCHAR":
        return blank
    # A blank text never parses as a number, date or boolean: only the values that did not parse are trimmed.
    return f"t_{c.name} IS NULL AND ({blank})"


def _out_of_range(c: Column) -> str:
    t = f"t_{c.name}"
    if c.min is not None and c.max is not None:
        return f"{t} NOT BETWEEN {c.min} AND {c.max}"  # DuckDB sorts NaN above every number: it is outside too
    bounds = [f"{t} < {c.min}"] if c.min is not None else [f"{t} > {c.max}"]
    if c.sql_type == "DOUBLE":
        bounds.append(f"isnan({t})")
    return " OR ".join(bounds)


def row_rules(native: frozenset[str] = frozenset()) -> list[Rule]:
    """The per-row rules in checking order; a row gets the first one it breaks. Each condition tests
    the cheap typed value first, so a good row costs few string operations."""
    rules = [Rule("missing_value", c.name, _missing(c, _text(c.name, native)),
                  f"'missing value in required column {c.name}'") for c in DUMP_COLUMNS if c.required]
    rules += [Rule("wrong_type", c.name, f"t_{c.name} IS NULL AND {_text(c.name, native)} IS NOT NULL",
                   f"'{c.name}=' || {c.name} || ' is not a valid {c.sql_type}'")
              for c in DUMP_COLUMNS if c.sql_type != "VARCHAR"]
    rules += [Rule("out_of_range", c.name, _out_of_range(c),
                   f"'{c.name}=' || {c.name} || ' outside [{_num(c.min)}, {_num(c.max)}]'")
              for c in DUMP_COLUMNS if c.min is not None or c.max is not None]
    known = ", ".join(sql_literal(x) for x in COUNTRIES)
    rules.append(Rule("unknown_country", "country", f"t_country <> '{GLOBAL_CHART}' AND t_country NOT IN ({known})",
                      "'unknown country code ' || country || ' (not one of the 72, nor empty for global)'"))
    return rules


# Duplicate rules come after the row rules; their codes follow the row rules' codes.
DUPLICATE_RULES = (
    Rule("exact_duplicate", "spotify_id", "", "'exact duplicate of ' || other"),
    Rule("key_duplicate", "spotify_id", "", "'duplicate key (snapshot_date, country, spotify_id) of ' || other"),
    Rule("key_duplicate", "daily_rank", "", "'duplicate key (snapshot_date, country, daily_rank) of ' || other"),
)


def classify_sql(reader: str, source_types: dict[str, str]) -> str:
    """One pass over the file: typed values, the code of the first rule broken (`rule`, NULL =
    good) and, for bad rows only, the original text of every column (`text`, a list in column
    order: one NULL per good row instead of 25). The table keeps the file's order (DuckDB preserves
    insertion order), so its rowid + 1 is the row's 1-based position in the file.

    `source_types` are the reader's column types: CSV columns are all text; a Parquet column already
    in the lake's type is kept as it is instead of being cast to text and parsed back."""
    native = frozenset(c.name for c in DUMP_COLUMNS if c.sql_type != "VARCHAR" and source_types[c.name] == c.sql_type)
    rules = row_rules(native)
    source = ", ".join(c if c in native else f"CAST({c} AS VARCHAR) AS {c}" for c in COLUMN_NAMES)
    inner = ", ".join(f"{c.name} AS t_{c.name}" if c.name in native
                      else f"{c.name} AS v_{c.name}, {_typed(c, c.name)} AS t_{c.name}" for c in DUMP_COLUMNS)
    rule_case = "CASE " + " ".join(f"WHEN {r.condition} THEN {i}" for i, r in enumerate(rules)) + " END"
    precision = _release_date_precision(_text("album_release_date", native), "t_album_release_date")
    typed = ", ".join(f"t_{c} AS {c}" for c in COLUMN_NAMES) + f", {precision} AS {RELEASE_DATE_PRECISION}"
    text = ", ".join(_text(c, native) for c in COLUMN_NAMES)
    return f"""
        CREATE OR REPLACE TEMP TABLE {CLASSIFIED} AS
        SELECT {typed}, rule, CASE WHEN rule IS NOT NULL THEN [{text}] END AS text FROM (
            SELECT *, {rule_case} AS rule FROM (SELECT {inner} FROM (SELECT {source} FROM {reader})))"""
