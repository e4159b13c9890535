"""The whole graph in real Dagster runs on a real DuckDB file: raw inputs through feature
groups, labels and the feature view, with checks and lineage."""
import json
import shutil

import pytest
from dagster import AssetKey, materialize

from mlops_assets.assets.features import build_feature_assets, build_feature_checks
from mlops_assets.assets.raw import raw_asset_checks, raw_assets
from mlops_assets.features.catalog import load_catalog
from mlops_assets.settings import REPOSITORY_ROOT


def _materialize_all(catalog, resources, **kwargs):
    return materialize(
        [*raw_assets, *build_feature_assets(catalog), *raw_asset_checks, *build_feature_checks(catalog)],
        resources=resources,
        **kwargs,
    )


@pytest.fixture
def materialized(catalog, batch_resources):
    result = _materialize_all(catalog, batch_resources)
    assert result.success
    return result


def test_every_check_passes_on_simulated_data(materialized):
    evaluations = materialized.get_asset_check_evaluations()
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert failed == []
    checked = {e.asset_key.to_user_string() for e in evaluations}
    assert {"raw_transactions", "customer_behaviour", "transaction_labels", "fraud_feature_view"} <= checked


def test_feature_view_holds_every_transaction_with_features_label_and_versions(materialized, catalog, warehouse):
    view = catalog.views[0]
    with warehouse.connect() as con:
        columns = [row[0] for row in con.execute(f"DESCRIBE {view.table}").fetchall()]
        transactions, rows, frauds, versions = con.execute(
            f"SELECT (SELECT count(*) FROM raw.transactions), count(*), sum(is_fraud), "
            f"list(DISTINCT feature_view_version) FROM {view.table}"
        ).fetchone()
        group_versions = {
            group.name: con.execute(f"SELECT list(DISTINCT feature_group_version) FROM {group.table}").fetchone()[0]
            for group in catalog.groups
        }
    assert columns[:4] == ["transaction_id", "event_time", "customer_id", "terminal_id"]
    assert columns[4:-3] == list(view.feature_names)
    assert rows == transactions and frauds > 0
    assert versions == [view.version]
    assert group_versions == {group.name: [group.version] for group in catalog.groups}


def test_lineage_table_records_each_materialization_with_upstream_versions(materialized, warehouse):
    with warehouse.connect() as con:
        lineage = {
            asset: (run_id, version, json.loads(upstream), rows, start, end)
            for asset, run_id, version, upstream, rows, start, end in con.execute(
                "SELECT asset, run_id, data_version, upstream_data_versions, row_count, time_min, time_max "
                "FROM meta.lineage"
            ).fetchall()
        }
        first, last = con.execute("SELECT min(event_time), max(event_time) FROM raw.transactions").fetchone()
    assert set(lineage) == {
        "raw_transactions", "raw_fraud_labels", "customer_profiles", "terminal_profiles",
        "transaction_features", "customer_behaviour", "terminal_behaviour",
        "transaction_labels", "fraud_feature_view",
    }
    assert {run_id for run_id, *_ in lineage.values()} == {materialized.run_id}
    view = lineage["fraud_feature_view"]
    assert view[2] == {
        name: lineage[name][1]
        for name in ("raw_transactions", "transaction_features", "customer_behaviour", "terminal_behaviour", "transaction_labels")
    }
    assert view[3] == lineage["raw_transactions"][3] and view[4:] == (first, last)
    metadata = materialized.asset_materializations_for_node("fraud_feature_view")[0].metadata
    assert metadata["dagster/row_count"].value == view[3]
    assert metadata["data_version"].value == view[1]
    assert "transaction_id" in metadata["preview"].value


def test_rerunning_the_graph_adds_nothing_and_keeps_data_versions(materialized, catalog, warehouse, batch_resources):
    again = _materialize_all(catalog, batch_resources)
    with warehouse.connect() as con:
        versions = con.execute(
            "SELECT asset, list(DISTINCT data_version), count(*) FROM meta.lineage GROUP BY asset"
        ).fetchall()
    assert again.success
    assert all(len(distinct) == 1 and runs == 2 for _, distinct, runs in versions)


def test_feature_view_check_blocks_on_incomplete_features(materialized, catalog, warehouse, batch_resources):
    with warehouse.connect() as con:
        con.execute("DELETE FROM features.customer_behaviour WHERE hash(transaction_id) % 7 = 0")
    view_only = [asset for asset in build_feature_assets(catalog) if asset.key == AssetKey("fraud_feature_view")]
    view_checks = [check for check in build_feature_checks(catalog) if check.check_key.asset_key == AssetKey("fraud_feature_view")]
    result = materialize(
        [*view_only, *view_checks],
        resources=batch_resources,
        raise_on_error=False,
    )
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "one_row_per_transaction")
    assert not evaluation.passed and evaluation.metadata["missing_rows"].value > 0
    assert not result.success  # blocking: the run fails, so nothing downstream uses the view


def test_a_new_feature_needs_only_a_definition(tmp_path, warehouse, batch_resources):
    definitions = tmp_path / "feature_definitions"
    shutil.copytree(REPOSITORY_ROOT / "feature_definitions", definitions)
    with (definitions / "customer_behaviour.yaml").open("a") as yaml_file:
        yaml_file.write(
            "  - name: customer_amount_max_{window}\n"
            "    function: max\n    of: amount\n    by: customer_id\n    windows: [1d]\n"
        )
    catalog = load_catalog(definitions)
    assert _materialize_all(catalog, batch_resources).success
    with warehouse.connect() as con:
        below_mean, present = con.execute(
            "SELECT count(*) FILTER (WHERE customer_amount_max_1d < customer_amount_mean_1d), "
            "count(customer_amount_max_1d) FROM views.fraud_feature_view"
        ).fetchone()
    assert present > 0 and below_mean == 0
