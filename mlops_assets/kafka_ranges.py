"""Exact offset ranges of a Kafka topic: what is new since a cursor, and reading a range.

A run that loads a range names it in its config, so re-executing a failed run reads exactly
the same messages again: nothing is skipped, and id deduplication in the warehouse makes the
second read add nothing.
"""
import time
from dataclasses import dataclass

from kafka import TopicPartition

from mlops_assets.resources.kafka import KafkaResource


class OffsetRangeError(RuntimeError):
    """A range cannot be read (e.g. retention already deleted it); the message says which."""


@dataclass(frozen=True)
class PartitionRange:
    """Offsets [start, end) of one partition."""

    partition: int
    start: int
    end: int


def pending_ranges(
    kafka: KafkaResource, topic: str, cursor: dict[int, int], max_messages_per_partition: int
) -> list[PartitionRange]:
    """Per partition, the messages after the cursor (from the earliest kept offset for a
    partition the cursor has not seen), at most `max_messages_per_partition` each."""
    consumer = kafka.consumer(enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        beginnings = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    ranges = []
    for tp in partitions:
        start = max(cursor.get(tp.partition, 0), beginnings[tp])
        end = min(ends[tp], start + max_messages_per_partition)
        if end > start:
            ranges.append(PartitionRange(tp.partition, start, end))
    return ranges


def range_key(topic: str, ranges: list[PartitionRange]) -> str:
    """A stable name of a set of ranges, used as the run key."""
    return f"{topic}:" + ",".join(f"{r.partition}:{r.start}-{r.end}" for r in ranges)


def read_ranges(kafka: KafkaResource, topic: str, ranges: list[PartitionRange], timeout_s: float = 60) -> list[bytes]:
    """The values of exactly the messages in `ranges`, partition by partition in offset order."""
    consumer = kafka.consumer(enable_auto_commit=False, max_poll_records=5000)
    try:
        assigned = {TopicPartition(topic, r.partition): r for r in ranges}
        consumer.assign(list(assigned))
        beginnings = consumer.beginning_offsets(list(assigned))
        for tp, wanted in assigned.items():
            if wanted.start < beginnings[tp]:
                raise OffsetRangeError(
                    f"{topic} partition {tp.partition}: offsets {wanted.start}..{beginnings[tp] - 1} are no longer "
                    "in Kafka (retention); reload that period from files instead"
                )
            consumer.seek(tp, wanted.start)
        values: dict[int, list[bytes]] = {r.partition: [] for r in ranges}
        remaining = {tp for tp, r in assigned.items() if r.end > r.start}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise OffsetRangeError(f"{topic}: timed out reading {ranges} from {kafka.bootstrap_servers}")
            for tp, records in consumer.poll(timeout_ms=500).items():
                wanted = assigned[tp]
                values[tp.partition] += [r.value for r in records if wanted.start <= r.offset < wanted.end]
                if records and records[-1].offset >= wanted.end - 1:
                    remaining.discard(tp)
                    consumer.pause(tp)
        return [value for r in ranges for value in values[r.partition]]
    finally:
        consumer.close()
