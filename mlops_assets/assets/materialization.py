"""What every warehouse asset reports when it is materialized: lineage and UI metadata."""
from typing import Any

import duckdb
from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
)

from mlops_assets.lineage import record_lineage


def warehouse_materialization(
    context: AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    table: str,
    upstream: list[str],
    time_column: str | None = "event_time",
    extra_metadata: dict[str, Any] | None = None,
) -> MaterializeResult:
    """Records the lineage row of `table` and returns its metadata and data version."""
    record = record_lineage(con, context.asset_key.to_user_string(), context.run.run_id, table, time_column, upstream)
    columns = con.execute(f"DESCRIBE {table}").fetchall()
    preview = con.execute(f"SELECT * FROM {table} LIMIT 5").df()
    metadata: dict[str, Any] = {
        "dagster/row_count": record.row_count,
        "dagster/table_name": table,
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name=name, type=column_type) for name, column_type, *_ in columns]
        ),
        "data_version": record.data_version,
        "upstream_data_versions": MetadataValue.json(record.upstream_data_versions),
        "preview": MetadataValue.md(preview.to_markdown(index=False)),
    }
    if time_column:
        metadata["time_range_start"] = str(record.time_min)
        metadata["time_range_end"] = str(record.time_max)
    metadata.update(extra_metadata or {})
    context.log.info(f"{table}: {record.row_count:,} rows, data version {record.data_version}")
    return MaterializeResult(metadata=metadata, data_version=DataVersion(record.data_version))
