"""Streaming payment gateway: plays simulated transactions into the ingestion service.

Transactions are POSTed in event-time order, in batches of up to 50, at a steady rate (each
transaction is due 1/rate seconds after the previous one), keeping their original event
times. With a time scale, pacing also follows the gaps between event times (`time_scale`
simulated seconds per wall-clock second), the rate still being the ceiling.

The stream defines a simulated clock, the event time of the last transaction posted. A fraud
label is produced to `fraud_labels` once that clock has passed its `reported_at`, so labels
arrive in `reported_at` order, interleaved with the transactions they follow, as chargebacks
do in reality. Labels reported after the last streamed transaction are emitted only when
asked (`emit_remaining_labels`).

    python -m mlops_assets.services.gateway --url http://127.0.0.1:8081 --rate 200 \\
        [--customers N --terminals N --days N --seed N] [--limit N] [--time-scale X]
"""
import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from mlops_assets.arguments import (
    add_simulation_arguments,
    positive_float,
    positive_int,
    simulation_config,
)
from mlops_assets.resources.kafka import FRAUD_LABELS_TOPIC, KafkaResource
from mlops_assets.services.ingestion import frame_to_payloads
from mlops_assets.services.simulator import simulate

MAX_BATCH = 50
TICK_S = 0.1  # a due transaction waits at most this long for batch partners
LABEL_ACK_TIMEOUT_S = 30.0


@dataclass
class GatewayReport:
    """What one stream did."""

    posted: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0  # posted, but the service did not answer with a verdict (no connection, 5xx)
    labels_emitted: int = 0
    seconds: float = 0.0  # from the start of the stream to the last answer

    @property
    def achieved_rate(self) -> float:
        """Transactions posted per second."""
        return self.posted / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"posted {self.posted:,} transactions ({self.accepted:,} accepted, {self.rejected:,} rejected, "
            f"{self.failed:,} failed), emitted {self.labels_emitted:,} labels, "
            f"in {self.seconds:.1f} s: {self.achieved_rate:,.0f} transactions/s"
        )


