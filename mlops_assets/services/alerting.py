"""The SMS alerting service: a card holder gets one text message for each transaction that a
fraud score sends to review or declines.

- A notifier delivers alerts: `LogNotifier` writes them to a log (local runs),
  `WebhookNotifier` posts them to an SMS provider's HTTP API with an `Idempotency-Key` header.
- The alert id is the transaction id. `SentAlertLog` (a SQLite file) records each alert once
  delivered, so a replay, a duplicated score or a restart never sends it again. If the
  service dies between delivery and record, the provider's idempotency key drops the resend.
- Delivery is retried with exponential backoff; when every attempt fails, the score goes to
  the dead-letter topic with the reason (nothing is lost silently) and the service continues.
  So is a malformed message. Approved transactions get no alert.

Run: `python -m mlops_assets.services.alerting --backend log|webhook [--webhook-url URL]
--sent-log PATH [--metrics-port N]`.
"""
import argparse
import datetime as dt
import logging
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from mlops_assets.resources.kafka import FRAUD_SCORES_TOPIC, KafkaResource
from mlops_assets.services.consumer import (
    BatchConsumerService,
    ServiceMetrics,
    configure_logging,
)
from mlops_assets.services.score_messages import MalformedScore, parse_score

log = logging.getLogger(__name__)

MESSAGES = {
    "review": "Card payment {transaction_id} is on hold as possible fraud (score {score:.2f}). "
    "Reply YES if it was you.",
    "decline": "Card payment {transaction_id} was declined as suspected fraud (score {score:.2f}). "
    "Reply YES if it was you.",
}
MAX_BACKOFF_S = 5.0
# While the provider is down a batch takes up to ALERT_BATCH * max_attempts * (timeout + backoff)
# (20 * 5 * (5 s + 0.6 s) ~ 9 min with the defaults), which must stay below max.poll.interval.ms,
# or the group evicts the service and the batch's commit fails.
ALERT_BATCH = 20
MAX_POLL_INTERVAL_MS = 15 * 60 * 1000


@dataclass(frozen=True)
class Alert:
    """A text message to a card holder about one transaction; `alert_id` is its idempotency key."""

    alert_id: str
    transaction_id: str
    decision: str
    score: float
    text: str
    to: str | None = None  # the recipient's number, once a customer contact lookup provides it


def alert_for(score: dict) -> Alert | None:
    """The alert a valid fraud score calls for, or None (approved transactions)."""
    template = MESSAGES.get(score["decision"])
    if template is None:
        return None
    transaction_id = score["transaction_id"]
    return Alert(
        alert_id=transaction_id,
        transaction_id=transaction_id,
        decision=score["decision"],
        score=float(score["score"]),
        text=template.format(transaction_id=transaction_id, score=score["score"]),
    )


class NotifierError(RuntimeError):
    """An alert could not be delivered; the message says why."""


class Notifier(Protocol):
    def send(self, alert: Alert) -> None:
        """Delivers the alert or raises NotifierError."""


class LogNotifier:
    """Writes alerts to a log instead of sending them (local runs, demos)."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def send(self, alert: Alert) -> None:
        self.logger.info("SMS alert %s (%s, score %.2f): %s", alert.alert_id, alert.decision, alert.score, alert.text)


class WebhookNotifier:
    """Posts alerts as JSON to an SMS provider's HTTP API, with the alert id as Idempotency-Key."""

    def __init__(self, url: str, client: httpx.Client | None = None, timeout_s: float = 5.0):
        self.url = url
        self.client = client or httpx.Client()
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        payload = {
            "alert_id": alert.alert_id,
            "text": alert.text,
            "transaction_id": alert.transaction_id,
            "decision": alert.decision,
            "score": alert.score,
        }
        if alert.to is not None:
            payload["to"] = alert.to
        try:
            response = self.client.post(
                self.url, json=payload, headers={"Idempotency-Key": alert.alert_id}, timeout=self.timeout_s
            )
        except httpx.HTTPError as error:
            raise NotifierError(f"{type(error).__name__}: {error}") from error
        if not response.is_success:
            raise NotifierError(f"provider answered {response.status_code}: {response.text[:200]}")


