"""SMS alerting against a real broker and a real HTTP server standing in for the SMS
provider: one alert per reviewed or declined transaction whatever is replayed, retries
with backoff, and dead letters for what cannot be delivered or parsed."""
import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.services.alerting import (
    Alert,
    AlertingService,
    LogNotifier,
    NotifierError,
    SentAlertLog,
    WebhookNotifier,
)
from mlops_assets.services.consumer import ServiceMetrics
from mlops_assets_tests.services.test_updater import (
    committed,
    dead_letters,
    free_port,
    group_consumer,
    produce,
    running,
    score_message,
    wait_until,
)


class SmsProvider(ThreadingHTTPServer):
    """A local SMS provider API: records every request; answers 500 to the first `fail_first`."""

    daemon_threads = True

    def __init__(self, fail_first: int = 0):
        super().__init__(("127.0.0.1", 0), _ProviderHandler)
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/messages"

    def keys(self) -> list[str]:
        with self.lock:
            return [request["idempotency_key"] for request in self.requests]


class _ProviderHandler(BaseHTTPRequestHandler):
    server: SmsProvider

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"idempotency_key": self.headers.get("Idempotency-Key"), "body": body})
            failing = len(self.server.requests) <= self.server.fail_first
        answer = b'{"error": "try again"}' if failing else b'{"status": "queued"}'
        self.send_response(500 if failing else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def sms_provider() -> Iterator[Callable[..., SmsProvider]]:
    started: list[SmsProvider] = []

    def start(fail_first: int = 0) -> SmsProvider:
        started.append(SmsProvider(fail_first))
        return started[-1]

    yield start
    for provider in started:
        provider.shutdown()
        provider.server_close()


def _service(
    kafka: KafkaResource, group: str, provider: SmsProvider, sent_log: SentAlertLog, **retries
) -> AlertingService:
    return AlertingService(
        group_consumer(kafka, group), kafka.producer(), WebhookNotifier(provider.url, timeout_s=2),
        sent_log, ServiceMetrics("alerting"), **retries,
    )


def _metric(service: AlertingService, name: str) -> float:
    return service.metrics.registry.get_sample_value(f"mlops_alerting_{name}") or 0.0


def test_one_alert_per_transaction_despite_duplicates_replays_and_restarts(kafka, tmp_path: Path, sms_provider):
    provider = sms_provider()
    produce(kafka, [
        score_message("t1", "approve", score=0.1),
        score_message("t2", "review", score=0.62),
        score_message("t3", "decline", score=0.97),
        score_message("t3", "decline", score=0.97),  # duplicate
        score_message("t2", "decline", "2", score=0.95),  # re-scored: still the same alert
    ])
    sent_log = SentAlertLog(tmp_path / "sent.sqlite")
    service = _service(kafka, "alerting", provider, sent_log)
    with running(service):
        wait_until(lambda: committed(kafka, "alerting") == 5)
    assert sorted(provider.keys()) == ["t2", "t3"]
    by_key = {request["idempotency_key"]: request["body"] for request in provider.requests}
    assert by_key["t3"] == {
        "alert_id": "t3", "transaction_id": "t3", "decision": "decline", "score": 0.97,
        "text": "Card payment t3 was declined as suspected fraud (score 0.97). Reply YES if it was you.",
    }
    assert by_key["t2"]["decision"] == "review" and "on hold" in by_key["t2"]["text"]
    assert _metric(service, "messages_out_total") == 2
    sent_log.close()

    # A restart that replays everything (a new group reads from the beginning) sends nothing.
    sent_log = SentAlertLog(tmp_path / "sent.sqlite")
    replay = _service(kafka, "alerting-replay", provider, sent_log)
    with running(replay):
        wait_until(lambda: committed(kafka, "alerting-replay") == 5)
    assert sorted(provider.keys()) == ["t2", "t3"]
    assert _metric(replay, "messages_out_total") == 0
    sent_log.close()


def test_delivery_is_retried_until_the_provider_accepts(kafka, tmp_path: Path, sms_provider):
    provider = sms_provider(fail_first=2)
    produce(kafka, [score_message("t1", "decline", score=0.99)])
    sent_log = SentAlertLog(tmp_path / "sent.sqlite")
    service = _service(kafka, "alerting", provider, sent_log, max_attempts=4, backoff_s=0.01)
    with running(service):
        wait_until(lambda: committed(kafka, "alerting") == 1)
    assert provider.keys() == ["t1", "t1", "t1"]  # one alert, delivered on the third attempt
    assert sent_log.was_sent("t1")
    assert (_metric(service, "errors_total"), _metric(service, "dead_lettered_total")) == (2, 0)
    sent_log.close()


def test_undeliverable_alerts_and_malformed_scores_are_dead_lettered(kafka, tmp_path: Path, sms_provider):
    provider = sms_provider(fail_first=1_000)
    undeliverable = score_message("t1", "decline", score=0.99)
    produce(kafka, [undeliverable, b"not json", json.dumps({**score_message("t2", "review"), "decision": 1}).encode()])
    sent_log = SentAlertLog(tmp_path / "sent.sqlite")
    service = _service(kafka, "alerting", provider, sent_log, max_attempts=3, backoff_s=0.01)
    with running(service):
        wait_until(lambda: committed(kafka, "alerting") == 3)
    assert provider.keys() == ["t1", "t1", "t1"]
    assert not sent_log.was_sent("t1")
    envelopes = {envelope["reason"]: envelope for envelope in dead_letters(kafka, 3)}
    assert set(envelopes) == {
        'alert not delivered after 3 attempts: provider answered 500: {"error": "try again"}',
        "message: is not valid JSON",
        "decision: must be one of approve, review, decline",
    }
    dead_score = envelopes['alert not delivered after 3 attempts: provider answered 500: {"error": "try again"}']
    assert json.loads(dead_score["message"]) == undeliverable
    assert _metric(service, "dead_lettered_total") == 3
    sent_log.close()


def test_webhook_notifier_raises_on_error_answers_and_unreachable_providers(sms_provider):
    alert = Alert("t1", "t1", "decline", 0.97, "text", to="+4915100000000")
    accepting = sms_provider()
    WebhookNotifier(accepting.url).send(alert)
    assert accepting.requests[0]["body"]["to"] == "+4915100000000"
    with pytest.raises(NotifierError, match="provider answered 500"):
        WebhookNotifier(sms_provider(fail_first=1).url).send(alert)
    with pytest.raises(NotifierError, match="ConnectError"):
        WebhookNotifier(f"http://127.0.0.1:{free_port()}/messages", timeout_s=1).send(alert)


def test_log_notifier_logs_the_alert():
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test_log_notifier")
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    LogNotifier(logger).send(Alert("t1", "t1", "review", 0.6, "Card payment t1 is on hold"))
    logger.removeHandler(handler)
    assert [record.getMessage() for record in records] == [
        "SMS alert t1 (review, score 0.60): Card payment t1 is on hold"
    ]
