"""The fraud scoring service: every transaction on `transactions` gets a fraud score on
`fraud_scores` within milliseconds, from fresh features and the registry's champion model.

- Features are computed online from the same `feature_definitions/` as the offline feature
  view (`OnlineFeatureStore`), bootstrapped from the warehouse at start, then updated from the
  stream: each batch is added to history and every transaction in it scored on the history
  strictly before its own time; fraud labels come from `fraud_labels` (for the terminals'
  known fraud rates).
- The model is the version holding the `champion` alias, verified on load (hash, feature
  list, feature view version); the alias is checked every few seconds and a new champion is
  swapped in between two batches, so no message is lost or scored twice for the swap.
- Offsets are committed after the batch's scores are acknowledged; a malformed transaction
  goes to the dead-letter topic with the reason.

State and several instances: `transactions` is keyed by customer, so a consumer-group member
owns whole customers and their history. Terminal history spans partitions: every instance also
reads the partitions it does not own, for history only, up to their end before each batch
(`StreamHistory`), so several instances compute the same features as one. Every instance reads
all fraud labels (no group). Within the partitions one instance owns, terminal features assume
they are consumed roughly in step, as they are at live rates; a backlog replayed partition by
partition can reach a terminal's transactions out of order.
"""
import argparse
import datetime as dt
import gc
import logging
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass

import duckdb
import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from mlops_assets.assets.scoring import decisions
from mlops_assets.features.catalog import FeatureView, load_catalog
from mlops_assets.features.online import OnlineFeatureStore
from mlops_assets.models.registry import (
    CHAMPION,
    ModelIntegrityError,
    ModelRegistry,
    VerifiedModel,
)
from mlops_assets.resources.kafka import (
    FRAUD_LABELS_TOPIC,
    FRAUD_SCORES_TOPIC,
    TRANSACTIONS_TOPIC,
    KafkaResource,
)
from mlops_assets.resources.mlflow import MODEL_NAME, default_tracking_uri
from mlops_assets.services.consumer import (
    BatchConsumerService,
    ServiceMetrics,
    configure_logging,
)
from mlops_assets.services.stream_history import StreamHistory
from mlops_assets.settings import MODEL_FEATURE_VIEW, data_dir, feature_definitions_dir

log = logging.getLogger(__name__)

# Polling `fraud_labels` costs a broker round trip even when there is nothing new: at live
# rates, doing it every batch (every few milliseconds) would add to every score's latency.
LABELS_EVERY_S = 0.1
_REQUIRED = {"transaction_id": str, "event_time": str, "customer_id": str, "terminal_id": str}


class MalformedTransaction(ValueError):
    """A message on `transactions` that cannot be scored; the message says why."""


@dataclass(frozen=True)
class Thresholds:
    review: float = 0.5
    decline: float = 0.9


def parse_transaction(value: bytes) -> dict:
    """The transaction in a message, with `event_time` as a naive UTC datetime."""
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise MalformedTransaction("message: is not JSON") from error
    if not isinstance(message, dict):
        raise MalformedTransaction("message: is not a JSON object")
    for field, kind in _REQUIRED.items():
        if not isinstance(message.get(field), kind) or not message[field]:
            raise MalformedTransaction(f"{field}: is missing or not a string")
    amount = message.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount >= 0:
        raise MalformedTransaction("amount: must be a number >= 0")
    try:
        event_time = dt.datetime.fromisoformat(message["event_time"])
    except ValueError as error:
        raise MalformedTransaction("event_time: is not an ISO-8601 time") from error
    if event_time.tzinfo is not None:
        event_time = event_time.astimezone(dt.timezone.utc).replace(tzinfo=None)
    message["event_time"], message["amount"] = event_time, float(amount)
    return message


class ChampionModel:
    """The champion version, reloaded when the alias moves (checked every `check_every_s`)."""

    def __init__(self, registry: ModelRegistry, view: FeatureView, check_every_s: float = 5.0):
        self.registry = registry
        self.view = view
        self.check_every_s = check_every_s
        self._model: VerifiedModel | None = None
        self._checked_at = float("-inf")

    def current(self) -> VerifiedModel:
        """The model to score with; raises if there has never been a usable champion."""
        if time.monotonic() - self._checked_at >= self.check_every_s:
            self._checked_at = time.monotonic()
            self._reload_if_moved()
        if self._model is None:
            raise ModelIntegrityError(f"{self.registry.model_name} has no usable champion version")
        return self._model

    def _reload_if_moved(self) -> None:
        version = self.registry.version_with_alias(CHAMPION)
        if version is None or (self._model is not None and self._model.version == version):
            return
        try:
            self._model = self.registry.load_verified(version, self.view)
            log.info("scoring with %s version %s", self.registry.model_name, version)
        except ModelIntegrityError as error:
            # Keep scoring with the verified model we have; a bad new champion must not stop us.
            log.error("champion version %s refused: %s", version, error)


