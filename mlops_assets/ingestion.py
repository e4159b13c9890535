"""Bulk loading of Parquet/CSV files into the raw warehouse tables, under a data contract.

One load is one DuckDB transaction: rows that keep the contract are appended unless their
id is already stored (so loading a file twice adds nothing), rows that break it go to
`raw.rejected_rows` with the reason, and a file that cannot be read at all (missing file,
missing required column) raises `InputFileError` before anything is written.
"""
import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from mlops_assets.contracts import Contract, Field

REJECTED_ROWS = "raw.rejected_rows"
# Columns that must never be stored even when a file carries them: raw card numbers are
# tokenized by the ingestion service before they reach Kafka or the warehouse.
NEVER_STORED_COLUMNS = ("card_number",)
# Staging column that carries why a message could not be parsed at all.
PARSE_ERROR = "_parse_error"
RAW_MESSAGE = "_raw_message"  # kept in the rejected record of a message that is not JSON

_TYPE_PROBLEMS = {
    "VARCHAR": "is not text",
    "DOUBLE": "is not a number",
    "INTEGER": "is not an integer",
    "TIMESTAMP": "is not an ISO-8601 time",
}


class InputFileError(ValueError):
    """The input file cannot be loaded at all; the message says what to fix."""


@dataclass
class LoadReport:
    """What one load did, for asset metadata and logs."""

    source: str
    rows_read: int
    rows_loaded: int
    rows_duplicate: int
    rows_rejected: int
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    dropped_columns: tuple[str, ...] = ()

    def summary(self) -> str:
        return (
            f"{self.rows_read:,} rows read: {self.rows_loaded:,} new, "
            f"{self.rows_duplicate:,} already stored, {self.rows_rejected:,} rejected"
        )

    def as_metadata(self) -> dict[str, object]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_already_stored": self.rows_duplicate,
            "rows_rejected": self.rows_rejected,
            "rejection_reasons": str(self.rejection_reasons or "none"),
            "columns_never_stored": str(list(self.dropped_columns) or "none"),
        }


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Creates the contract's table and the rejected-rows table if they do not exist."""
    columns = [f"{f.name} {f.sql_type}" for f in contract.fields]
    if contract.keeps_extra_fields:
        columns.append("extra_fields JSON")
    columns += ["ingested_at TIMESTAMP", "ingest_run_id VARCHAR"]
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {contract.table.split('.')[0]}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {contract.table} ({', '.join(columns)})")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {REJECTED_ROWS} (input VARCHAR, source VARCHAR, "
        "reason VARCHAR, record JSON, record_hash VARCHAR, rejected_at TIMESTAMP, run_id VARCHAR)"
    )


def load_file(
    con: duckdb.DuckDBPyConnection, contract: Contract, path: str, run_id: str
) -> LoadReport:
    """Loads one Parquet/CSV file (or glob of files) into the contract's table."""
    return _load(con, contract, f"SELECT * FROM {_reader_sql(path)}", path, run_id)


def load_messages(
    con: duckdb.DuckDBPyConnection, contract: Contract, messages: list[bytes], source: str, run_id: str
) -> LoadReport:
    """Loads JSON messages (e.g. read from Kafka) into the contract's table; a message that is
    not a JSON object is rejected with that reason like any other bad row."""
    con.register("incoming_messages", _messages_frame(contract, messages))
    try:
        return _load(con, contract, "SELECT * FROM incoming_messages", source, run_id)
    finally:
        con.unregister("incoming_messages")


def _messages_frame(contract: Contract, messages: list[bytes]) -> pd.DataFrame:
    """One row per message, every value as text (the contract's casts decide the types)."""
    rows = []
    for message in messages:
        try:
            record = json.loads(message)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            rows.append({PARSE_ERROR: "message: is not a JSON object", RAW_MESSAGE: message.decode(errors="replace")})
            continue
        rows.append({key: None if value is None else value if isinstance(value, str) else json.dumps(value)
                     for key, value in record.items()})
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys([f.name for f in contract.fields] + [PARSE_ERROR]
                                                           + [key for row in rows for key in row])))
    return frame.astype(object).where(frame.notna(), None).astype("string")


def _load(con: duckdb.DuckDBPyConnection, contract: Contract, staging_query: str, source: str, run_id: str) -> LoadReport:
    ensure_tables(con, contract)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE staged AS {staging_query}")
        present = [row[0] for row in con.execute("DESCRIBE staged").fetchall()]
        _require_columns(contract, present, source)
        con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS {_checked_sql(contract, present)}")
        report = _apply(con, contract, source, run_id)
        report.dropped_columns = tuple(c for c in present if c in NEVER_STORED_COLUMNS)
        con.execute("DROP TABLE staged")
        con.execute("DROP TABLE checked")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return report


def _reader_sql(path: str) -> str:
    matches = sorted(glob.glob(path))
    if not matches:
        raise InputFileError(f"no file matches {path!r}: check the path in the run config")
    suffixes = {Path(match).suffix.lower() for match in matches}
    quoted = "[" + ", ".join(_quote(match) for match in matches) + "]"
    if suffixes == {".parquet"}:
        return f"read_parquet({quoted}, union_by_name = true)"
    if suffixes == {".csv"}:
        # Everything as text: the contract, not CSV sniffing, decides types (ids stay strings).
        return f"read_csv({quoted}, header = true, all_varchar = true, union_by_name = true)"
    raise InputFileError(
        f"{path!r} matches files of type {sorted(suffixes)}; use .parquet or .csv files, "
        "one type per load"
    )


