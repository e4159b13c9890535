"""Kafka topic sensors against a real broker: a tick requests a run for exactly the new
offsets, the run lands them in DuckDB, and nothing is read twice or skipped."""
import json

from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from mlops_assets.assets.raw import raw_assets
from mlops_assets.contracts import TRANSACTIONS
from mlops_assets.resources.kafka import TRANSACTIONS_TOPIC
from mlops_assets.sensors.kafka_sensors import build_kafka_sensor

RAW_TRANSACTIONS = next(a for a in raw_assets if a.key.to_user_string() == "raw_transactions")


def _transaction(i: int) -> dict:
    return {
        "transaction_id": f"tx{i:05d}", "event_time": f"2026-01-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "customer_id": f"c{i % 7}", "terminal_id": f"m{i % 3}", "amount": 10.0 + i, "currency": "EUR",
    }


def _produce(kafka, messages: list[bytes]) -> None:
    producer = kafka.producer()
    for index, message in enumerate(messages):
        producer.send(TRANSACTIONS_TOPIC, key=f"c{index % 7}".encode(), value=message)
    producer.flush()
    producer.close()


def _tick(sensor, instance, kafka, cursor):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": kafka})
    results = list(sensor(context))
    return results, context.cursor


def _run(request: RunRequest, resources) -> None:
    result = materialize([RAW_TRANSACTIONS], resources=resources, run_config=request.run_config)
    assert result.success


def _stored(warehouse) -> tuple[int, int]:
    with warehouse.connect() as con:
        return con.execute(
            "SELECT (SELECT count(DISTINCT transaction_id) FROM raw.transactions), "
            "(SELECT count(*) FROM raw.transactions)"
        ).fetchone()


def test_new_offsets_become_runs_that_load_exactly_them(kafka, warehouse, batch_resources):
    sensor = build_kafka_sensor(TRANSACTIONS)
    resources = {**batch_resources, "kafka": kafka}
    with DagsterInstance.ephemeral() as instance:
        _produce(kafka, [json.dumps(_transaction(i)).encode() for i in range(300)])
        (first,), cursor = _tick(sensor, instance, kafka, None)
        assert isinstance(first, RunRequest)
        ranges = first.run_config["ops"]["raw_transactions"]["config"]["kafka_offsets"]
        assert sum(r["end"] - r["start"] for r in ranges) == 300 and all(r["start"] == 0 for r in ranges)
        assert first.run_key == "transactions:" + ",".join(f"{r['partition']}:0-{r['end']}" for r in ranges)
        _run(first, resources)
        assert _stored(warehouse) == (300, 300)

        (idle,), cursor = _tick(sensor, instance, kafka, cursor)
        assert isinstance(idle, SkipReason)

        # 50 new ones, 10 replays of already-loaded ids, and one message that is not JSON.
        more = [json.dumps(_transaction(i)).encode() for i in range(300, 350)]
        replays = [json.dumps(_transaction(i)).encode() for i in range(10)]
        _produce(kafka, more + replays + [b"{oops"])
        (second,), cursor = _tick(sensor, instance, kafka, cursor)
        new_ranges = second.run_config["ops"]["raw_transactions"]["config"]["kafka_offsets"]
        assert sum(r["end"] - r["start"] for r in new_ranges) == 61
        assert {r["partition"]: r["start"] for r in new_ranges} == {
            r["partition"]: r["end"] for r in ranges if r["partition"] in {n["partition"] for n in new_ranges}
        }
        _run(second, resources)
        _run(second, resources)  # re-executing the same range adds nothing
        assert _stored(warehouse) == (350, 350)
        with warehouse.connect() as con:
            reasons = con.execute("SELECT reason FROM raw.rejected_rows").fetchall()
        assert reasons == [("message: is not a JSON object",)]
