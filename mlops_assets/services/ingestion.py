"""Transaction ingestion service: the platform's front door for card transactions.

A payment gateway POSTs transactions over HTTP (one JSON object, or a JSON array as a batch),
or an operator replays a file. Each transaction is checked against the transaction contract
(DESIGN.md, "Data contracts"), its event time normalised to UTC, its raw card number replaced
by a keyed token, and it is produced to `transactions` keyed by customer. Bad input goes to
`transactions.dlq` with the reason and never stops the service.

A 2xx answer means the broker acknowledged every message of the request (acks=all). When
Kafka does not acknowledge in time the answer is 503 and the client retries; consumers dedupe
by transaction_id, so a retry duplicates nothing downstream.

    python -m mlops_assets.services.ingestion serve --port 8081 [--metrics-port 0]
    python -m mlops_assets.services.ingestion replay --file PATH (.csv, .parquet, .jsonl)
"""
import argparse
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple, TypeVar

import pandas as pd
import pyarrow.parquet as pq
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from mlops_assets.arguments import port, positive_float
from mlops_assets.resources.kafka import TRANSACTIONS_TOPIC, KafkaResource
from mlops_assets.services.consumer import ServiceMetrics, dead_letter

log = logging.getLogger(__name__)
T = TypeVar("T")

CARD_NUMBER = "card_number"
CARD_TOKEN = "card_token"
HTTP_SOURCE = "http"
REPLAY_BATCH = 1000
TOKEN_KEY_ENV = "CARD_TOKEN_KEY"
# Only for local runs and tests: production sets CARD_TOKEN_KEY from a secret store.
LOCAL_DEVELOPMENT_TOKEN_KEY = b"mlops-local-development-card-token-key-not-for-production"

_CURRENCY = re.compile(r"[A-Z]{3}")
_ISO_DATE_TIME = re.compile(r"\d{4}-?\d{2}-?\d{2}[T ]\d{2}")
_CARD_SEPARATORS = re.compile(r"[ -]")
_PAN = re.compile(r"\d{12,19}")
# Anything that may hold a card number in free text: 12 or more digits, single spaces or hyphens between.
_CARD_LIKE = re.compile(r"\d(?:[ -]?\d){11,}")


class TransactionRejected(ValueError):
    """A transaction breaks the contract; `field` names the field (None: not a JSON object)."""

    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge the messages in time; nothing may be assumed stored."""


# --- Validation ----------------------------------------------------------------------------


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _required(payload: dict, field: str) -> object:
    if field not in payload:
        raise TransactionRejected(field, "is missing")
    return payload[field]


def _string(payload: dict, field: str) -> str:
    value = _required(payload, field)
    if not isinstance(value, str):
        raise TransactionRejected(field, f"must be a string, got {_json_type(value)}")
    if not value.strip():
        raise TransactionRejected(field, "must not be empty")
    return value


def _event_time(payload: dict) -> str:
    """The event time in UTC as ISO-8601 with microseconds and 'Z' (fixed width, so the text
    sorts as the time does); a time without offset is taken as UTC."""
    value = _string(payload, "event_time")
    try:
        if not _ISO_DATE_TIME.match(value):
            raise ValueError(value)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TransactionRejected("event_time", "must be an ISO-8601 date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _amount(payload: dict) -> None:
    value = _required(payload, "amount")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TransactionRejected("amount", f"must be a JSON number, got {_json_type(value)}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond the range of a double
        finite = False
    if not finite or value < 0:
        raise TransactionRejected("amount", "must be a finite number >= 0")


def _card_digits(value: object) -> str:
    """The digits of a card number given as a string (spaces and hyphens allowed)."""
    digits = _CARD_SEPARATORS.sub("", value) if isinstance(value, str) else ""
    if not _PAN.fullmatch(digits):
        raise TransactionRejected(CARD_NUMBER, "must be a string of 12 to 19 digits")
    return digits


def validate_transaction(payload: object) -> dict:
    """A copy of `payload` that keeps the transaction contract, with `event_time` in UTC.

    Raises `TransactionRejected` naming the first field that breaks it. Extra fields pass
    through unchanged; a `card_number` is checked here and tokenized by the service.
    """
    if not isinstance(payload, dict):
        raise TransactionRejected(None, f"a transaction must be a JSON object, got {_json_type(payload)}")
    _string(payload, "transaction_id")
    event_time = _event_time(payload)
    _string(payload, "customer_id")
    _string(payload, "terminal_id")
    _amount(payload)
    currency = _required(payload, "currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise TransactionRejected("currency", "must be an ISO 4217 code of 3 capital letters")
    if CARD_NUMBER in payload:
        _card_digits(payload[CARD_NUMBER])
    return {**payload, "event_time": event_time}


# --- Card numbers --------------------------------------------------------------------------


def card_token(card_number: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of the card number's digits: the same card always gets the same token."""
    return hmac.new(key, _card_digits(card_number).encode(), hashlib.sha256).hexdigest()


