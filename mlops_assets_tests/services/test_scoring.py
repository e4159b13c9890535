"""The fraud scoring service against a real broker, a real warehouse file and a real MLflow
registry: training/serving parity on thousands of streamed transactions, the score contract,
dead-lettering, and a new champion taken up while transactions flow."""
import json
import threading
import time

import numpy as np
import pandas as pd

from mlops_assets.resources.kafka import (
    DEAD_LETTER_TOPIC,
    FRAUD_SCORES_TOPIC,
    TRANSACTIONS_TOPIC,
)
from mlops_assets.services.ingestion import frame_to_payloads
from mlops_assets.services.scoring import build_service
from mlops_assets_tests.helpers import register_champion, wait_until


def _produce(kafka, frame: pd.DataFrame, extra: list[bytes] = ()) -> None:
    """Sends the backlog to one partition: a backlog spread over partitions is consumed
    partition by partition, out of time order across them, which terminal features (history
    across customers) cannot be exact about; at live rates partitions advance in step."""
    producer = kafka.producer(linger_ms=5)
    for message in frame_to_payloads(frame):
        producer.send(TRANSACTIONS_TOPIC, key=b"backlog", value=json.dumps(message).encode())
    for value in extra:
        producer.send(TRANSACTIONS_TOPIC, key=b"bad", value=value)
    producer.flush()
    producer.close()


def _consume(kafka, topic: str, count: int, timeout_s: float = 120) -> list:
    """The first `count` records of `topic` (fewer if they do not come within the timeout),
    in order within each partition."""
    consumer = kafka.consumer(topic, auto_offset_reset="earliest", group_id=None)
    found = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found += records
    finally:
        consumer.close()
    return found


def _collect(kafka, topic: str, count: int, timeout_s: float = 120) -> list[dict]:
    return [json.loads(record.value) for record in _consume(kafka, topic, count, timeout_s)]


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
    _assert_offline_features(scores, expected, view.feature_names)
    assert sorted(d["reason"] for d in dead) == ["event_time: is missing or not a string", "message: is not JSON"]


def _assert_offline_features(scores: list[dict], expected: pd.DataFrame, names) -> None:
    """The features each score was computed from equal the offline feature view's, to 1e-9."""
    online = pd.DataFrame([{"transaction_id": s["transaction_id"], **s["features"]} for s in scores])
    merged = expected.set_index("transaction_id").loc[online["transaction_id"]]
    for name in names:
        np.testing.assert_allclose(
            online[name].astype(float).to_numpy(), merged[name].astype(float).to_numpy(),
            rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name,
        )


def _start(services: list) -> list[threading.Thread]:
    runners = [threading.Thread(target=service.run) for service in services]
    for runner in runners:
        runner.start()
    return runners


def _stop(services: list, runners: list[threading.Thread]) -> None:
    for service in services:
        service.stop()
    for runner in runners:
        runner.join(timeout=30)


def _send_in_order(kafka, frame: pd.DataFrame) -> None:
    """Keyed by customer, one at a time, acknowledged: whatever a transaction's time, every
    earlier one is already on its partition when an instance reads the transaction."""
    producer = kafka.producer()
    for message in frame_to_payloads(frame):
        producer.send(
            TRANSACTIONS_TOPIC, key=message["customer_id"].encode(), value=json.dumps(message).encode()
        ).get(timeout=30)
    producer.close()


def test_three_instances_share_the_work_and_compute_the_features_of_one(kafka, stream, champion, catalog):
    """Each instance owns one partition (customers), and reads the others for history, so the
    terminal features it serves still see every customer's transactions."""
    warehouse_path, to_stream, expected = stream
    services = [
        build_service(kafka, str(warehouse_path), champion, "scoring-group", emit_features=True) for _ in range(3)
    ]
    runners = _start(services)
    try:
        wait_until(lambda: sorted(len(s.consumer.assignment()) for s in services) == [1, 1, 1], timeout_s=60)
        _send_in_order(kafka, to_stream)
        records = _consume(kafka, FRAUD_SCORES_TOPIC, len(to_stream))
    finally:
        _stop(services, runners)
    scores = [json.loads(record.value) for record in records]
    assert sorted(s["transaction_id"] for s in scores) == sorted(to_stream["transaction_id"])  # each once
    assert all(service.metrics.messages_out._value.get() > 0 for service in services)  # all three worked
    _assert_offline_features(scores, expected, catalog.view("fraud_feature_view").feature_names)