class FraudScoringService(BatchConsumerService):
    def __init__(
        self,
        consumer: KafkaConsumer,
        label_consumer: KafkaConsumer,
        producer: KafkaProducer,
        features: OnlineFeatureStore,
        history: StreamHistory,
        model: ChampionModel,
        metrics: ServiceMetrics,
        thresholds: Thresholds = Thresholds(),
        emit_features: bool = False,
        max_batch: int = 500,
    ):
        super().__init__(consumer, producer, metrics, max_batch)
        if features.view.feature_names != model.view.feature_names:
            raise ValueError("the feature store and the model must serve the same feature view")
        self.label_consumer = label_consumer
        self.history = history
        self.features = features
        self.model = model
        self.thresholds = thresholds
        self.emit_features = emit_features  # put the feature values used in each score (audit, parity)
        self._recently_scored: OrderedDict[str, None] = OrderedDict()
        self._latest_by_partition: dict[int, dt.datetime] = {}
        self._labels_polled_at = float("-inf")

    def handle(self, records: list[ConsumerRecord]) -> None:
        received = time.time()
        self.history.catch_up(records)
        self._apply_new_labels()
        transactions = self._valid_transactions(records)
        if not transactions:
            return
        model = self.model.current()
        matrix = self.features.add_transactions([transaction for _, transaction in transactions])
        scores = model.model.predict_proba(matrix)[:, 1]
        verdicts = decisions(scores, self.thresholds.review, self.thresholds.decline)
        scored_at = dt.datetime.now(dt.timezone.utc).isoformat()
        names = self.features.view.feature_names
        pending = []
        for (record, transaction), row, score, verdict in zip(transactions, matrix, scores.tolist(), verdicts):
            latency_ms = (time.time() - record.timestamp / 1000) * 1000 if record.timestamp else None
            message = {
                "transaction_id": transaction["transaction_id"],
                "score": score,
                "decision": str(verdict),
                "model_name": model.name,
                "model_version": model.version,
                "feature_view_version": model.feature_view_version,
                "scored_at": scored_at,
                "latency_ms": latency_ms,
            }
            if self.emit_features:
                message["features"] = dict(zip(names, row.tolist()))  # NaN is written as null
            pending.append(
                self.producer.send(FRAUD_SCORES_TOPIC, key=transaction["customer_id"].encode(), value=orjson.dumps(message))
            )
        self.producer.flush()  # the batch goes out in a few requests, not one per score
        for future in pending:
            future.get(timeout=30)  # acknowledged before the offsets are committed
        self.metrics.messages_out.inc(len(transactions))
        self.metrics.model_version.set(float(model.version))
        acknowledged = time.time()
        for record, transaction in transactions:
            self.metrics.latency.observe(max(0.0, acknowledged - (record.timestamp / 1000 if record.timestamp else received)))
            latest = self._latest_by_partition.get(record.partition)
            self._latest_by_partition[record.partition] = max(latest or transaction["event_time"], transaction["event_time"])
        # Partitions advance unevenly: only history older than the slowest owned one's window
        # can go. Evicting visits only what expires, so it runs every batch, in small steps.
        owned = {tp.partition for tp in self.history.owned}
        owned_progress = [moment for partition, moment in self._latest_by_partition.items() if partition in owned]
        if owned_progress:
            self.features.evict(min(owned_progress))

    def _valid_transactions(self, records: list[ConsumerRecord]) -> list[tuple[ConsumerRecord, dict]]:
        """The batch's scorable transactions; the others are dead-lettered."""
        valid = []
        for record in records:
            try:
                transaction = parse_transaction(record.value)
            except MalformedTransaction as error:
                self.metrics.errors.inc()
                self.reject(record, str(error))
                continue
            if transaction["transaction_id"] in self._recently_scored:
                continue  # a replayed message: scoring it again would duplicate its score
            self._remember(transaction["transaction_id"])
            valid.append((record, transaction))
        return valid

    def _remember(self, transaction_id: str, capacity: int = 200_000) -> None:
        self._recently_scored[transaction_id] = None
        if len(self._recently_scored) > capacity:
            self._recently_scored.popitem(last=False)

    def _apply_new_labels(self) -> None:
        if time.monotonic() - self._labels_polled_at < LABELS_EVERY_S:
            return
        self._labels_polled_at = time.monotonic()
        for partition in self.label_consumer.poll(timeout_ms=0, max_records=10_000).values():
            for record in partition:
                try:
                    label = orjson.loads(record.value)
                    reported_at = dt.datetime.fromisoformat(label["reported_at"])
                    if reported_at.tzinfo is not None:
                        reported_at = reported_at.astimezone(dt.timezone.utc).replace(tzinfo=None)
                    self.features.add_label(str(label["transaction_id"]), int(label["is_fraud"]), reported_at)
                except (ValueError, KeyError, TypeError) as error:
                    self.metrics.errors.inc()
                    log.warning("ignoring a malformed fraud label at %s@%s: %s", record.partition, record.offset, error)


