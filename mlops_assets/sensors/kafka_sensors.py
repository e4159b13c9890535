"""One sensor per streaming input topic: new messages become a run that loads exactly them.

The cursor holds, per partition, the next offset to load. Each tick compares it with the
topic's end offsets and requests a run whose config names the exact range per partition; the
run key is derived from the range, so the same range is never requested twice, and a failed
run can be re-executed with the same range (ids are deduplicated in the warehouse).
"""
import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from mlops_assets.contracts import CONTRACTS, FRAUD_SCORES, Contract
from mlops_assets.kafka_ranges import pending_ranges, range_key
from mlops_assets.resources.kafka import KafkaResource

# Bounds one run's size; a backlog becomes several runs.
MAX_MESSAGES_PER_PARTITION = 200_000


def load_job_name(contract: Contract) -> str:
    return f"load_{contract.topic}_from_kafka"


def build_kafka_sensor(contract: Contract) -> SensorDefinition:
    job = define_asset_job(load_job_name(contract), selection=[contract.asset_name])

    @sensor(
        name=f"{contract.topic}_topic_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Loads new messages of Kafka topic `{contract.topic}` into {contract.table}.",
    )
    def _kafka_topic_sensor(context: SensorEvaluationContext, kafka: KafkaResource):
        cursor = {int(partition): offset for partition, offset in json.loads(context.cursor or "{}").items()}
        ranges = pending_ranges(kafka, contract.topic, cursor, MAX_MESSAGES_PER_PARTITION)
        if not ranges:
            yield SkipReason(f"no new messages on {contract.topic}")
            return
        yield RunRequest(
            run_key=range_key(contract.topic, ranges),
            run_config={
                "ops": {
                    contract.asset_name: {
                        "config": {
                            "kafka_offsets": [
                                {"partition": r.partition, "start": r.start, "end": r.end} for r in ranges
                            ]
                        }
                    }
                }
            },
            tags={"kafka/topic": contract.topic},
        )
        cursor.update({r.partition: r.end for r in ranges})
        context.update_cursor(json.dumps({str(partition): offset for partition, offset in cursor.items()}))

    return _kafka_topic_sensor


kafka_sensors = [
    build_kafka_sensor(contract) for contract in (*CONTRACTS.values(), FRAUD_SCORES) if contract.topic
]