def mask_card_numbers(text: str) -> str:
    """`text` with every run that may be a card number masked but for its last 4 digits."""
    return _CARD_LIKE.sub(lambda match: re.sub(r"\d", "*", match[0][:-4]) + match[0][-4:], text)


def _dead_letter_copy(payload: object) -> bytes:
    """The rejected payload as sent to the dead-letter topic: no card number in any form."""
    if isinstance(payload, dict):
        payload = {key: value for key, value in payload.items() if key != CARD_NUMBER}
    return mask_card_numbers(json.dumps(payload, default=str)).encode()


# --- The service ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one submitted transaction."""

    status: str  # "accepted" or "rejected"
    transaction_id: str | None = None
    field: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def as_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


class _Sends:
    """Passes sends through to the producer and keeps their futures to await them together."""

    def __init__(self, producer: KafkaProducer):
        self.producer = producer
        self.futures: list[FutureRecordMetadata] = []

    def send(self, topic: str, **kwargs) -> FutureRecordMetadata:
        future = self.producer.send(topic, **kwargs)
        self.futures.append(future)
        return future


class IngestionService:
    """Validates transactions and produces them to Kafka; serves them over HTTP with `run()`."""

    def __init__(
        self, producer: KafkaProducer, token_key: bytes, metrics: ServiceMetrics, ack_timeout_s: float = 10.0
    ):
        self.producer = producer
        self.token_key = token_key
        self.metrics = metrics
        self.ack_timeout_s = ack_timeout_s
        self._server: uvicorn.Server | None = None
        self._stopping = threading.Event()

    def ingest(self, payloads: list[object], source: str, received_at: float | None = None) -> list[Outcome]:
        """Produces the valid payloads and dead-letters the others; returns once Kafka has
        acknowledged all of them. Raises `KafkaUnavailable` if it does not."""
        received_at = time.perf_counter() if received_at is None else received_at
        self.metrics.messages_in.inc(len(payloads))
        outcomes = self._acknowledged(
            lambda sends: [self._route(payload, source, sends) for payload in payloads], len(payloads)
        )
        accepted = sum(outcome.accepted for outcome in outcomes)
        self.metrics.messages_out.inc(accepted)
        self.metrics.dead_lettered.inc(len(outcomes) - accepted)
        self.metrics.errors.inc(len(outcomes) - accepted)
        self._observe_latency(received_at, len(outcomes))
        return outcomes

    def reject_unparseable(self, text: str, reason: str, source: str, received_at: float | None = None) -> None:
        """Dead-letters input that is not JSON at all, card-number-like digits masked."""
        received_at = time.perf_counter() if received_at is None else received_at
        self.metrics.messages_in.inc()
        self._acknowledged(lambda sends: dead_letter(sends, mask_card_numbers(text).encode(), reason, source), 1)
        self.metrics.dead_lettered.inc()
        self.metrics.errors.inc()
        self._observe_latency(received_at, 1)

    def _acknowledged(self, send: Callable[[_Sends], T], messages: int) -> T:
        """Runs `send`, then flushes and waits for every acknowledgement; a Kafka failure
        becomes `KafkaUnavailable` and counts the messages as errors."""
        sends = _Sends(self.producer)
        deadline = time.monotonic() + self.ack_timeout_s
        try:
            result = send(sends)
            self.producer.flush(timeout=self.ack_timeout_s)
            for future in sends.futures:
                future.get(timeout=max(deadline - time.monotonic(), 0.001))
        except KafkaError as failure:
            self.metrics.errors.inc(messages)
            log.warning("Kafka did not acknowledge %d message(s): %r", messages, failure)
            raise KafkaUnavailable(f"Kafka did not acknowledge the messages, retry later ({failure})") from failure
        return result

    def _route(self, payload: object, source: str, sends: _Sends) -> Outcome:
        try:
            record = self._tokenized(validate_transaction(payload))
        except TransactionRejected as rejection:
            dead_letter(sends, _dead_letter_copy(payload), str(rejection), source)
            transaction_id = payload.get("transaction_id") if isinstance(payload, dict) else None
            return Outcome(
                "rejected", transaction_id if isinstance(transaction_id, str) else None, rejection.field, str(rejection)
            )
        sends.send(TRANSACTIONS_TOPIC, key=record["customer_id"].encode(), value=json.dumps(record).encode())
        return Outcome("accepted", record["transaction_id"])

    def _tokenized(self, record: dict) -> dict:
        if CARD_NUMBER not in record:
            return record
        token = card_token(record[CARD_NUMBER], self.token_key)
        return {**{key: value for key, value in record.items() if key != CARD_NUMBER}, CARD_TOKEN: token}

    def _observe_latency(self, received_at: float, messages: int) -> None:
        seconds = time.perf_counter() - received_at
        for _ in range(messages):
            self.metrics.latency.observe(seconds)

    # --- HTTP ------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        """The HTTP API: POST /transactions, GET /health, GET /metrics."""
        api = FastAPI(title="Transaction ingestion service", description=__doc__.split("\n\n")[0])

        @api.post("/transactions")
        async def post_transactions(request: Request) -> Response:
            """One transaction (JSON object) or a batch (JSON array of objects)."""
            received_at = time.perf_counter()
            body = await request.body()
            return await run_in_threadpool(self.answer, body, received_at)

        @api.get("/health")
        def health() -> dict:
            return {"status": "ok"}

        @api.get("/metrics")
        def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return api

    def answer(self, body: bytes, received_at: float) -> JSONResponse:
        """The HTTP answer to a POST /transactions body."""
        try:
            return self._answer(body, received_at)
        except KafkaUnavailable as error:
            return JSONResponse({"error": str(error)}, status_code=503)

    def _answer(self, body: bytes, received_at: float) -> JSONResponse:
        try:
            payload = _parse_body(body)
        except ValueError as problem:
            self.reject_unparseable(body.decode(errors="replace"), str(problem), HTTP_SOURCE, received_at)
            return JSONResponse({"error": str(problem)}, status_code=400)
        if isinstance(payload, list):
            outcomes = self.ingest(payload, HTTP_SOURCE, received_at)
            status = 200 if any(outcome.accepted for outcome in outcomes) else 422
            return JSONResponse([outcome.as_json() for outcome in outcomes], status_code=status)
        (outcome,) = self.ingest([payload], HTTP_SOURCE, received_at)
        return JSONResponse(outcome.as_json(), status_code=202 if outcome.accepted else 422)

    def run(self, port: int, host: str = "127.0.0.1") -> None:
        """Serves the HTTP API until `stop()` (or SIGINT/SIGTERM when run in the main thread)."""
        config = uvicorn.Config(self.app(), host=host, port=port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        if not self._stopping.is_set():
            self._server.run()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True


def _strict_json(text: str | bytes) -> object:
    """Decodes JSON, refusing the NaN and Infinity literals Python would otherwise accept."""
    return json.loads(text, parse_constant=_not_json)


def _not_json(literal: str) -> None:
    raise ValueError(f"{literal} is not a JSON value")


def _parse_body(body: bytes) -> object:
    """The decoded JSON body; ValueError naming the problem if it is not usable JSON."""
    try:
        payload = _strict_json(body)
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None
    except ValueError as error:
        raise ValueError(f"malformed JSON: {error}") from None
    except RecursionError:
        raise ValueError("malformed JSON: nested too deeply") from None
    if payload == []:
        raise ValueError("empty batch: send at least one transaction")
    return payload


# --- File replay ---------------------------------------------------------------------------


class ReplayCounts(NamedTuple):
    accepted: int
    rejected: int


@dataclass(frozen=True)
class _Unparseable:
    """A line of a JSON-lines file that is not JSON."""

    text: str
    reason: str


def _is_null(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _as_float(value: object) -> object:
    """A number (or numeric text) as a float; anything else unchanged, for validation to reject."""
    if isinstance(value, bool):
        return value
    try:
        return float(value) if isinstance(value, (int, float, str)) else value
    except ValueError:
        return value


def _iso_utc(times: pd.Series) -> pd.Series:
    """Datetimes (naive ones are UTC) as ISO-8601 text with 'Z'."""
    times = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
    return times.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def frame_to_payloads(frame: pd.DataFrame) -> list[dict]:
    """Rows of a table as JSON-native transactions: times as ISO-8601 UTC text, `amount` as a
    float, null cells left out (so a missing value reads as a missing field)."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = _iso_utc(frame[column])
    payloads = []
    for row in frame.to_dict("records"):
        payload = {str(key): value for key, value in row.items() if not _is_null(value)}
        if "amount" in payload:
            payload["amount"] = _as_float(payload["amount"])
        payloads.append(payload)
    return payloads


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_batches(path: Path) -> Iterator[list]:
    # Every cell as text (ids and card numbers keep their leading zeros); only empty cells are null.
    frames = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=REPLAY_BATCH)
    for frame in frames:
        yield frame_to_payloads(frame)


def _parquet_batches(path: Path) -> Iterator[list]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=REPLAY_BATCH):
        yield frame_to_payloads(batch.to_pandas())


def _json_line(number: int, line: str) -> object:
    try:
        return _strict_json(line)
    except ValueError as error:
        return _Unparseable(line.rstrip("\n"), f"line {number}: malformed JSON: {error}")


def _json_lines_batches(path: Path) -> Iterator[list]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        items = (_json_line(number, line) for number, line in enumerate(lines, 1) if line.strip())
        yield from _chunks(items, REPLAY_BATCH)


_READERS = {
    ".csv": _csv_batches,
    ".parquet": _parquet_batches,
    ".jsonl": _json_lines_batches,
    ".ndjson": _json_lines_batches,
}
REPLAY_FORMATS = tuple(_READERS)


def replay_file(service: IngestionService, path: Path | str) -> ReplayCounts:
    """Ingests a CSV, Parquet or JSON-lines file of transactions in batches of 1,000, through
    the same validation as HTTP input. Raises ValueError for another file type."""
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported file type; use one of {', '.join(REPLAY_FORMATS)}")
    source = f"file:{path.name}"
    accepted = rejected = 0
    for batch in reader(path):
        for item in batch:
            if isinstance(item, _Unparseable):
                service.reject_unparseable(item.text, item.reason, source)
        outcomes = service.ingest([item for item in batch if not isinstance(item, _Unparseable)], source)
        batch_accepted = sum(outcome.accepted for outcome in outcomes)
        accepted += batch_accepted
        rejected += len(batch) - batch_accepted
    return ReplayCounts(accepted, rejected)


# --- Command line --------------------------------------------------------------------------


def _replay_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in REPLAY_FORMATS:
        raise argparse.ArgumentTypeError(f"{text}: unsupported file type; use one of {', '.join(REPLAY_FORMATS)}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--kafka-timeout", type=positive_float, default=10.0, help="seconds to wait for Kafka (connect, acknowledge)"
    )
    parser = argparse.ArgumentParser(
        prog="python -m mlops_assets.services.ingestion", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="serve the HTTP API on 127.0.0.1")
    serve.add_argument("--port", type=port, default=8081)
    serve.add_argument("--metrics-port", type=port, default=0, help="also serve metrics on this port (0: no)")
    replay = commands.add_parser("replay", parents=[common], help="ingest a file of transactions")
    replay.add_argument("--file", type=_replay_path, required=True, help=f"{', '.join(REPLAY_FORMATS)} file")
    return parser


def _token_key() -> bytes:
    key = os.environ.get(TOKEN_KEY_ENV)
    if key:
        return key.encode()
    print(
        f"warning: {TOKEN_KEY_ENV} is not set; card numbers are tokenized with the local development "
        "key, which is public: set it to a secret in any real deployment",
        file=sys.stderr,
    )
    return LOCAL_DEVELOPMENT_TOKEN_KEY


def _run(args: argparse.Namespace, service: IngestionService) -> None:
    if args.command == "serve":
        service.metrics.serve(args.metrics_port)
        print(f"ingestion service on http://127.0.0.1:{args.port}", file=sys.stderr)
        service.run(args.port)
    else:
        counts = replay_file(service, args.file)
        print(f"{args.file}: {counts.accepted:,} accepted, {counts.rejected:,} rejected (dead-lettered)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token_key = _token_key()
    kafka = KafkaResource.from_env()
    timeout_ms = int(args.kafka_timeout * 1000)
    try:
        producer = kafka.producer(bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
    except KafkaError as error:
        print(f"ingestion: cannot reach Kafka at {kafka.bootstrap_servers}: {error}", file=sys.stderr)
        return 1
    service = IngestionService(producer, token_key, ServiceMetrics("ingestion"), ack_timeout_s=args.kafka_timeout)
    try:
        _run(args, service)
    except (OSError, ValueError, KafkaUnavailable) as error:
        print(f"ingestion {args.command}: {error}", file=sys.stderr)
        return 1
    finally:
        producer.close(timeout=args.kafka_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
