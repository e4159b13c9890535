"""Benchmark the fraud scoring service on the local broker, beside a pass-through service.

Usage: python benchmarks/bench_scoring.py [--backlog 20000] [--rounds 3] [--rate 500] [--seconds 20]

1. Sets up what the service needs: a simulated data set whose history (all but the last 10
   days) is in a fresh warehouse, a CatBoost model trained on that history's feature view and
   registered as champion in a fresh MLflow registry, and a local broker.
2. Sustained throughput: a backlog of transactions is produced first, then the service (and,
   separately, a pass-through consumer-producer that forwards messages without scoring), each
   a real process, drain it; messages per second are from the first to the last output. The
   two take turns for `--rounds` rounds (a fresh process and consumer group each time), and
   the medians are compared: on a shared machine one drain of a backlog varies by a third.
   Each round drains the whole topic (after the first round, the latency test's transactions
   too), so the two services of a round always do the same work.
3. Latency at an offered rate, by the first round's scoring service once it has drained the
   backlog: transactions are produced at `--rate` per second for `--seconds`; each score's
   `latency_ms` is the time from the transaction's produce timestamp to its score being
   produced. Prints p50/p95/p99.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.contracts import CONTRACTS  # noqa: E402
from mlops_assets.features.catalog import load_catalog  # noqa: E402
from mlops_assets.features.offline import (  # noqa: E402
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.ingestion import load_file  # noqa: E402
from mlops_assets.models.registry import CHAMPION, ModelRegistry  # noqa: E402
from mlops_assets.models.training import CatBoostSettings, fit_catboost  # noqa: E402
from mlops_assets.resources.kafka import (  # noqa: E402
    FRAUD_SCORES_TOPIC,
    TRANSACTIONS_TOPIC,
    KafkaResource,
)
from mlops_assets.resources.mlflow import ensure_experiment  # noqa: E402
from mlops_assets.resources.warehouse import WarehouseResource  # noqa: E402
from mlops_assets.services.consumer import BatchConsumerService, ServiceMetrics  # noqa: E402
from mlops_assets.services.ingestion import frame_to_payloads  # noqa: E402
from mlops_assets.services.local_broker import LocalBroker  # noqa: E402
from mlops_assets.services.scoring import batch_producer  # noqa: E402
from mlops_assets.services.simulator import SimulationConfig, simulate, write_dataset  # noqa: E402
from mlops_assets.settings import MODEL_FEATURE_VIEW, feature_definitions_dir  # noqa: E402


class PassThrough(BatchConsumerService):
    """Forwards each transaction to the scores topic unchanged: Kafka's cost without scoring."""

    def __init__(self, consumer, producer):
        super().__init__(consumer, producer, ServiceMetrics("passthrough"))

    def handle(self, records) -> None:
        futures = [self.producer.send(FRAUD_SCORES_TOPIC, key=r.key, value=r.value) for r in records]
        self.producer.flush()  # as the scoring service does: one flush per batch
        for future in futures:
            future.get(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(scratch: Path) -> tuple[Path, str, pd.DataFrame]:
    """History warehouse, registered champion, and the transactions to stream."""
    files = write_dataset(simulate(SimulationConfig(customers=2000, terminals=1000, days=60, seed=3)), scratch / "sim")
    transactions = pd.read_parquet(files["transactions"])
    cut = transactions["event_time"].max().normalize() - pd.Timedelta(days=10)
    history = scratch / "history"
    history.mkdir()
    transactions[transactions["event_time"] < cut].to_parquet(history / "transactions.parquet")
    labels = pd.read_parquet(files["fraud_labels"])
    labels[labels["reported_at"] < cut].to_parquet(history / "fraud_labels.parquet")
    sources = {**files, "transactions": history / "transactions.parquet", "fraud_labels": history / "fraud_labels.parquet"}
    view = load_catalog(feature_definitions_dir()).view(MODEL_FEATURE_VIEW)
    warehouse = scratch / "warehouse.duckdb"
    with WarehouseResource(database=str(warehouse)).connect() as con:
        for name, contract in CONTRACTS.items():
            load_file(con, contract, str(sources[name]), run_id="bench")
        catalog = load_catalog(feature_definitions_dir())
        for group in catalog.groups:
            con.execute(f"CREATE TABLE {group.table} AS {feature_group_sql(group)}")
        for labels_group in catalog.label_groups:
            con.execute(f"CREATE TABLE {labels_group.table} AS {label_group_sql(labels_group)}")
        rows = con.execute(feature_view_sql(view)).df().rename(columns={"is_fraud": "label"})
    model, _ = fit_catboost(rows, list(view.feature_names), CatBoostSettings(600, 0.05, 6, 2, "SqrtBalanced", 60, 42), 0.2)
    tracking_uri = f"sqlite:///{scratch / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    registry = ModelRegistry(tracking_uri, "fraud_detector")
    with mlflow.start_run(experiment_id=ensure_experiment(tracking_uri, "bench", (scratch / "artifacts").as_uri())):
        version = registry.register(model, view, tags={})
    registry.set_alias(CHAMPION, str(version.version))
    return warehouse, tracking_uri, transactions[transactions["event_time"] >= cut].reset_index(drop=True)


def produce(kafka: KafkaResource, frame: pd.DataFrame, rate: float | None = None) -> None:
    producer = kafka.producer(linger_ms=1)
    # Metadata first: otherwise the first messages, stamped at send, wait for it in the
    # producer, and their wait would count as the service's latency.
    producer.partitions_for(TRANSACTIONS_TOPIC)
    started = time.perf_counter()
    for index, message in enumerate(frame_to_payloads(frame)):
        if rate:
            pause = started + index / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        producer.send(TRANSACTIONS_TOPIC, key=message["customer_id"].encode(), value=json.dumps(message).encode())
    producer.flush()
    producer.close()


def scores_reader(kafka: KafkaResource):
    """A consumer positioned at the current end of the scores topic: it reads only what comes next
    (reading the earlier phases' messages would compete for this process with the producer)."""
    consumer = kafka.consumer(group_id=None, enable_auto_commit=False)
    partitions = [TopicPartition(FRAUD_SCORES_TOPIC, p) for p in sorted(consumer.partitions_for_topic(FRAUD_SCORES_TOPIC))]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for partition in partitions:
        consumer.position(partition)  # resolve the end offsets now, before anything is produced
    return consumer


def drain(consumer, count: int) -> list[tuple[float, bytes]]:
    """(arrival time, value) of the next `count` messages, then closes the reader. Values are
    parsed later, not here: this process shares the machine with the services it measures."""
    found: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + 300
    while len(found) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            arrived = time.perf_counter()
            found += [(arrived, record.value) for record in records]
    consumer.close()
    return found


def sustained_rate(outputs: list[tuple[float, bytes]]) -> float:
    """Messages per second from the first output to the last (start-up left out)."""
    return (len(outputs) - 1) / (outputs[-1][0] - outputs[0][0])


def start_process(args: list[str], env: dict) -> subprocess.Popen:
    """A service as a real process, as it is deployed (its own interpreter, no shared GIL)."""
    return subprocess.Popen([sys.executable, *args], env={**os.environ, **env}, stderr=subprocess.DEVNULL)


def stop_process(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def passthrough_child(group: str) -> None:
    kafka = KafkaResource.from_env()
    service = PassThrough(
        kafka.consumer(TRANSACTIONS_TOPIC, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"),
        batch_producer(kafka),  # the scoring service's producer settings: only the scoring differs
    )
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    service.run()


def moving_forward(stream: pd.DataFrame, count: int) -> pd.DataFrame:
    """`count` transactions: `stream` repeated end to end, each repetition moved on in time by
    the stream's span, with fresh ids. Time goes on as in a real stream; replaying the same
    days again would pile copies into the same windows and slow the features down."""
    span = stream["event_time"].max() - stream["event_time"].min() + pd.Timedelta(seconds=1)
    copies = [stream.assign(event_time=stream["event_time"] + k * span) for k in range(count // len(stream) + 1)]
    return pd.concat(copies).head(count).assign(transaction_id=[f"t{i}" for i in range(count)])


def live_latencies(kafka: KafkaResource, live: pd.DataFrame, rate: float) -> np.ndarray:
    """Produces `live` at `rate` transactions a second to the running scoring service;
    returns each one's produce-to-score latency in milliseconds."""
    reader = scores_reader(kafka)
    producer_thread = threading.Thread(target=produce, args=(kafka, live, rate))
    producer_thread.start()
    out = drain(reader, len(live))
    producer_thread.join()
    return np.array([json.loads(value)["latency_ms"] for _, value in out])


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="drains of the backlog by each service")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--passthrough-child", metavar="GROUP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.passthrough_child:
        passthrough_child(args.passthrough_child)
        return
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        print("preparing data, model and broker ...", flush=True)
        warehouse, tracking_uri, stream = prepare(scratch)
        broker = LocalBroker(scratch / "kafka", port=_free_port())
        broker.start()
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "MLFLOW_TRACKING_URI": tracking_uri}
        try:
            kafka = KafkaResource(bootstrap_servers=broker.bootstrap_servers)
            kafka.ensure_topics()
            transactions = moving_forward(stream, args.backlog + int(args.rate * args.seconds))
            backlog, live = transactions.head(args.backlog), transactions.iloc[args.backlog :]
            produce(kafka, backlog)

            passthrough_rates, scoring_rates = [], []
            in_topic = len(backlog)  # what each round drains: all of `transactions`
            for round_number in range(args.rounds):
                reader = scores_reader(kafka)
                passthrough = start_process([__file__, "--passthrough-child", f"passthrough-{round_number}"], env)
                passthrough_rates.append(sustained_rate(drain(reader, in_topic)))
                stop_process(passthrough)
                reader = scores_reader(kafka)
                scoring = start_process(
                    ["-m", "mlops_assets.services.scoring", "--warehouse", str(warehouse), "--group", f"scoring-{round_number}"],
                    env,
                )
                scoring_rates.append(sustained_rate(drain(reader, in_topic)))
                if round_number == 0:
                    latencies = live_latencies(kafka, live, args.rate)
                    in_topic += len(live)
                stop_process(scoring)
        finally:
            broker.stop()
    print(
        f"\nbacklog of {len(backlog):,} transactions (later rounds {in_topic:,}, with the latency test's), "
        "3 partitions, services as separate processes"
    )
    passthrough_rate, scoring_rate = np.median(passthrough_rates), np.median(scoring_rates)
    print(f"  pass-through (no scoring): {passthrough_rate:10,.0f} msg/s  (median; rounds: {_rates(passthrough_rates)})")
    print(f"  fraud scoring service:     {scoring_rate:10,.0f} msg/s  (median; rounds: {_rates(scoring_rates)})")
    print(f"  scoring / pass-through:    {scoring_rate / passthrough_rate:10.0%}")
    print(f"\n{len(latencies):,} transactions offered at {args.rate:.0f}/s: produce -> score latency")
    for q in (50, 95, 99):
        print(f"  p{q}: {np.percentile(latencies, q):7.1f} ms")
    print(f"  max: {latencies.max():7.1f} ms")


if __name__ == "__main__":
    main()
