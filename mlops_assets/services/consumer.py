"""What every Kafka service shares: batch consumption with commit-after-handling, the
dead-letter topic, and Prometheus metrics.

A service is a small class with `run()` / `stop()` whose Kafka clients are passed in, so a
test drives it in-process or as a real process alike. Offsets are committed only after a
batch has been handled (its outputs acknowledged by the broker), so a crash replays the
batch instead of losing it; handlers are idempotent, so a replay duplicates nothing.
"""
import datetime as dt
import json
import logging
import threading
from abc import ABC, abstractmethod

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.producer.future import FutureRecordMetadata
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from mlops_assets.resources.kafka import DEAD_LETTER_TOPIC


def configure_logging() -> None:
    """Service logs on stderr; kafka-python's own INFO (per connection and rebalance) left out."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)


class ServiceMetrics:
    """Prometheus metrics of one service, in a registry of its own."""

    def __init__(self, service: str):
        self.registry = CollectorRegistry()
        labels = {"registry": self.registry, "namespace": "mlops", "subsystem": service}
        self.messages_in = Counter("messages_in", "Messages received", **labels)
        self.messages_out = Counter("messages_out", "Messages produced or applied", **labels)
        self.errors = Counter("errors", "Messages that failed and were dead-lettered or retried", **labels)
        self.dead_lettered = Counter("dead_lettered", "Messages sent to the dead-letter topic", **labels)
        self.latency = Histogram(
            "latency_seconds",
            "Time from a message's arrival to its result",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            **labels,
        )
        self.model_version = Gauge("model_version", "Registered model version in use", **labels)

    def serve(self, port: int) -> None:
        """Exposes the metrics over HTTP on `port` (0: do not serve)."""
        if port:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)


def dead_letter(producer: KafkaProducer, value: bytes, reason: str, source: str) -> FutureRecordMetadata:
    """Sends a message that cannot be processed to the dead-letter topic, with the reason;
    wait on the returned future before the message's offset is committed."""
    envelope = {
        "reason": reason,
        "source": source,
        "message": value.decode(errors="replace") if isinstance(value, bytes) else value,
        "failed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    return producer.send(DEAD_LETTER_TOPIC, value=json.dumps(envelope).encode())


class BatchConsumerService(ABC):
    """Consumes batches of records as a consumer group member; subclasses handle them."""

    def __init__(self, consumer: KafkaConsumer, producer: KafkaProducer, metrics: ServiceMetrics, max_batch: int = 500):
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        self.max_batch = max_batch
        self._stopping = threading.Event()
        self._dead_letters: list[FutureRecordMetadata] = []

    def reject(self, record: ConsumerRecord, reason: str) -> None:
        """Sends a record that cannot be processed to the dead-letter topic with the reason;
        it is acknowledged before the batch's offsets are committed."""
        self.metrics.dead_lettered.inc()
        source = f"{record.topic}[{record.partition}]@{record.offset}"
        self._dead_letters.append(dead_letter(self.producer, record.value, reason, source))

    @abstractmethod
    def handle(self, records: list[ConsumerRecord]) -> None:
        """Processes a batch; its outputs must be acknowledged before this returns."""

    def run(self) -> None:
        """Polls, handles and commits until `stop()`; closes the consumer on the way out."""
        try:
            while not self._stopping.is_set():
                batches = self.consumer.poll(timeout_ms=100, max_records=self.max_batch)
                records = [record for partition in batches.values() for record in partition]
                if not records:
                    continue
                self.metrics.messages_in.inc(len(records))
                self.handle(records)
                self._await_dead_letters()
                self.consumer.commit()
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._stopping.set()

    def _await_dead_letters(self) -> None:
        if self._dead_letters:
            self.producer.flush()
            for future in self._dead_letters:
                future.get(timeout=30)
            self._dead_letters.clear()
