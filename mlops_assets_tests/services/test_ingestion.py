"""The transaction ingestion service against a real broker, over real HTTP (uvicorn on a free
port): valid input lands on `transactions`, bad input on `transactions.dlq` with the reason,
card numbers never reach Kafka, files replay, and the metrics move."""
import contextlib
import datetime
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from mlops_assets.resources.kafka import (
    DEAD_LETTER_TOPIC,
    TRANSACTIONS_TOPIC,
    KafkaResource,
)
from mlops_assets.services.consumer import ServiceMetrics
from mlops_assets.services.ingestion import (
    IngestionService,
    ReplayCounts,
    TransactionRejected,
    main,
    replay_file,
    validate_transaction,
)
from mlops_assets.services.local_broker import LocalBroker
from mlops_assets.services.simulator import SimulationConfig, simulate, write_dataset
from mlops_assets_tests.helpers import free_port

KEY = b"test-card-token-key"


def transaction(i: int, **changes) -> dict:
    valid = {
        "transaction_id": f"tx{i:04d}",
        "event_time": f"2026-01-01T10:{i % 60:02d}:00Z",
        "customer_id": f"c{i % 5}",
        "terminal_id": f"m{i % 3}",
        "amount": 10.5 + i,
        "currency": "EUR",
    }
    return {**valid, **changes}


@contextlib.contextmanager
def serving(service: IngestionService) -> Iterator[str]:
    """Runs the service's HTTP API with uvicorn in a background thread; yields its base URL."""
    port = free_port()
    thread = threading.Thread(target=service.run, args=(port,), daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{base_url}/health").raise_for_status()
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the ingestion service did not start"
            time.sleep(0.02)
    try:
        yield base_url
    finally:
        service.stop()
        thread.join(timeout=5)


@contextlib.contextmanager
def ingestion_service(kafka: KafkaResource) -> Iterator[IngestionService]:
    producer = kafka.producer()
    try:
        yield IngestionService(producer, KEY, ServiceMetrics("ingestion"))
    finally:
        producer.close()


def read_topic(kafka: KafkaResource, topic: str) -> list[ConsumerRecord]:
    """Every message on the topic, read from the beginning with a real consumer."""
    consumer = kafka.consumer()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 10
        while any(consumer.position(p) < end[p] for p in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            records += [r for batch in consumer.poll(timeout_ms=200).values() for r in batch]
        return records
    finally:
        consumer.close()


def values(records: list[ConsumerRecord]) -> list[dict]:
    return [json.loads(record.value) for record in records]


@pytest.fixture
def service(kafka: KafkaResource) -> Iterator[IngestionService]:
    with ingestion_service(kafka) as service:
        yield service


@pytest.fixture
def base_url(service: IngestionService) -> Iterator[str]:
    with serving(service) as url:
        yield url


# --- The contract --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_time, expected",
    [
        ("2026-01-01T12:00:00+02:00", "2026-01-01T10:00:00.000000Z"),
        ("2026-01-01T10:00:00.123456", "2026-01-01T10:00:00.123456Z"),  # no offset: UTC
        ("2026-01-01T10:00:00.5Z", "2026-01-01T10:00:00.500000Z"),
        ("2025-12-31T23:30:00-01:00", "2026-01-01T00:30:00.000000Z"),
    ],
)
def test_event_time_is_normalised_to_utc(event_time, expected):
    payload = transaction(1, event_time=event_time, note={"any": "extra"})
    assert validate_transaction(payload) == {**payload, "event_time": expected}


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"amount": "12"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": -0.01}, "amount"),
        ({"amount": float("nan")}, "amount"),
        ({"transaction_id": 42}, "transaction_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"terminal_id": None}, "terminal_id"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"event_time": "2026-01-01"}, "event_time"),
        ({"event_time": 1767261600}, "event_time"),
        ({"card_number": 4111111111111111}, "card_number"),
    ],
)
def test_a_broken_field_is_named(changes, field):
    with pytest.raises(TransactionRejected) as rejected:
        validate_transaction(transaction(1, **changes))
    assert rejected.value.field == field and str(rejected.value).startswith(f"{field}: ")


def test_missing_fields_and_non_objects_are_rejected():
    for field in ("transaction_id", "event_time", "customer_id", "terminal_id", "amount", "currency"):
        incomplete = {key: value for key, value in transaction(1).items() if key != field}
        with pytest.raises(TransactionRejected, match=f"{field}: is missing"):
            validate_transaction(incomplete)
    with pytest.raises(TransactionRejected, match="must be a JSON object, got array") as rejected:
        validate_transaction([transaction(1)])
    assert rejected.value.field is None


