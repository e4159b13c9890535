"""Feature groups, label groups and feature views: assets generated from `feature_definitions/`.

Nothing here names a feature: each definition in the catalog becomes one asset (a table built
by the compiled SQL) with its checks, so adding a feature is a YAML change alone. An asset's
code version is its definition's version, so the UI marks it stale when the definition
changes.
"""
import time

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, asset

from mlops_assets.assets.materialization import warehouse_materialization
from mlops_assets.contracts import CONTRACTS, TRANSACTIONS
from mlops_assets.features.catalog import (
    FeatureCatalog,
    FeatureGroup,
    FeatureView,
    LabelGroup,
)
from mlops_assets.features.offline import (
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.quality import (
    not_null_check,
    same_rows_check,
    unique_key_check,
    value_range_check,
    warehouse_check,
)
from mlops_assets.resources.warehouse import WarehouseResource

KEY = "transaction_id"


def _table_asset(
    name: str,
    description: str,
    group_name: str,
    version: str,
    table: str,
    sql: str,
    upstream: list[str],
    extra_metadata: dict,
) -> AssetsDefinition:
    """An asset that (re)builds `table` from `sql` over its upstream tables."""

    @asset(
        name=name,
        description=description,
        group_name=group_name,
        code_version=version,
        deps=upstream,
        kinds={"duckdb"},
        pool="warehouse",
    )
    def _build(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.connect() as con:
            context.log.info(f"building {table} (version {version})")
            started = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
            seconds = time.perf_counter() - started
            return warehouse_materialization(
                context,
                con,
                table,
                upstream,
                extra_metadata={"version": version, "build_seconds": round(seconds, 3), **extra_metadata},
            )

    return _build


def _raw_asset_names(inputs: tuple[str, ...]) -> list[str]:
    return [CONTRACTS[name].asset_name for name in inputs]


def feature_group_asset(group: FeatureGroup) -> AssetsDefinition:
    return _table_asset(
        group.name,
        group.description,
        "features",
        group.version,
        group.table,
        feature_group_sql(group),
        _raw_asset_names(group.inputs),
        {"features": ", ".join(feature.name for feature in group.features)},
    )


def label_group_asset(labels: LabelGroup) -> AssetsDefinition:
    return _table_asset(
        labels.name,
        labels.description,
        "labels",
        labels.version,
        labels.table,
        label_group_sql(labels),
        _raw_asset_names(("transactions", "fraud_labels")),
        {},
    )


def feature_view_asset(view: FeatureView) -> AssetsDefinition:
    return _table_asset(
        view.name,
        view.description,
        "feature_views",
        view.version,
        view.table,
        feature_view_sql(view),
        [TRANSACTIONS.asset_name, *(group.name for group in view.groups), view.label.name],
        {"features": ", ".join(view.feature_names), "label": view.label.name},
    )


def build_feature_assets(catalog: FeatureCatalog) -> list[AssetsDefinition]:
    return [
        *(feature_group_asset(group) for group in catalog.groups),
        *(label_group_asset(labels) for labels in catalog.label_groups),
        *(feature_view_asset(view) for view in catalog.views),
    ]


def _one_row_per_transaction(name: str, table: str, blocking: bool) -> list:
    return [
        warehouse_check(
            name,
            "one_row_per_transaction",
            "Exactly one row per raw transaction, covering the same time range.",
            lambda con: same_rows_check(con, table, TRANSACTIONS.table, KEY, "event_time"),
            blocking=blocking,
        ),
        warehouse_check(
            name,
            "unique_ids",
            "Each transaction_id appears once.",
            lambda con: unique_key_check(con, table, KEY),
            blocking=blocking,
        ),
    ]


def _ranges_check(name: str, table: str, ranges: dict, blocking: bool):
    return warehouse_check(
        name,
        "values_in_range",
        "Every feature value lies in its declared range.",
        lambda con: value_range_check(con, table, ranges),
        blocking=blocking,
    )


def build_feature_checks(catalog: FeatureCatalog) -> list:
    checks = []
    for group in catalog.groups:
        ranges = {feature.name: feature.valid_range for feature in group.features}
        checks += [
            *_one_row_per_transaction(group.name, group.table, blocking=False),
            _ranges_check(group.name, group.table, ranges, blocking=False),
        ]
    for labels in catalog.label_groups:
        checks += _one_row_per_transaction(labels.name, labels.table, blocking=False)
    for view in catalog.views:
        ranges = {
            feature.name: feature.valid_range for _, chosen in view.features for feature in chosen
        }
        ranges["is_fraud"] = (0, 1)
        checks += [
            *_one_row_per_transaction(view.name, view.table, blocking=True),
            _ranges_check(view.name, view.table, ranges, blocking=True),
            warehouse_check(
                view.name,
                "no_null_keys",
                "Keys, times and labels are never null.",
                lambda con, table=view.table: not_null_check(
                    con, table, ["transaction_id", "event_time", "customer_id", "terminal_id", "is_fraud"]
                ),
                blocking=True,
            ),
        ]
    return checks