class SentAlertLog:
    """The ids of the alerts delivered so far, in a SQLite file (WAL mode, fsync on commit)."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS sent_alerts (alert_id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL, "
            "decision TEXT NOT NULL, sent_at TEXT NOT NULL)"
        )

    def was_sent(self, alert_id: str) -> bool:
        with self._lock:
            return self._con.execute("SELECT 1 FROM sent_alerts WHERE alert_id = ?", [alert_id]).fetchone() is not None

    def record(self, alert: Alert) -> None:
        """Records a delivered alert (recording it twice keeps the first record)."""
        sent_at = dt.datetime.now(dt.timezone.utc).isoformat()
        with self._lock:
            self._con.execute(
                "INSERT OR IGNORE INTO sent_alerts VALUES (?, ?, ?, ?)",
                [alert.alert_id, alert.transaction_id, alert.decision, sent_at],
            )

    def close(self) -> None:
        with self._lock:
            self._con.close()


class AlertingService(BatchConsumerService):
    """Sends one alert per reviewed or declined transaction; dead-letters what it cannot send."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        notifier: Notifier,
        sent_log: SentAlertLog,
        metrics: ServiceMetrics,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        super().__init__(consumer, producer, metrics, max_batch=ALERT_BATCH)
        self.producer = producer
        self.notifier = notifier
        self.sent_log = sent_log
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s

    def handle(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                alert = alert_for(parse_score(record.value))
            except MalformedScore as error:
                self.metrics.errors.inc()
                self.reject(record, str(error))
                continue
            if alert is not None and not self.sent_log.was_sent(alert.alert_id):
                self._deliver(record, alert)

    def _deliver(self, record: ConsumerRecord, alert: Alert) -> None:
        try:
            self._send_with_retries(alert)
        except NotifierError as error:
            self.reject(record, f"alert not delivered after {self.max_attempts} attempts: {error}")
            return
        self.sent_log.record(alert)
        self.metrics.messages_out.inc()
        if record.timestamp and record.timestamp > 0:
            self.metrics.latency.observe(max(0.0, time.time() - record.timestamp / 1000))

    def _send_with_retries(self, alert: Alert) -> None:
        for attempt in range(self.max_attempts):
            try:
                self.notifier.send(alert)
                return
            except NotifierError as error:
                self.metrics.errors.inc()
                if attempt == self.max_attempts - 1:
                    raise
                delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
                log.warning(
                    "alert %s: attempt %d failed (%s), retrying in %.2fs", alert.alert_id, attempt + 1, error, delay
                )
                time.sleep(delay)

def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sends SMS alerts for reviewed and declined transactions.")
    parser.add_argument("--backend", choices=("log", "webhook"), required=True, help="How alerts are delivered.")
    parser.add_argument("--webhook-url", help="The SMS provider's endpoint (backend webhook).")
    parser.add_argument("--sent-log", required=True, help="SQLite file of the alerts already sent.")
    parser.add_argument("--metrics-port", type=int, default=0, help="Port of /metrics (0: not served).")
    parser.add_argument("--group", default="sms-alerting", help="Kafka consumer group.")
    args = parser.parse_args(argv)
    if args.backend == "webhook" and not args.webhook_url:
        parser.error("--backend webhook needs --webhook-url")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the alerting service until SIGTERM or SIGINT; Kafka settings come from KAFKA_* variables."""
    args = _parse_args(argv)
    configure_logging()
    kafka = KafkaResource.from_env()
    kafka.ensure_topics()
    notifier = WebhookNotifier(args.webhook_url) if args.backend == "webhook" else LogNotifier(log)
    sent_log = SentAlertLog(args.sent_log)
    metrics = ServiceMetrics("alerting")
    metrics.serve(args.metrics_port)
    producer = kafka.producer()
    consumer = kafka.consumer(
        FRAUD_SCORES_TOPIC,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
    )
    service = AlertingService(consumer, producer, notifier, sent_log, metrics)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop())
    log.info("SMS alerting: group %s, backend %s", args.group, args.backend)
    try:
        service.run()
    finally:
        producer.close()
        sent_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