# --- End to end: HTTP in, Kafka out --------------------------------------------------------


def test_valid_single_and_batch_posts_land_keyed_by_customer(kafka, base_url):
    single = transaction(1, event_time="2026-01-01T11:01:00+01:00", channel="pos")
    answer = httpx.post(f"{base_url}/transactions", json=single)
    assert answer.status_code == 202
    assert answer.json() == {"transaction_id": "tx0001", "status": "accepted"}

    batch = [transaction(i) for i in range(2, 6)]
    answer = httpx.post(f"{base_url}/transactions", json=batch)
    assert answer.status_code == 200
    assert answer.json() == [{"transaction_id": t["transaction_id"], "status": "accepted"} for t in batch]

    records = read_topic(kafka, TRANSACTIONS_TOPIC)
    expected = [{**t, "event_time": t["event_time"].replace("Z", ".000000Z")} for t in batch]
    expected.insert(0, {**single, "event_time": "2026-01-01T10:01:00.000000Z"})
    assert sorted(values(records), key=lambda t: t["transaction_id"]) == expected
    assert all(record.key == json.loads(record.value)["customer_id"].encode() for record in records)
    assert read_topic(kafka, DEAD_LETTER_TOPIC) == []


def test_bad_input_is_named_dead_lettered_and_spares_valid_neighbours(kafka, base_url):
    url = f"{base_url}/transactions"
    malformed = httpx.post(url, content=b'{"transaction_id": "tx0001", "amount": ')
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
    not_json = httpx.post(url, content=json.dumps(transaction(1, amount=float("nan"))).encode())
    assert not_json.status_code == 400 and "NaN is not a JSON value" in not_json.json()["error"]

    singles = {
        "amount": transaction(1, amount="12"),
        "customer_id": transaction(2, customer_id=42),
        "terminal_id": {key: value for key, value in transaction(3).items() if key != "terminal_id"},
    }
    for field, payload in singles.items():
        answer = httpx.post(url, json=payload)
        assert answer.status_code == 422
        assert answer.json()["field"] == field and answer.json()["error"].startswith(f"{field}: ")

    mixed = [transaction(10), transaction(11, amount=-5), transaction(12), transaction(13, currency="eu")]
    answer = httpx.post(url, json=mixed)
    assert answer.status_code == 200
    assert [(r["status"], r.get("field")) for r in answer.json()] == [
        ("accepted", None), ("rejected", "amount"), ("accepted", None), ("rejected", "currency")
    ]
    all_bad = httpx.post(url, json=[transaction(20, amount=None), "not an object"])
    assert all_bad.status_code == 422 and [r["status"] for r in all_bad.json()] == ["rejected"] * 2

    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}  # still serving
    assert httpx.post(url, json=transaction(30)).status_code == 202

    landed = {t["transaction_id"] for t in values(read_topic(kafka, TRANSACTIONS_TOPIC))}
    assert landed == {"tx0010", "tx0012", "tx0030"}
    dead = values(read_topic(kafka, DEAD_LETTER_TOPIC))
    assert all(letter["source"] == "http" for letter in dead)
    reasons = sorted(letter["reason"].split(":")[0] for letter in dead)
    assert reasons == sorted(
        ["malformed JSON", "malformed JSON", "amount", "customer_id", "terminal_id", "amount", "currency", "amount",
         "a transaction must be a JSON object, got string"]
    )
    assert json.loads(next(d["message"] for d in dead if d["reason"].startswith("currency")))["currency"] == "eu"


def test_card_numbers_never_reach_any_topic(kafka, base_url):
    url = f"{base_url}/transactions"
    valid = transaction(1, card_number="4111 1111 1111 1111")
    answer = httpx.post(url, json=valid)
    assert answer.status_code == 202 and "4111" not in answer.text
    answer = httpx.post(url, json=[transaction(2, card_number="5500000000000004"),
                                   transaction(3, amount="9", card_number="340000000000009")])
    assert [r["status"] for r in answer.json()] == ["accepted", "rejected"]
    assert httpx.post(url, json=transaction(4, card_number=4012888888881881)).status_code == 422
    assert httpx.post(url, content=b'{"card_number": "4000056655665556", oops').status_code == 400

    records = read_topic(kafka, TRANSACTIONS_TOPIC) + read_topic(kafka, DEAD_LETTER_TOPIC)
    assert len(records) == 5
    numbers = ["4111111111111111", "4111 1111 1111 1111", "5500000000000004", "340000000000009",
               "4012888888881881", "4000056655665556"]
    for record in records:
        raw = (record.key or b"") + record.value
        assert not [number for number in numbers if number.encode() in raw]

    produced = {t["transaction_id"]: t for t in values(read_topic(kafka, TRANSACTIONS_TOPIC))}
    for transaction_id, number in (("tx0001", "4111111111111111"), ("tx0002", "5500000000000004")):
        assert "card_number" not in produced[transaction_id]
        assert produced[transaction_id]["card_token"] == hmac.new(KEY, number.encode(), hashlib.sha256).hexdigest()