def _open_warehouse(path: str, attempts: int = 50) -> duckdb.DuckDBPyConnection:
    """A read-only connection; waits while a Dagster run holds the write lock."""
    for attempt in range(attempts):
        try:
            connection = duckdb.connect(path, read_only=True)
            connection.execute("SET TimeZone = 'UTC'")
            return connection
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def build_service(
    kafka: KafkaResource, warehouse_path: str, tracking_uri: str, group: str, model_check_s: float = 5.0, **options
) -> FraudScoringService:
    """Wires a scoring service from settings: clients, bootstrapped features, champion model
    (its alias checked every `model_check_s` seconds)."""
    view = load_catalog(feature_definitions_dir()).view(MODEL_FEATURE_VIEW)
    with _open_warehouse(warehouse_path) as con:
        features = OnlineFeatureStore.from_warehouse(con, view)
    consumer = kafka.consumer(
        TRANSACTIONS_TOPIC, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )

    def add_to_history(value: bytes) -> None:
        try:
            features.add_transaction(parse_transaction(value))
        except MalformedTransaction:
            pass  # the instance that owns its partition dead-letters it

    history = StreamHistory(kafka.consumer(group_id=None), consumer, TRANSACTIONS_TOPIC, add_to_history)
    # Every instance needs every label; replaying old ones on start is harmless (idempotent).
    label_consumer = kafka.consumer(FRAUD_LABELS_TOPIC, group_id=None, auto_offset_reset="earliest")
    model = ChampionModel(ModelRegistry(tracking_uri, MODEL_NAME), view, model_check_s)
    model.current()  # fail at start, not at the first message, if there is no champion
    # The feature state is large and long-lived: keep the garbage collector from rescanning it
    # (what is bootstrapped is frozen; later history only reaches the rare oldest generation).
    # Young collections every 10,000 objects take a few milliseconds; every 50,000, they took
    # 40-80 ms, and each was a latency spike for the batch it fell in.
    gc.freeze()
    gc.set_threshold(10_000, 50, 1_000)
    return FraudScoringService(
        consumer, label_consumer, batch_producer(kafka), features, history, model, ServiceMetrics("scoring"),
        **options,
    )


def batch_producer(kafka: KafkaResource) -> KafkaProducer:
    """The scores' producer: a long linger and large batches, because each batch of scores is
    flushed together at its end, in a few requests rather than one per score."""
    return kafka.producer(linger_ms=100, batch_size=1 << 18)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_assets.services.scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=str(data_dir() / "warehouse.duckdb"), help="DuckDB warehouse (read only)")
    parser.add_argument("--group", default="fraud-scoring", help="consumer group")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")
    parser.add_argument("--review-threshold", type=float, default=0.5)
    parser.add_argument("--decline-threshold", type=float, default=0.9)
    parser.add_argument("--emit-features", action="store_true", help="include the feature values in each score")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        service = build_service(
            KafkaResource.from_env(),
            args.warehouse,
            default_tracking_uri(),
            args.group,
            thresholds=Thresholds(args.review_threshold, args.decline_threshold),
            emit_features=args.emit_features,
        )
    except (OSError, ValueError, duckdb.Error, ModelIntegrityError) as error:
        print(f"scoring service: cannot start: {error}", file=sys.stderr)
        return 1
    service.metrics.serve(args.metrics_port)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
