"""The fraud scoring service against a real broker, a real warehouse file and a real MLflow
registry: training/serving parity on thousands of streamed transactions, score contract,
dead-lettering, and commit-after-ack."""
import json
import threading
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from catboost import CatBoostClassifier

from mlops_assets.contracts import CONTRACTS
from mlops_assets.features.offline import feature_group_sql, feature_view_sql, label_group_sql
from mlops_assets.ingestion import load_file
from mlops_assets.models.registry import CHAMPION, ModelRegistry
from mlops_assets.resources.kafka import DEAD_LETTER_TOPIC, FRAUD_SCORES_TOPIC, TRANSACTIONS_TOPIC
from mlops_assets.resources.mlflow import ensure_experiment
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets.services.scoring import build_service

CUT_SHARE = 0.8  # the service's history ends here; what follows is streamed


@pytest.fixture
def champion(data_dir, catalog):
    """A small CatBoost model registered as champion (its quality does not matter here)."""
    view = catalog.view("fraud_feature_view")
    tracking_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    experiment = ensure_experiment(tracking_uri, "tests", (data_dir / "artifacts").as_uri())
    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(0)
    features = rng.random((400, len(view.feature_names)))
    model = CatBoostClassifier(iterations=20, verbose=False, allow_writing_files=False)
    model.fit(features, (features[:, 0] > 0.9).astype(int))
    registry = ModelRegistry(tracking_uri, "fraud_detector")
    with mlflow.start_run(experiment_id=experiment):
        version = registry.register(model, view, tags={})
    registry.set_alias(CHAMPION, str(version.version))
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


def _produce(kafka, frame: pd.DataFrame, extra: list[bytes] = ()) -> None:
    """Sends the backlog to one partition: a backlog spread over partitions is consumed
    partition by partition, out of time order across them, which terminal features (history
    across customers) cannot be exact about; at live rates partitions advance in step."""
    producer = kafka.producer(linger_ms=5)
    for row in frame.itertuples(index=False):
        message = {
            "transaction_id": row.transaction_id, "event_time": row.event_time.isoformat() + "Z",
            "customer_id": row.customer_id, "terminal_id": row.terminal_id,
            "amount": float(row.amount), "currency": row.currency,
        }
        producer.send(TRANSACTIONS_TOPIC, key=b"backlog", value=json.dumps(message).encode())
    for value in extra:
        producer.send(TRANSACTIONS_TOPIC, key=b"bad", value=value)
    producer.flush()
    producer.close()


def _collect(kafka, topic: str, count: int, timeout_s: float = 120) -> list[dict]:
    consumer = kafka.consumer(topic, auto_offset_reset="earliest", group_id=None)
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found += [json.loads(record.value) for record in records]
    finally:
        consumer.close()
    return found


def test_streamed_transactions_get_offline_identical_features_and_contract_scores(kafka, stream, champion, catalog):
    warehouse_path, to_stream, expected = stream
    assert len(to_stream) >= 5000
    service = build_service(kafka, str(warehouse_path), champion, "scoring-test", emit_features=True)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        _produce(kafka, to_stream, extra=[b"not json", json.dumps({"transaction_id": "x"}).encode()])
        scores = _collect(kafka, FRAUD_SCORES_TOPIC, len(to_stream))
        dead = _collect(kafka, DEAD_LETTER_TOPIC, 2, timeout_s=30)
    finally:
        service.stop()
        runner.join(timeout=30)

    assert len(scores) == len(to_stream)
    assert {s["transaction_id"] for s in scores} == set(to_stream["transaction_id"])
    view = catalog.view("fraud_feature_view")
    for score in scores[:3]:
        assert set(score) >= {"transaction_id", "score", "decision", "model_name", "model_version",
                              "feature_view_version", "scored_at", "latency_ms"}
        assert 0 <= score["score"] <= 1 and score["model_version"] == "1"
        assert score["feature_view_version"] == view.version
    online = pd.DataFrame([{"transaction_id": s["transaction_id"], **s["features"]} for s in scores])
    merged = expected.set_index("transaction_id").loc[online["transaction_id"]]
    for name in view.feature_names:
        np.testing.assert_allclose(
            online[name].astype(float).to_numpy(), merged[name].astype(float).to_numpy(),
            rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name,
        )
    assert sorted(d["reason"] for d in dead) == ["event_time: is missing or not a string", "message: is not JSON"]