def test_metrics_show_the_counters_moved(base_url):
    httpx.post(f"{base_url}/transactions", json=[transaction(1), transaction(2), transaction(3, currency="x")])
    httpx.post(f"{base_url}/transactions", content=b"not json")
    text = httpx.get(f"{base_url}/metrics").text
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["mlops_ingestion_messages_in_total"] == 4
    assert samples["mlops_ingestion_messages_out_total"] == 2
    assert samples["mlops_ingestion_dead_lettered_total"] == 2
    assert samples["mlops_ingestion_errors_total"] == 2
    assert samples["mlops_ingestion_latency_seconds_count"] == 4


def test_unacknowledged_sends_answer_503_and_the_service_keeps_running(tmp_path):
    broker = LocalBroker(tmp_path / "kafka", port=free_port())
    broker.start()
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap_servers)
    producer = kafka.producer(max_block_ms=1000)
    broker.stop()
    service = IngestionService(producer, KEY, ServiceMetrics("ingestion"), ack_timeout_s=1.0)
    try:
        with serving(service) as url:
            answer = httpx.post(f"{url}/transactions", json=transaction(1))
            assert answer.status_code == 503 and "Kafka did not acknowledge" in answer.json()["error"]
            assert httpx.get(f"{url}/health").status_code == 200
    finally:
        producer.close(timeout=0)


# --- File replay and the command line ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset():
    return simulate(SimulationConfig(customers=20, terminals=10, days=4, start=datetime.date(2026, 3, 1), seed=5))


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_replaying_a_simulated_file_produces_exactly_its_transactions(
    kafka, service, tmp_path, tiny_dataset, file_format
):
    path = write_dataset(tiny_dataset, tmp_path, file_format)["transactions"]
    expected = tiny_dataset.transactions

    assert replay_file(service, path) == ReplayCounts(accepted=len(expected), rejected=0)
    produced = values(read_topic(kafka, TRANSACTIONS_TOPIC))
    assert sorted(t["transaction_id"] for t in produced) == sorted(expected["transaction_id"])
    first = next(t for t in produced if t["transaction_id"] == expected["transaction_id"].iloc[0])
    assert first["event_time"] == expected["event_time"].iloc[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert first["amount"] == pytest.approx(expected["amount"].iloc[0])


def test_replaying_json_lines_dead_letters_bad_lines(kafka, service, tmp_path):
    path = tmp_path / "transactions.jsonl"
    lines = [
        json.dumps(transaction(1)), "{broken", json.dumps(transaction(2, amount="3")), "", json.dumps(transaction(3))
    ]
    path.write_text("\n".join(lines) + "\n")
    assert replay_file(service, path) == ReplayCounts(accepted=2, rejected=2)
    assert len(read_topic(kafka, TRANSACTIONS_TOPIC)) == 2
    reasons = sorted(d["reason"] for d in values(read_topic(kafka, DEAD_LETTER_TOPIC)))
    assert reasons[0].startswith("amount:") and reasons[1].startswith("line 2: malformed JSON")


def test_cli_replays_a_file_and_fails_clearly(kafka, tmp_path, tiny_dataset, monkeypatch, capsys):
    path = write_dataset(tiny_dataset, tmp_path, "csv")["transactions"]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.delenv("CARD_TOKEN_KEY", raising=False)
    assert main(["replay", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{len(tiny_dataset.transactions):,} accepted, 0 rejected" in out
    assert "CARD_TOKEN_KEY is not set" in err

    with pytest.raises(SystemExit) as bad_arguments:
        main(["replay", "--file", str(tmp_path / "transactions.txt")])
    assert bad_arguments.value.code == 2
    assert "unsupported file type" in capsys.readouterr().err

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    assert main(["serve", "--port", str(free_port()), "--kafka-timeout", "0.5"]) == 1
    assert "cannot reach Kafka" in capsys.readouterr().err