def _require_columns(contract: Contract, present: list[str], path: str) -> None:
    missing = [f.name for f in contract.required_fields if f.name not in present]
    if missing:
        raise InputFileError(
            f"{path} is not a {contract.name} file: it lacks required column(s) "
            f"{', '.join(missing)} (it has {', '.join(present)}); see the data contract in DESIGN.md"
        )


def _typed(field: Field, column: str) -> str:
    if field.sql_type == "TIMESTAMP":
        # Times are stored as UTC; an offset in the input is honoured, none means UTC.
        return f"timezone('UTC', TRY_CAST({column} AS TIMESTAMPTZ))"
    return f"TRY_CAST({column} AS {field.sql_type})"


def _reason_sql(contract: Contract, present: list[str]) -> str:
    """The first broken rule of a row, as `field: problem (got value)`, or NULL."""
    cases = [f"WHEN s.{PARSE_ERROR} IS NOT NULL THEN s.{PARSE_ERROR}"] if PARSE_ERROR in present else []
    for f in contract.fields:
        if f.name not in present:
            continue
        raw = f"s.{_quote_identifier(f.name)}"
        shown = f"' (got ' || left(CAST({raw} AS VARCHAR), 80) || ')'"
        if f.required:
            cases.append(f"WHEN {raw} IS NULL THEN '{f.name}: is missing'")
        cases.append(
            f"WHEN {raw} IS NOT NULL AND {_typed(f, raw)} IS NULL "
            f"THEN '{f.name}: {_TYPE_PROBLEMS[f.sql_type]}' || {shown}"
        )
        if f.rule:
            cases.append(f"WHEN NOT ({_rule_on(f, raw)}) THEN '{f.name}: {f.rule_text}' || {shown}")
    return "CASE " + " ".join(cases) + " END"


def _rule_on(field: Field, raw: str) -> str:
    """The field's rule with its value placeholder `v` replaced by the typed value."""
    return re.sub(r"\bv\b", _typed(field, raw), field.rule)


def _checked_sql(contract: Contract, present: list[str]) -> str:
    typed = [
        f"{_typed(f, 's.' + _quote_identifier(f.name))} AS {f.name}" if f.name in present else f"NULL AS {f.name}"
        for f in contract.fields
    ]
    if contract.keeps_extra_fields:
        known = {f.name for f in contract.fields} | set(NEVER_STORED_COLUMNS) | {PARSE_ERROR, RAW_MESSAGE}
        extras = [c for c in present if c not in known]
        packed = ", ".join(f"{_quote_identifier(c)} := s.{_quote_identifier(c)}" for c in extras)
        typed.append(
            f"nullif(json_strip_nulls(to_json(struct_pack({packed}))), '{{}}') AS extra_fields"
            if extras
            else "NULL::JSON AS extra_fields"
        )
    stored = [c for c in present if c not in NEVER_STORED_COLUMNS and c != PARSE_ERROR]
    record = ", ".join(f"{_quote_identifier(c)} := s.{_quote_identifier(c)}" for c in stored)
    return (
        f"SELECT s.rowid AS _row, {', '.join(typed)},\n"
        f"  {_reason_sql(contract, present)} AS _reason,\n"
        f"  json_strip_nulls(to_json(struct_pack({record}))) AS _record\n"
        "FROM staged AS s"
    )


def _apply(con: duckdb.DuckDBPyConnection, contract: Contract, source: str, run_id: str) -> LoadReport:
    rows_read = con.execute("SELECT count(*) FROM checked").fetchone()[0]
    rejected = con.execute(
        "SELECT regexp_replace(_reason, ' \\(got .*\\)$', ''), count(*) FROM checked "
        "WHERE _reason IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    con.execute(
        f"INSERT INTO {REJECTED_ROWS} "
        "SELECT ?, ?, _reason, _record, md5(_record), now(), ? FROM checked AS c "
        "WHERE _reason IS NOT NULL AND NOT EXISTS ("
        f"  SELECT 1 FROM {REJECTED_ROWS} AS r WHERE r.input = ? AND r.record_hash = md5(c._record))",
        [contract.name, source, run_id, contract.name],
    )
    columns = [f.name for f in contract.fields] + (
        ["extra_fields"] if contract.keeps_extra_fields else []
    )
    keys = ", ".join(contract.keys)
    same_row = " AND ".join(f"x.{key} = c.{key}" for key in contract.keys)
    before = con.execute(f"SELECT count(*) FROM {contract.table}").fetchone()[0]
    con.execute(
        f"INSERT INTO {contract.table} ({', '.join(columns)}, ingested_at, ingest_run_id)\n"
        f"SELECT {', '.join(columns)}, now(), ? FROM (\n"
        "  SELECT * FROM checked WHERE _reason IS NULL\n"
        f"  QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _row) = 1\n"
        f") AS c WHERE NOT EXISTS (SELECT 1 FROM {contract.table} AS x WHERE {same_row})\n"
        "ORDER BY _row",
        [run_id],
    )
    loaded = con.execute(f"SELECT count(*) FROM {contract.table}").fetchone()[0] - before
    rows_rejected = sum(count for _, count in rejected)
    return LoadReport(
        source=source,
        rows_read=rows_read,
        rows_loaded=loaded,
        rows_duplicate=rows_read - rows_rejected - loaded,
        rows_rejected=rows_rejected,
        rejection_reasons=dict(rejected),
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
