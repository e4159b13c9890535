"""Fixtures of the real-time services' tests: a champion model in a real MLflow registry, and
a warehouse holding the history before a cut with the transactions after it to stream."""
import pandas as pd
import pytest

from mlops_assets.contracts import CONTRACTS
from mlops_assets.features.offline import (
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.ingestion import load_file
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets_tests.helpers import register_champion

CUT_SHARE = 0.8  # the services' history ends here; what follows is streamed


@pytest.fixture
def champion(data_dir, catalog) -> str:
    """The tracking URI of a registry whose `fraud_detector` has a champion."""
    tracking_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    register_champion(tracking_uri, catalog.view("fraud_feature_view"))
    return tracking_uri


@pytest.fixture
def stream(data_dir, small_dataset_files, catalog):
    """A warehouse with history before the cut (what the service bootstraps from), the
    transactions after it, and the offline feature view those transactions should match."""
    transactions = pd.read_parquet(small_dataset_files["transactions"])
    cut = transactions["event_time"].quantile(CUT_SHARE)
    labels = pd.read_parquet(small_dataset_files["fraud_labels"])
    known_labels = labels[labels["reported_at"] < cut]  # nothing reported later is streamed here
    history_dir = data_dir / "history"
    history_dir.mkdir(parents=True)
    transactions[transactions["event_time"] < cut].to_parquet(history_dir / "transactions.parquet")
    known_labels.to_parquet(history_dir / "fraud_labels.parquet")

    def load(warehouse_path, files):
        with WarehouseResource(database=str(warehouse_path)).connect() as con:
            for name, contract in CONTRACTS.items():
                load_file(con, contract, str(files[name]), run_id="test")
            return con

    history = {**small_dataset_files, "transactions": history_dir / "transactions.parquet",
               "fraud_labels": history_dir / "fraud_labels.parquet"}
    load(data_dir / "service_warehouse.duckdb", history)
    everything = {**small_dataset_files, "fraud_labels": history_dir / "fraud_labels.parquet"}
    view = catalog.view("fraud_feature_view")
    with WarehouseResource(database=str(data_dir / "offline.duckdb")).connect() as con:
        for name, contract in CONTRACTS.items():
            load_file(con, contract, str(everything[name]), run_id="test")
        for group in catalog.groups:
            con.execute(f"CREATE TABLE {group.table} AS {feature_group_sql(group)}")
        labels_group = catalog.label_groups[0]
        con.execute(f"CREATE TABLE {labels_group.table} AS {label_group_sql(labels_group)}")
        expected = con.execute(f"SELECT * FROM ({feature_view_sql(view)}) WHERE event_time >= ?", [cut]).df()
    return data_dir / "service_warehouse.duckdb", transactions[transactions["event_time"] >= cut], expected


