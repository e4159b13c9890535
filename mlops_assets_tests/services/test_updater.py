"""The transaction updater against a real broker: statuses follow the newest score, replays
and duplicates change nothing, bad input is dead-lettered, offsets are committed, and the
status lookup answers over HTTP. The helpers here serve test_alerting.py too."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from kafka import KafkaConsumer

from mlops_assets.resources.kafka import (
    DEAD_LETTER_TOPIC,
    FRAUD_SCORES_TOPIC,
    KafkaResource,
)
from mlops_assets.services.consumer import BatchConsumerService, ServiceMetrics
from mlops_assets.services.score_messages import MalformedScore, parse_score
from mlops_assets.services.updater import (
    StatusServer,
    TransactionStatusStore,
    TransactionUpdaterService,
)
from mlops_assets_tests.helpers import free_port, wait_until

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 200}  # the broker's minimum session


def score_message(
    transaction_id: str,
    decision: str,
    model_version: str = "1",
    scored_at: str = "2026-03-01T10:00:00Z",
    score: float = 0.5,
) -> dict:
    return {
        "transaction_id": transaction_id, "score": score, "decision": decision, "model_name": "fraud_detector",
        "model_version": model_version, "feature_view_version": "fv1", "scored_at": scored_at, "latency_ms": 3.2,
    }


def produce(kafka: KafkaResource, messages: list[dict | bytes]) -> None:
    """Sends scores (keyed by transaction) and raw bytes to `fraud_scores`, acknowledged."""
    producer = kafka.producer()
    for message in messages:
        if isinstance(message, dict):
            key, message = message["transaction_id"].encode(), json.dumps(message).encode()
            producer.send(FRAUD_SCORES_TOPIC, key=key, value=message)
        else:
            producer.send(FRAUD_SCORES_TOPIC, value=message)
    producer.flush()
    producer.close()


def group_consumer(kafka: KafkaResource, group: str) -> KafkaConsumer:
    return kafka.consumer(
        FRAUD_SCORES_TOPIC, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", **FAST_GROUP
    )


def committed(kafka: KafkaResource, group: str) -> int:
    """How many `fraud_scores` messages the group has committed, over all partitions."""
    admin = kafka.admin()
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == FRAUD_SCORES_TOPIC and meta.offset > 0)


@contextmanager
def running(service: BatchConsumerService) -> Iterator[None]:
    """Runs the service in a thread; stops it on the way out and raises what it raised."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as error:  # re-raised in the test's thread
            failures.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        service.stop()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the service did not stop"
    if failures:
        raise failures[0]


def dead_letters(kafka: KafkaResource, count: int, timeout_s: float = 10) -> list[dict]:
    """The first `count` envelopes on the dead-letter topic (fails if fewer arrive)."""
    consumer = kafka.consumer(DEAD_LETTER_TOPIC, auto_offset_reset="earliest", enable_auto_commit=False)
    envelopes: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(envelopes) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                envelopes.extend(json.loads(record.value) for record in batch)
    finally:
        consumer.close()
    assert len(envelopes) == count, envelopes
    return envelopes


def metric(metrics: ServiceMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"mlops_transaction_updater_{name}") or 0.0


