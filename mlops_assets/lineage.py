"""The lineage table: one row per materialization of every warehouse asset.

`meta.lineage` records which asset was built, by which Dagster run, its data version (a hash
of the table's content), the data versions of the upstream assets it was built from, its row
count and the time range it covers. It answers "which data produced this table?" from SQL.
"""
import json
from dataclasses import dataclass
from datetime import datetime

import duckdb

LINEAGE_TABLE = "meta.lineage"
# Audit columns that say when a row was stored, not what it says: left out of the content hash.
AUDIT_COLUMNS = ("ingested_at", "ingest_run_id")


@dataclass(frozen=True)
class LineageRecord:
    asset: str
    run_id: str
    data_version: str
    upstream_data_versions: dict[str, str | None]
    row_count: int
    time_min: datetime | None
    time_max: datetime | None


def ensure_lineage_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {LINEAGE_TABLE} (asset VARCHAR, run_id VARCHAR, "
        "data_version VARCHAR, upstream_data_versions JSON, row_count BIGINT, "
        "time_min TIMESTAMP, time_max TIMESTAMP, materialized_at TIMESTAMP)"
    )


def latest_data_versions(con: duckdb.DuckDBPyConnection, assets: list[str]) -> dict[str, str | None]:
    """The most recent recorded data version of each asset (None if never materialized)."""
    ensure_lineage_table(con)
    rows = con.execute(
        f"SELECT asset, arg_max(data_version, materialized_at) FROM {LINEAGE_TABLE} "
        "WHERE list_contains(?, asset) GROUP BY asset",
        [assets],
    ).fetchall()
    found = dict(rows)
    return {asset: found.get(asset) for asset in assets}


def record_lineage(
    con: duckdb.DuckDBPyConnection,
    asset: str,
    run_id: str,
    table: str,
    time_column: str | None,
    upstream: list[str],
) -> LineageRecord:
    """Measures `table` and appends its lineage row."""
    ensure_lineage_table(con)
    excluded = ", ".join(f"'{column}'" for column in AUDIT_COLUMNS)
    time_range = f"min({time_column}), max({time_column})" if time_column else "NULL, NULL"
    row_count, time_min, time_max, content_hash = con.execute(
        f"SELECT count(*), {time_range}, "
        f"md5(CAST(coalesce(sum(hash(*COLUMNS(lambda c: c NOT IN ({excluded})))), 0) AS VARCHAR)) "
        f"FROM {table}"
    ).fetchone()
    record = LineageRecord(
        asset=asset,
        run_id=run_id,
        data_version=f"{row_count}-{content_hash[:16]}",
        upstream_data_versions=latest_data_versions(con, upstream),
        row_count=row_count,
        time_min=time_min,
        time_max=time_max,
    )
    con.execute(
        f"INSERT INTO {LINEAGE_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, now())",
        [
            record.asset,
            record.run_id,
            record.data_version,
            json.dumps(record.upstream_data_versions),
            record.row_count,
            record.time_min,
            record.time_max,
        ],
    )
    return record
