"""The fraud score message on `fraud_scores` (DESIGN.md, "Data contracts"), as the services
that consume it check it: the transaction updater and SMS alerting."""
import datetime as dt
import json
import math

DECISIONS = ("approve", "review", "decline")
SCORE_FIELDS = (
    "transaction_id", "score", "decision", "model_name", "model_version",
    "feature_view_version", "scored_at", "latency_ms",
)
_TEXT_FIELDS = ("transaction_id", "model_name", "feature_view_version", "scored_at")


class MalformedScore(ValueError):
    """A message on `fraud_scores` that breaks the fraud score contract; the message says why."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def scored_at_utc(value: str) -> str:
    """`scored_at` as a fixed-width UTC time stamp, so text order is time order (naive = UTC)."""
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def validate_score(score: object) -> dict:
    """Returns `score` if it keeps the fraud score contract, else raises MalformedScore.

    `model_version` is a registry version: a string of digits, so "newer" is well defined.
    `latency_ms` may be null (the scoring service sends null when a record has no time stamp).
    """
    if not isinstance(score, dict):
        raise MalformedScore("message: is not a JSON object")
    missing = [name for name in SCORE_FIELDS if name not in score]
    if missing:
        raise MalformedScore(f"missing fields: {', '.join(missing)}")
    for name in _TEXT_FIELDS:
        if not isinstance(score[name], str) or not score[name].strip():
            raise MalformedScore(f"{name}: must be a non-empty string")
    if not _is_number(score["score"]) or not 0 <= score["score"] <= 1:
        raise MalformedScore("score: must be a number in [0, 1]")
    if score["decision"] not in DECISIONS:
        raise MalformedScore(f"decision: must be one of {', '.join(DECISIONS)}")
    if not isinstance(score["model_version"], str) or not score["model_version"].isdigit():
        raise MalformedScore("model_version: must be a string of digits")
    if score["latency_ms"] is not None and not _is_number(score["latency_ms"]):
        raise MalformedScore("latency_ms: must be a number or null")
    try:
        scored_at_utc(score["scored_at"])
    except ValueError:
        raise MalformedScore("scored_at: must be an ISO-8601 time stamp") from None
    return score


def parse_score(value: bytes) -> dict:
    """The fraud score in a Kafka message; raises MalformedScore with the reason."""
    try:
        score = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedScore("message: is not valid JSON") from None
    return validate_score(score)