def test_a_champion_promoted_while_transactions_flow_is_used_from_one_batch_on(kafka, stream, champion, catalog):
    """The alias moves while a producer keeps sending: every transaction is scored exactly
    once, and each partition of `fraud_scores` switches from the old version to the new one
    once, never back."""
    warehouse_path, to_stream, _ = stream
    service = build_service(kafka, str(warehouse_path), champion, "scoring-live-switch", model_check_s=0.05)
    runner = threading.Thread(target=service.run)
    runner.start()
    promoted = threading.Event()
    sent: list[str] = []

    def send_until_well_after_the_promotion():
        producer = kafka.producer(linger_ms=5)
        after = 0
        for message in frame_to_payloads(to_stream):
            producer.send(TRANSACTIONS_TOPIC, key=b"live", value=json.dumps(message).encode())
            sent.append(message["transaction_id"])
            after += promoted.is_set()
            if after == 1000:
                break
            if len(sent) % 100 == 0:
                time.sleep(0.05)  # about 2,000 a second
        producer.flush()
        producer.close()

    sender = threading.Thread(target=send_until_well_after_the_promotion)
    try:
        sender.start()
        time.sleep(0.3)
        assert register_champion(champion, catalog.view("fraud_feature_view"), seed=1) == "2"
        promoted.set()
        sender.join(timeout=60)
        records = _consume(kafka, FRAUD_SCORES_TOPIC, len(sent))
    finally:
        service.stop()
        runner.join(timeout=30)
    scores = [json.loads(record.value) for record in records]
    ids = [score["transaction_id"] for score in scores]
    assert len(ids) == len(set(ids)) and set(ids) == set(sent)  # none lost, none twice
    assert {score["model_version"] for score in scores} == {"1", "2"}  # the switch happened mid-stream
    for partition in {record.partition for record in records}:
        versions = [json.loads(r.value)["model_version"] for r in records if r.partition == partition]
        assert versions == sorted(versions), f"partition {partition} went back to the old champion"


def test_an_instance_taking_over_partitions_serves_the_same_features(kafka, stream, champion, catalog):
    """An owner stops and a new instance starts after part of the stream: the new one was
    bootstrapped from a warehouse without that part, and catches up from the topic."""
    warehouse_path, to_stream, expected = stream
    first, second = to_stream.iloc[:2500], to_stream.iloc[2500:]

    def instance():
        return build_service(kafka, str(warehouse_path), champion, "scoring-takeover", emit_features=True)

    staying, leaving = instance(), instance()
    staying_runner, leaving_runner = _start([staying, leaving])
    newcomer, newcomer_runners = None, []
    try:
        wait_until(lambda: {len(staying.consumer.assignment()), len(leaving.consumer.assignment())} == {1, 2}, 60)
        _send_in_order(kafka, first)
        wait_until(lambda: len(_consume(kafka, FRAUD_SCORES_TOPIC, len(first), timeout_s=1)) == len(first), 120)
        _stop([leaving], [leaving_runner])
        newcomer = instance()
        newcomer_runners = _start([newcomer])
        wait_until(lambda: len(newcomer.consumer.assignment()) > 0 and len(staying.consumer.assignment()) < 3, 60)
        _send_in_order(kafka, second)
        records = _consume(kafka, FRAUD_SCORES_TOPIC, len(to_stream))
    finally:
        _stop([staying, leaving], [staying_runner, leaving_runner])
        _stop([newcomer] if newcomer else [], newcomer_runners)
    scores = [json.loads(record.value) for record in records]
    assert sorted(s["transaction_id"] for s in scores) == sorted(to_stream["transaction_id"])  # each once
    assert newcomer.metrics.messages_out._value.get() > 0
    _assert_offline_features(scores, expected, catalog.view("fraud_feature_view").feature_names)