def _utc(times: pd.Series) -> np.ndarray:
    """Times (naive ones are UTC) as naive UTC datetime64 values."""
    return pd.to_datetime(times, utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[us]")


class _LabelFeed:
    """Fraud labels in reported_at order, handed out as the simulated clock passes them."""

    def __init__(self, labels: pd.DataFrame):
        reported = _utc(labels["reported_at"])
        order = np.argsort(reported, kind="stable")
        self.reported = reported[order]
        self.labels = labels.iloc[order]
        self.next = 0

    def until(self, clock: np.datetime64 | None) -> list[dict]:
        """The labels not handed out yet with reported_at <= clock (None: all of them)."""
        end = len(self.reported) if clock is None else int(np.searchsorted(self.reported, clock, side="right"))
        due = self.labels.iloc[self.next : end]
        times = self.reported[self.next : end]
        self.next = max(self.next, end)
        return [
            {
                "transaction_id": str(transaction_id),
                "is_fraud": int(is_fraud),
                "reported_at": f"{np.datetime_as_string(reported, unit='us')}Z",
            }
            for transaction_id, is_fraud, reported in zip(due["transaction_id"], due["is_fraud"], times)
        ]


class StreamingGateway:
    """Posts transactions to the ingestion service at a rate; `stop()` ends a stream early."""

    def __init__(self, base_url: str, rate_per_second: float, client: httpx.Client | None = None):
        if not rate_per_second > 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        self.base_url = base_url.rstrip("/")
        self.rate = rate_per_second
        self.client = client or httpx.Client(timeout=30.0)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ends the running stream after the batch in flight; a stopped gateway stays stopped."""
        self._stopping.set()

    def stream(
        self,
        transactions: pd.DataFrame,
        labels: pd.DataFrame,
        label_producer: KafkaProducer,
        limit: int | None = None,
        time_scale: float | None = None,
        emit_remaining_labels: bool = False,
    ) -> GatewayReport:
        """Streams the first `limit` transactions by event time, with their labels as they become known."""
        order = np.argsort(_utc(transactions["event_time"]), kind="stable")[:limit]
        ordered = transactions.iloc[order]
        payloads = frame_to_payloads(ordered)
        times = _utc(ordered["event_time"])
        due = self._due_seconds(times, time_scale)
        feed = _LabelFeed(labels)
        report = GatewayReport()
        futures: list[FutureRecordMetadata] = []
        started = time.monotonic()
        position = 0
        while position < len(payloads) and not self._wait_for_batch(due, position, started):
            end = self._batch_end(due, position, time.monotonic() - started)
            self._post(payloads[position:end], report)
            report.seconds = time.monotonic() - started
            futures += self._emit(feed.until(times[end - 1]), label_producer)
            position = end
        if emit_remaining_labels and not self._stopping.is_set():
            futures += self._emit(feed.until(None), label_producer)
        report.labels_emitted = self._acknowledged(futures, label_producer)
        return report

    def _due_seconds(self, times: np.ndarray, time_scale: float | None) -> np.ndarray:
        """When each transaction may be posted, in seconds from the start (non-decreasing)."""
        due = np.arange(1, len(times) + 1) / self.rate
        if time_scale and len(times):
            simulated = (times - times[0]) / np.timedelta64(1, "s")
            due = np.maximum(due, simulated / time_scale)
        return due

    def _wait_for_batch(self, due: np.ndarray, position: int, started: float) -> bool:
        """Sleeps until a batch's worth of transactions is due (at most TICK_S past the first
        due one); True if stopped meanwhile."""
        target = int(min(max(round(self.rate * TICK_S), 1), MAX_BATCH))
        wake = min(due[min(position + target, len(due)) - 1], due[position] + TICK_S)
        return self._stopping.wait(max(started + wake - time.monotonic(), 0.0))

    @staticmethod
    def _batch_end(due: np.ndarray, position: int, elapsed: float) -> int:
        """One past the last transaction of the batch: those due by now, up to MAX_BATCH."""
        return position + max(int(np.searchsorted(due[position : position + MAX_BATCH], elapsed, side="right")), 1)

    def _post(self, batch: list[dict], report: GatewayReport) -> None:
        report.posted += len(batch)
        try:
            response = self.client.post(f"{self.base_url}/transactions", json=batch)
        except httpx.HTTPError:
            report.failed += len(batch)
            return
        if response.status_code not in (200, 422):
            report.failed += len(batch)
            return
        statuses = [item["status"] for item in response.json()]
        report.accepted += statuses.count("accepted")
        report.rejected += statuses.count("rejected")

    @staticmethod
    def _emit(labels: list[dict], producer: KafkaProducer) -> list[FutureRecordMetadata]:
        return [
            producer.send(FRAUD_LABELS_TOPIC, key=label["transaction_id"].encode(), value=json.dumps(label).encode())
            for label in labels
        ]

    @staticmethod
    def _acknowledged(futures: list[FutureRecordMetadata], producer: KafkaProducer) -> int:
        """Waits for the broker to acknowledge every label; raises KafkaError if it does not."""
        producer.flush(timeout=LABEL_ACK_TIMEOUT_S)
        for future in futures:
            future.get(timeout=LABEL_ACK_TIMEOUT_S)
        return len(futures)


# --- Command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_assets.services.gateway", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", required=True, help="ingestion service, e.g. http://127.0.0.1:8081")
    parser.add_argument("--rate", type=positive_float, required=True, help="transactions per second")
    add_simulation_arguments(parser)
    parser.add_argument("--id-prefix", default="",
                        help="prefix of the streamed transaction ids, so they cannot collide with a loaded data set's")
    parser.add_argument("--limit", type=positive_int, help="stream only the first N transactions")
    parser.add_argument("--time-scale", type=positive_float, help="simulated seconds per second (pace by event time)")
    parser.add_argument("--emit-remaining-labels", action="store_true", help="at the end, emit labels not yet due")
    parser.add_argument("--kafka-timeout", type=positive_float, default=10.0, help="seconds to wait for Kafka")
    return parser


def _check_service(url: str) -> None:
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5.0).raise_for_status()
    except httpx.HTTPError as error:
        raise ConnectionError(f"the ingestion service at {url} does not answer: {error}") from error


def _stream(args: argparse.Namespace, producer: KafkaProducer) -> GatewayReport:
    dataset = simulate(simulation_config(args), progress=lambda line: print(line, file=sys.stderr, flush=True))
    for frame in (dataset.transactions, dataset.fraud_labels):
        frame["transaction_id"] = args.id_prefix + frame["transaction_id"]
    gateway = StreamingGateway(args.url, args.rate)
    print(f"streaming to {args.url} at {args.rate:g} transactions/s (Ctrl-C stops)", file=sys.stderr, flush=True)
    with _stopped_by_signals(gateway):
        return gateway.stream(
            dataset.transactions,
            dataset.fraud_labels,
            producer,
            limit=args.limit,
            time_scale=args.time_scale,
            emit_remaining_labels=args.emit_remaining_labels,
        )


@contextlib.contextmanager
def _stopped_by_signals(gateway: StreamingGateway) -> Iterator[None]:
    """SIGINT and SIGTERM end the stream cleanly (with a report) while inside."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: gateway.stop()) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kafka = KafkaResource.from_env()
    timeout_ms = int(args.kafka_timeout * 1000)
    try:
        simulation_config(args)  # an inconsistent simulation fails before anything is sent
        _check_service(args.url)
        producer = kafka.producer(bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
    except (ValueError, ConnectionError) as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 1
    except KafkaError as error:
        print(f"gateway: cannot reach Kafka at {kafka.bootstrap_servers}: {error}", file=sys.stderr)
        return 1
    try:
        report = _stream(args, producer)
    except KafkaError as error:
        print(f"gateway: Kafka did not acknowledge the fraud labels: {error}", file=sys.stderr)
        return 1
    finally:
        producer.close(timeout=args.kafka_timeout)
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
