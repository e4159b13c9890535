"""The streaming gateway against a running ingestion service and a real broker: every
transaction arrives, labels are emitted in reported_at order only once the stream has passed
them, the pace is about the one asked for, and `stop()` ends a stream early."""
import json
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_assets.resources.kafka import FRAUD_LABELS_TOPIC, TRANSACTIONS_TOPIC
from mlops_assets.services.gateway import StreamingGateway, main
from mlops_assets_tests.helpers import free_port
from mlops_assets_tests.services.test_ingestion import (
    ingestion_service,
    read_topic,
    serving,
    values,
)

START = pd.Timestamp("2026-01-01")
NO_LABELS = pd.DataFrame({"transaction_id": [], "is_fraud": [], "reported_at": pd.to_datetime([])})


def minutes(n: int) -> pd.Timestamp:
    return START + pd.Timedelta(minutes=n)


def transactions(count: int) -> pd.DataFrame:
    """One transaction a minute, shuffled (the gateway sorts them); the 8th, if any, is invalid."""
    frame = pd.DataFrame({
        "transaction_id": [f"tx{i:04d}" for i in range(count)],
        "event_time": [minutes(i) for i in range(count)],
        "customer_id": [f"c{i % 7}" for i in range(count)],
        "terminal_id": [f"m{i % 3}" for i in range(count)],
        "amount": np.linspace(1, 100, count),
        "currency": ["EUR"] * count,
    })
    frame.loc[frame.index == 7, "currency"] = "eu"
    return frame.sample(frac=1, random_state=1)


class RecordingProducer:
    """A real producer that also notes each label it sends in the shared event log."""

    def __init__(self, producer, log: list):
        self.producer = producer
        self.log = log

    def send(self, topic: str, **kwargs):
        self.log.append(("label", json.loads(kwargs["value"])["reported_at"]))
        return self.producer.send(topic, **kwargs)

    def flush(self, timeout=None):
        self.producer.flush(timeout=timeout)


@pytest.fixture
def ingestion_url(kafka):
    with ingestion_service(kafka) as service, serving(service) as url:
        yield url


@pytest.fixture
def producer(kafka):
    producer = kafka.producer()
    yield producer
    producer.close()


def test_streams_transactions_and_emits_labels_once_passed(kafka, ingestion_url, producer):
    log: list = []

    def note_post(request: httpx.Request) -> None:
        log.append(("post", max(t["event_time"] for t in json.loads(request.content))))

    labels = pd.DataFrame({
        "transaction_id": ["tx0010", "tx0003", "tx0020", "tx0050"],
        "is_fraud": [1, 0, 1, 1],
        "reported_at": [minutes(100), minutes(50), minutes(60 * 24 * 10), minutes(30) + pd.Timedelta(seconds=1)],
    })
    client = httpx.Client(event_hooks={"request": [note_post]})
    gateway = StreamingGateway(ingestion_url, rate_per_second=400, client=client)
    report = gateway.stream(transactions(160), labels, RecordingProducer(producer, log), limit=150)

    assert (report.posted, report.accepted, report.rejected, report.failed) == (150, 149, 1, 0)
    assert report.labels_emitted == 3  # the one reported after the last streamed transaction waits
    assert 200 <= report.achieved_rate <= 800
    streamed = values(read_topic(kafka, TRANSACTIONS_TOPIC))
    assert sorted(t["transaction_id"] for t in streamed) == [f"tx{i:04d}" for i in range(150) if i != 7]
    assert all(t["event_time"] == f"{minutes(int(t['transaction_id'][2:])).isoformat()}.000000Z" for t in streamed)
    emitted = values(read_topic(kafka, FRAUD_LABELS_TOPIC))
    assert sorted(emitted, key=lambda label: label["reported_at"]) == [
        {"transaction_id": "tx0050", "is_fraud": 1, "reported_at": "2026-01-01T00:30:01.000000Z"},
        {"transaction_id": "tx0003", "is_fraud": 0, "reported_at": "2026-01-01T00:50:00.000000Z"},
        {"transaction_id": "tx0010", "is_fraud": 1, "reported_at": "2026-01-01T01:40:00.000000Z"},
    ]

    # Each label right after the first post that carried the simulated clock past it, in order.
    label_times = [moment for kind, moment in log if kind == "label"]
    assert label_times == sorted(label_times)
    for index, (kind, reported_at) in enumerate(log):
        if kind == "label":
            posts = [moment for kind, moment in log[:index] if kind == "post"]
            assert posts[-1] >= reported_at > (posts[-2] if len(posts) > 1 else "")


def test_time_scale_paces_by_event_time(ingestion_url, producer):
    gateway = StreamingGateway(ingestion_url, rate_per_second=1000)
    # One transaction a simulated minute, 10 simulated minutes a second: 0.1 s apart.
    report = gateway.stream(transactions(6), NO_LABELS, producer, time_scale=600)
    assert report.posted == 6 and 0.45 <= report.seconds < 1.5


def test_stop_ends_a_stream_early(ingestion_url, producer):
    gateway = StreamingGateway(ingestion_url, rate_per_second=50)
    reports = []
    thread = threading.Thread(target=lambda: reports.append(gateway.stream(transactions(500), NO_LABELS, producer)))
    thread.start()
    time.sleep(0.3)
    gateway.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert 0 < reports[0].posted < 100


def test_cli_simulates_and_streams(kafka, ingestion_url, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    argv = ["--rate", "500", "--customers", "20", "--terminals", "10", "--days", "3", "--limit", "40"]
    assert main(["--url", ingestion_url, *argv]) == 0
    assert "posted 40 transactions (40 accepted, 0 rejected, 0 failed)" in capsys.readouterr().out
    assert len(read_topic(kafka, TRANSACTIONS_TOPIC)) == 40

    assert main(["--url", f"http://127.0.0.1:{free_port()}", *argv]) == 1
    assert "does not answer" in capsys.readouterr().err


def test_cli_streams_a_drifted_world_and_refuses_an_inconsistent_one(kafka, ingestion_url, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    argv = ["--url", ingestion_url, "--rate", "500", "--customers", "20", "--terminals", "10", "--days", "3"]
    assert main([*argv, "--drift", "spending_shift", "--drift-start", "2026-01-02", "--limit", "10"]) == 0
    assert "drift: spending_shift from 2026-01-02" in capsys.readouterr().err

    assert main([*argv, "--drift", "spending_shift"]) == 1
    assert "gateway: drift and drift_start go together" in capsys.readouterr().err
    assert len(read_topic(kafka, TRANSACTIONS_TOPIC)) == 10  # nothing sent for the refused one
