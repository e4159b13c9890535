"""The transaction updater service: every fraud score on `fraud_scores` sets the status of
its transaction (approved, in review or declined) in a store of the service's own.

- The store is a SQLite file (WAL mode, fsync on commit), not the warehouse: DuckDB has one
  writer, Dagster (DESIGN.md rule 3).
- A batch of scores is applied in one SQLite transaction, so it is durable before the
  consumer commits the batch's offsets; a crash replays the batch, and replaying changes
  nothing: a transaction's status only moves to a newer score, ordered by model version
  (numerically) and then by `scored_at`.
- A malformed message goes to the dead-letter topic with the reason; the service continues.
- `GET /status/<transaction_id>` answers the transaction's status as JSON (404 if unknown);
  `GET /metrics` the service's Prometheus metrics.

Run: `python -m mlops_assets.services.updater --store PATH --port 8082 [--group transaction-updater]`.
"""
import argparse
import datetime as dt
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlops_assets.resources.kafka import FRAUD_SCORES_TOPIC, KafkaResource
from mlops_assets.services.consumer import (
    BatchConsumerService,
    ServiceMetrics,
    configure_logging,
)
from mlops_assets.services.score_messages import (
    MalformedScore,
    parse_score,
    scored_at_utc,
)

log = logging.getLogger(__name__)

STATUS_BY_DECISION = {"approve": "approved", "review": "in_review", "decline": "declined"}
class TransactionStatusStore:
    """Each transaction's current status and the score behind it, in a SQLite file.

    Safe to share between threads (the service writes, the status lookup reads).
    """

    _UPSERT = (
        "INSERT INTO transaction_status (transaction_id, status, score, model_version, decided_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (transaction_id) DO UPDATE SET status = excluded.status, score = excluded.score, "
        "model_version = excluded.model_version, decided_at = excluded.decided_at, updated_at = excluded.updated_at "
        "WHERE (CAST(excluded.model_version AS INTEGER), excluded.decided_at) "
        "    > (CAST(transaction_status.model_version AS INTEGER), transaction_status.decided_at)"
    )

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power loss
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS transaction_status (transaction_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
            "score REAL NOT NULL, model_version TEXT NOT NULL, decided_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
        )

    def apply(self, score: dict) -> bool:
        """Applies one valid score; True if it changed the transaction's status."""
        return self.apply_all([score]) == 1

    def apply_all(self, scores: Iterable[dict]) -> int:
        """Applies valid scores in one transaction; returns how many changed a status.

        A score replaces the stored one only if it is newer: higher model version, or the
        same version and a later `scored_at`. Re-applying a score changes nothing.
        """
        updated_at = dt.datetime.now(dt.timezone.utc).isoformat()
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                changed = sum(
                    self._con.execute(self._UPSERT, self._row(score, updated_at)).rowcount for score in scores
                )
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
        return changed

    @staticmethod
    def _row(score: dict, updated_at: str) -> tuple:
        return (
            score["transaction_id"],
            STATUS_BY_DECISION[score["decision"]],
            float(score["score"]),
            score["model_version"],
            scored_at_utc(score["scored_at"]),
            updated_at,
        )

    def status(self, transaction_id: str) -> dict | None:
        """The transaction's status and the score behind it, or None if no score arrived yet."""
        with self._lock:
            cursor = self._con.execute("SELECT * FROM transaction_status WHERE transaction_id = ?", [transaction_id])
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        return dict(zip(names, row)) if row else None

    def counts(self) -> dict[str, int]:
        """Number of transactions per status (every status, zero included)."""
        with self._lock:
            found = dict(
                self._con.execute("SELECT status, count(*) FROM transaction_status GROUP BY status").fetchall()
            )
        return {status: found.get(status, 0) for status in STATUS_BY_DECISION.values()}

    def close(self) -> None:
        with self._lock:
            self._con.close()


class TransactionUpdaterService(BatchConsumerService):
    """Applies the fraud scores of each batch to the status store, then lets the offsets commit."""

    def __init__(
        self, consumer: KafkaConsumer, producer: KafkaProducer, store: TransactionStatusStore, metrics: ServiceMetrics
    ):
        super().__init__(consumer, producer, metrics)
        self.producer = producer
        self.store = store

    def handle(self, records: list[ConsumerRecord]) -> None:
        scores = []
        for record in records:
            try:
                scores.append(parse_score(record.value))
            except MalformedScore as error:
                self.metrics.errors.inc()
                self.reject(record, str(error))
        changed = self.store.apply_all(scores)
        self.metrics.messages_out.inc(changed)
        now = time.time()
        for record in records:
            if record.timestamp and record.timestamp > 0:
                self.metrics.latency.observe(max(0.0, now - record.timestamp / 1000))

class _StatusHandler(BaseHTTPRequestHandler):
    server: "StatusServer"

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._answer(200, generate_latest(self.server.metrics.registry), CONTENT_TYPE_LATEST)
            return
        transaction_id = unquote(path.removeprefix("/status/")) if path.startswith("/status/") else ""
        status = self.server.store.status(transaction_id) if transaction_id else None
        if status is None:
            self._answer(404, json.dumps({"error": f"no status for {path}"}).encode(), "application/json")
        else:
            self._answer(200, json.dumps(status).encode(), "application/json")

    def _answer(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the http.server signature)
        log.debug("%s " + format, self.client_address[0], *args)


class StatusServer(ThreadingHTTPServer):
    """`GET /status/<transaction_id>` and `GET /metrics` over HTTP, served from a thread."""

    daemon_threads = True

    def __init__(self, store: TransactionStatusStore, metrics: ServiceMetrics, host: str = "127.0.0.1", port: int = 0):
        super().__init__((host, port), _StatusHandler)
        self.store = store
        self.metrics = metrics
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="status-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The port served on (the one the system chose if 0 was asked for)."""
        return self.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sets transaction statuses from the fraud scores on Kafka.")
    parser.add_argument("--store", required=True, help="SQLite file of the transaction statuses.")
    parser.add_argument("--port", type=int, default=8082, help="Port of the status lookup and /metrics.")
    parser.add_argument("--host", default="127.0.0.1", help="Address the status lookup listens on.")
    parser.add_argument("--group", default="transaction-updater", help="Kafka consumer group.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the updater until SIGTERM or SIGINT; Kafka settings come from KAFKA_* variables."""
    args = _parse_args(argv)
    configure_logging()
    kafka = KafkaResource.from_env()
    kafka.ensure_topics()
    store = TransactionStatusStore(args.store)
    metrics = ServiceMetrics("transaction_updater")
    producer = kafka.producer()
    consumer = kafka.consumer(
        FRAUD_SCORES_TOPIC, group_id=args.group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    service = TransactionUpdaterService(consumer, producer, store, metrics)
    server = StatusServer(store, metrics, args.host, args.port)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop())
    server.start()
    log.info("transaction updater: group %s, status lookup on http://%s:%d", args.group, args.host, server.port)
    try:
        service.run()
    finally:
        server.stop()
        producer.close()
        log.info("transaction updater stopped; transactions by status: %s", store.counts())
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