def test_store_keeps_the_newest_score_and_ignores_replays(tmp_path):
    store = TransactionStatusStore(tmp_path / "status.sqlite")
    first = score_message("t1", "review", "1", "2026-03-01T10:00:00Z")
    assert store.apply(first) is True
    assert store.apply(first) is False  # the same score again
    assert store.apply(score_message("t1", "approve", "1", "2026-03-01T09:00:00Z")) is False  # earlier
    assert store.apply(score_message("t1", "decline", "1", "2026-03-01T11:00:00+01:00")) is False  # 10:00 UTC again
    assert store.apply(score_message("t1", "decline", "1", "2026-03-01T10:30:00Z")) is True  # later
    assert store.apply(score_message("t1", "approve", "10", "2026-03-01T08:00:00Z")) is True  # newer model
    assert store.apply(score_message("t1", "decline", "9", "2026-03-02T08:00:00Z")) is False  # older model
    status = store.status("t1")
    assert (status["status"], status["model_version"]) == ("approved", "10")
    assert status["decided_at"] == "2026-03-01T08:00:00.000000Z"
    assert store.status("unknown") is None
    store.close()

    reopened = TransactionStatusStore(tmp_path / "status.sqlite")
    assert reopened.counts() == {"approved": 1, "in_review": 0, "declined": 0}
    reopened.close()


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"{oops", "message: is not valid JSON"),
        (b"[1, 2]", "message: is not a JSON object"),
        (json.dumps({"transaction_id": "t1"}).encode(), "missing fields: score, decision, model_name"),
        (json.dumps({**score_message("t1", "review"), "score": "high"}).encode(), "score: must be a number in [0, 1]"),
        (json.dumps({**score_message("t1", "review"), "score": 1.5}).encode(), "score: must be a number in [0, 1]"),
        (json.dumps({**score_message("t1", "maybe")}).encode(), "decision: must be one of approve, review, decline"),
        (json.dumps({**score_message("t1", "review"), "model_version": 3}).encode(), "model_version: must be a string"),
        (json.dumps({**score_message("t1", "review"), "scored_at": "yesterday"}).encode(), "scored_at: must be an ISO"),
    ],
)
def test_malformed_scores_are_named_with_the_reason(value, reason):
    with pytest.raises(MalformedScore, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_score(value)


def test_service_applies_scores_dead_letters_bad_ones_and_commits(kafka, tmp_path):
    produce(kafka, [
        score_message("t1", "approve"),
        score_message("t2", "review"),
        score_message("t3", "decline", score=0.97),
        score_message("t2", "review"),  # duplicate
        score_message("t4", "decline", "2", "2026-03-01T10:05:00Z"),
        score_message("t4", "review", "1", "2026-03-01T10:00:00Z"),  # older model after a newer one
        score_message("t5", "review", "1", "2026-03-01T10:00:00Z"),
        score_message("t5", "decline", "2", "2026-03-01T10:10:00Z"),  # newer replaces older
        b"{oops",
        json.dumps({**score_message("t6", "review"), "score": "high"}).encode(),
        json.dumps({"transaction_id": "t7"}).encode(),
    ])
    store = TransactionStatusStore(tmp_path / "status.sqlite")
    metrics = ServiceMetrics("transaction_updater")
    service = TransactionUpdaterService(group_consumer(kafka, "updater"), kafka.producer(), store, metrics)
    with running(service):
        wait_until(lambda: committed(kafka, "updater") == 11)

    rows = {tid: store.status(tid) for tid in ("t1", "t2", "t3", "t4", "t5")}
    statuses = {tid: (row["status"], row["model_version"]) for tid, row in rows.items()}
    assert statuses == {
        "t1": ("approved", "1"), "t2": ("in_review", "1"), "t3": ("declined", "1"),
        "t4": ("declined", "2"), "t5": ("declined", "2"),
    }
    assert store.status("t6") is None and store.status("t7") is None
    assert store.counts() == {"approved": 1, "in_review": 1, "declined": 3}
    assert (metric(metrics, "messages_in_total"), metric(metrics, "messages_out_total")) == (11, 6)  # 6 changes
    assert metric(metrics, "dead_lettered_total") == 3
    reasons = sorted(envelope["reason"] for envelope in dead_letters(kafka, 3))
    assert reasons[0] == "message: is not valid JSON"
    assert reasons[1].startswith("missing fields: score, decision")
    assert reasons[2] == "score: must be a number in [0, 1]"

    # The offsets are committed: a new instance of the group sees only what comes next.
    produce(kafka, [score_message("t8", "approve")])
    metrics_after = ServiceMetrics("transaction_updater")
    service = TransactionUpdaterService(group_consumer(kafka, "updater"), kafka.producer(), store, metrics_after)
    with running(service):
        wait_until(lambda: store.status("t8") is not None)
    assert metric(metrics_after, "messages_in_total") == 1
    store.close()


def test_status_lookup_over_http(tmp_path):
    store = TransactionStatusStore(tmp_path / "status.sqlite")
    store.apply(score_message("card/42", "decline", "3", score=0.97))
    metrics = ServiceMetrics("transaction_updater")
    metrics.messages_in.inc(5)
    server = StatusServer(store, metrics)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
            found = client.get("/status/card%2F42")
            assert found.status_code == 200
            assert found.json() | {"updated_at": None} == {
                "transaction_id": "card/42", "status": "declined", "score": 0.97, "model_version": "3",
                "decided_at": "2026-03-01T10:00:00.000000Z", "updated_at": None,
            }
            assert client.get("/status/unknown").status_code == 404
            assert client.get("/status/").status_code == 404
            assert "mlops_transaction_updater_messages_in_total 5.0" in client.get("/metrics").text
    finally:
        server.stop()
        store.close()


def test_main_serves_lookups_and_stops_cleanly_on_sigterm(kafka, tmp_path):
    produce(kafka, [score_message("t1", "review")])
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_assets.services.updater", "--store", str(tmp_path / "status.sqlite"),
         "--port", str(port), "--group", "updater-main"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        def answered() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/status/t1").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answered, timeout_s=15)
        assert httpx.get(f"http://127.0.0.1:{port}/status/t1").json()["status"] == "in_review"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr.decode()
    assert committed(kafka, "updater-main") == 1
