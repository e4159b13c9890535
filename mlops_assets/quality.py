"""Data-quality checks on warehouse tables, as Dagster asset checks.

Each `*_check` function runs one SQL probe and returns an `AssetCheckResult` whose metadata
shows what was found (counts and a few offending ids). `warehouse_check` wraps such a probe
into an asset check definition that opens the warehouse itself.
"""
from collections.abc import Callable

import duckdb
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    asset_check,
)

from mlops_assets.resources.warehouse import WarehouseResource

Probe = Callable[[duckdb.DuckDBPyConnection], AssetCheckResult]


def warehouse_check(
    asset: str, name: str, description: str, probe: Probe, blocking: bool = False
) -> AssetChecksDefinition:
    """An asset check on `asset` that runs `probe` on a warehouse connection."""

    @asset_check(asset=asset, name=name, description=description, blocking=blocking)
    def _check(warehouse: WarehouseResource) -> AssetCheckResult:
        with warehouse.connect() as con:
            return probe(con)

    return _check


def unique_key_check(con: duckdb.DuckDBPyConnection, table: str, key: str) -> AssetCheckResult:
    duplicated = con.execute(
        f"SELECT {key}, count(*) FROM {table} GROUP BY {key} HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 5"
    ).fetchall()
    total = con.execute(
        f"SELECT count(*) FROM (SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1)"
    ).fetchone()[0]
    return AssetCheckResult(
        passed=total == 0,
        metadata={"duplicated_ids": total, "examples": str([row[0] for row in duplicated])},
    )


def not_null_check(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> AssetCheckResult:
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {c} IS NULL)" for c in columns) + f" FROM {table}"
    ).fetchone()
    nulls = dict(zip(columns, counts))
    return AssetCheckResult(
        passed=not any(nulls.values()), metadata={f"null_{c}": n for c, n in nulls.items()}
    )


def value_range_check(
    con: duckdb.DuckDBPyConnection, table: str, ranges: dict[str, tuple[float | None, float | None]]
) -> AssetCheckResult:
    """Counts values outside [low, high] per column (NULL means "no value", not a violation)."""
    bounded = {c: r for c, r in ranges.items() if r != (None, None)}
    if not bounded:
        return AssetCheckResult(passed=True, metadata={"columns_checked": 0})
    conditions = {
        column: " OR ".join(
            condition
            for condition in (
                f"{column} < {low}" if low is not None else None,
                f"{column} > {high}" if high is not None else None,
                f"isnan({column})",
            )
            if condition
        )
        for column, (low, high) in bounded.items()
    }
    counts = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE {cond})" for cond in conditions.values())
        + f" FROM {table}"
    ).fetchone()
    violations = {column: n for column, n in zip(conditions, counts) if n}
    return AssetCheckResult(
        passed=not violations,
        metadata={"columns_checked": len(bounded), "out_of_range": str(violations or "none")},
    )


def daily_coverage_check(
    con: duckdb.DuckDBPyConnection, table: str, time_column: str
) -> AssetCheckResult:
    """Every calendar day between the first and the last event has data (no missing load)."""
    first, last, days_with_data = con.execute(
        f"SELECT min({time_column})::DATE, max({time_column})::DATE, "
        f"count(DISTINCT {time_column}::DATE) FROM {table}"
    ).fetchone()
    if first is None:
        return AssetCheckResult(passed=False, metadata={"reason": "the table is empty"})
    expected = (last - first).days + 1
    return AssetCheckResult(
        passed=days_with_data == expected,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "first_day": str(first),
            "last_day": str(last),
            "days_without_data": expected - days_with_data,
        },
    )


def same_rows_check(
    con: duckdb.DuckDBPyConnection, table: str, reference: str, key: str, time_column: str
) -> AssetCheckResult:
    """`table` has exactly one row per row of `reference`, over the same time range."""
    missing, extra = con.execute(
        f"SELECT (SELECT count(*) FROM {reference} r ANTI JOIN {table} t USING ({key})), "
        f"(SELECT count(*) FROM {table} t ANTI JOIN {reference} r USING ({key}))"
    ).fetchone()
    ranges = con.execute(
        f"SELECT (SELECT min({time_column}) FROM {table}), (SELECT max({time_column}) FROM {table}), "
        f"(SELECT min({time_column}) FROM {reference}), (SELECT max({time_column}) FROM {reference})"
    ).fetchone()
    return AssetCheckResult(
        passed=missing == 0 and extra == 0 and ranges[:2] == ranges[2:],
        metadata={
            "missing_rows": missing,
            "unexpected_rows": extra,
            "time_range": f"{ranges[0]} .. {ranges[1]}",
            "expected_time_range": f"{ranges[2]} .. {ranges[3]}",
        },
    )
