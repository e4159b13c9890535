"""The real-time path end to end, every service a real process on a real broker: transactions
posted over HTTP come out as scores on `fraud_scores`, statuses in the updater's store and
alerts at a local SMS provider; bad input is dead-lettered with nothing else lost; sensor
ticks launch runs that land the transactions and the scores in DuckDB."""
import json
import sys
from collections.abc import Iterator

import httpx
import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context, materialize

from mlops_assets.assets.raw import raw_assets
from mlops_assets.assets.scoring import build_fraud_scores_asset
from mlops_assets.contracts import FRAUD_SCORES, TRANSACTIONS
from mlops_assets.resources.kafka import DEAD_LETTER_TOPIC, FRAUD_SCORES_TOPIC
from mlops_assets.resources.mlflow import ModelRegistryResource
from mlops_assets.sensors.kafka_sensors import build_kafka_sensor
from mlops_assets.services.ingestion import frame_to_payloads
from mlops_assets.services.processes import BackgroundProcess
from mlops_assets_tests.helpers import free_port, wait_until
from mlops_assets_tests.services.test_alerting import sms_provider  # noqa: F401  (fixture)

STREAMED = 300


@pytest.fixture
def platform(kafka, stream, champion, sms_provider, data_dir) -> Iterator[dict]:  # noqa: F811
    warehouse_path, to_stream, _ = stream
    provider = sms_provider()
    ports = {"ingestion": free_port(), "updater": free_port()}
    run_dir = data_dir / "services"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "MLFLOW_TRACKING_URI": champion,
           "MLOPS_DATA_DIR": str(data_dir), "CARD_TOKEN_KEY": "test-key"}
    module = [sys.executable, "-m"]
    services = [
        BackgroundProcess("ingestion", [*module, "mlops_assets.services.ingestion", "serve",
                                        "--port", str(ports["ingestion"])], run_dir, env),
        BackgroundProcess("scoring", [*module, "mlops_assets.services.scoring", "--warehouse", str(warehouse_path),
                                      "--review-threshold", "0.3", "--decline-threshold", "0.7"], run_dir, env),
        BackgroundProcess("updater", [*module, "mlops_assets.services.updater", "--store",
                                      str(run_dir / "statuses.db"), "--port", str(ports["updater"])], run_dir, env),
        BackgroundProcess("alerting", [*module, "mlops_assets.services.alerting", "--backend", "webhook",
                                       "--webhook-url", provider.url, "--sent-log", str(run_dir / "alerts.db")],
                          run_dir, env),
    ]
    for service in services:
        service.start()
    try:
        url = f"http://127.0.0.1:{ports['ingestion']}"
        wait_until(lambda: _answers(f"{url}/health"), timeout_s=60)
        wait_until(lambda: _answers(f"http://127.0.0.1:{ports['updater']}/metrics"), timeout_s=60)
        yield {"url": url, "updater": f"http://127.0.0.1:{ports['updater']}", "provider": provider,
               "transactions": to_stream.head(STREAMED), "warehouse": warehouse_path, "services": services}
    finally:  # each service's log stays in the test's data directory, under services/
        for service in services:
            service.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _read_all(kafka, topic: str) -> list[dict]:
    consumer = kafka.consumer(topic, group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=1500)
    try:
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def _payloads(frame) -> list[dict]:
    """The transactions as a payment gateway posts them, each with a raw card number."""
    return frame_to_payloads(frame.assign(card_number="4111111111111111"))


def test_posted_transactions_become_scores_statuses_alerts_and_warehouse_rows(
    platform, kafka, batch_resources, champion, catalog
):
    valid = _payloads(platform["transactions"])
    bad = [
        {**valid[0], "transaction_id": "bad-missing", "currency": None},
        {**valid[0], "transaction_id": "bad-type", "amount": "12.50"},
        {**valid[0], "transaction_id": "bad-negative", "amount": -3.0},
    ]
    with httpx.Client(base_url=platform["url"], timeout=30) as client:
        answers = [client.post("/transactions", json=valid[i:i + 50] + (bad if i == 0 else [])) for i in range(0, STREAMED, 50)]
        malformed = client.post("/transactions", content=b'{"transaction_id": "oops",', headers={"Content-Type": "application/json"})
    assert [answer.status_code for answer in answers] == [200] * (STREAMED // 50)
    rejected = [item for item in answers[0].json() if item["status"] == "rejected"]
    assert {item["field"] for item in rejected} == {"currency", "amount"}
    assert malformed.status_code == 400

    ids = {payload["transaction_id"] for payload in valid}
    scores: dict[str, dict] = {}
    wait_until(lambda: scores.update({s["transaction_id"]: s for s in _read_all(kafka, FRAUD_SCORES_TOPIC)}) or ids <= set(scores), 90)
    assert set(scores) == ids  # every valid transaction scored, nothing else

    expected_status = {"approve": "approved", "review": "in_review", "decline": "declined"}

    def statuses_match() -> bool:
        for transaction_id, score in scores.items():
            answer = httpx.get(f"{platform['updater']}/status/{transaction_id}", timeout=5)
            if answer.status_code != 200 or answer.json()["status"] != expected_status[score["decision"]]:
                return False
        return True

    wait_until(statuses_match, 60)
    alerted = {tid for tid, score in scores.items() if score["decision"] in ("review", "decline")}
    assert alerted, "the thresholds are set so that some transactions are flagged"
    wait_until(lambda: set(platform["provider"].keys()) == alerted, 60)
    assert len(platform["provider"].keys()) == len(alerted)  # one SMS per flagged transaction

    dead = _read_all(kafka, DEAD_LETTER_TOPIC)
    assert len(dead) == 4 and all(d["reason"] for d in dead)
    everything = json.dumps(dead) + json.dumps(list(scores.values()))
    assert "4111111111111111" not in everything  # the card number was tokenized at the edge

    resources = {**batch_resources, "kafka": kafka, "model_registry": ModelRegistryResource(tracking_uri=champion)}
    raw = next(a for a in raw_assets if a.key.to_user_string() == "raw_transactions")
    scores_asset = build_fraud_scores_asset(catalog.view("fraud_feature_view"))
    with DagsterInstance.ephemeral() as instance:
        for contract, asset in ((TRANSACTIONS, raw), (FRAUD_SCORES, scores_asset)):
            sensor = build_kafka_sensor(contract)
            (request,) = list(sensor(build_sensor_context(instance=instance, resources={"kafka": kafka})))
            assert isinstance(request, RunRequest)
            for _ in range(2):  # re-executing the same range adds nothing
                assert materialize([asset], resources=resources, run_config=request.run_config, instance=instance).success
    with batch_resources["warehouse"].connect() as con:
        landed = {row[0] for row in con.execute("SELECT transaction_id FROM raw.transactions").fetchall()}
        tokens = con.execute("SELECT count(*) FROM raw.transactions WHERE extra_fields LIKE '%card_token%'").fetchone()[0]
        stored_scores = con.execute("SELECT transaction_id, decision FROM scores.fraud_scores").fetchall()
    assert landed == ids and tokens == STREAMED
    assert dict(stored_scores) == {tid: score["decision"] for tid, score in scores.items()}
    assert len(stored_scores) == STREAMED
