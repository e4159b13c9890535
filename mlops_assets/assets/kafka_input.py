"""Run config that names exact Kafka offset ranges, and reading them inside an asset."""
from dagster import AssetExecutionContext, Config, Failure
from kafka.errors import KafkaError

from mlops_assets.kafka_ranges import (
    OffsetRangeError,
    PartitionRange,
    range_key,
    read_ranges,
)
from mlops_assets.resources.kafka import KafkaResource


class KafkaOffsetRange(Config):
    """Offsets [start, end) of one partition of the input's topic."""

    partition: int
    start: int
    end: int


def read_kafka_offsets(
    context: AssetExecutionContext, kafka: KafkaResource, topic: str, offsets: list[KafkaOffsetRange]
) -> tuple[str, list[bytes]]:
    """The range's name and exactly its messages; a clear failure if they cannot be read."""
    ranges = [PartitionRange(r.partition, r.start, r.end) for r in offsets]
    source = range_key(topic, ranges)
    context.log.info(f"reading {source} from {kafka.bootstrap_servers}")
    try:
        return source, read_ranges(kafka, topic, ranges)
    except (OffsetRangeError, KafkaError) as error:
        raise Failure(description=f"cannot read {source}: {error}") from error
