"""The monitoring loop: new transactions lead to a monitoring run, and a failed monitoring
check leads to retraining.

Retraining is started by a sensor on the checks' results, not by a declarative automation
condition: the trigger is a check on downstream monitoring assets, while the assets to
rebuild (training data, model, champion) sit upstream of them, which automation conditions
(they look at an asset's own dependencies) cannot express without inverting the lineage graph.
The sensor also keeps one place for the rules a team wants to read: which checks count, one
retraining per failure, and a cooldown so a new version that the promotion gate turns down
does not cause a retraining at every monitoring run.
"""
import datetime as dt

from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from mlops_assets.assets.monitoring import MONITORING_CHECKS
from mlops_assets.contracts import TRANSACTIONS
from mlops_assets.jobs import monitoring_job, retraining_job

# Monitoring recomputes the features: after a burst of Kafka loads it runs once, not per load.
MONITORING_INTERVAL_SECONDS = 3600
RETRAINING_COOLDOWN = dt.timedelta(hours=24)


@asset_sensor(
    asset_key=AssetKey(TRANSACTIONS.asset_name),
    job=monitoring_job,
    minimum_interval_seconds=MONITORING_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Runs monitoring after new transactions land in raw_transactions (at most hourly).",
)
def monitor_new_transactions(context: SensorEvaluationContext, asset_event: EventLogEntry):
    return RunRequest(run_key=f"monitoring-after-{asset_event.run_id}", tags={"mlops/trigger": "new transactions"})


def _check_keys() -> list[AssetCheckKey]:
    return [AssetCheckKey(AssetKey(asset), check) for asset, check in MONITORING_CHECKS.items()]


@sensor(
    job=retraining_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Retrains when a monitoring check (feature drift, prediction drift, performance drop) fails.",
)
def retrain_on_failed_monitoring(context: SensorEvaluationContext):
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(_check_keys())
    # A check still running (PLANNED) keeps its record id; it is looked at again once evaluated.
    evaluated = [record for record in latest.values() if record.status != AssetCheckExecutionRecordStatus.PLANNED]
    seen = int(context.cursor or 0)
    new = [record for record in evaluated if record.id > seen]
    if not new:
        return SkipReason("no new monitoring check results")
    context.update_cursor(str(max(record.id for record in new)))
    failed = [record for record in new if record.status == AssetCheckExecutionRecordStatus.FAILED]
    if not failed:
        return SkipReason(f"monitoring checks passed: {', '.join(record.key.name for record in new)}")
    last = context.instance.get_run_records(RunsFilter(job_name=retraining_job.name), limit=1)
    if last and dt.datetime.now(dt.timezone.utc) - last[0].create_timestamp < RETRAINING_COOLDOWN:
        if last[0].dagster_run.status not in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            return SkipReason(
                f"{', '.join(r.key.name for r in failed)} failed, but retraining run {last[0].dagster_run.run_id} "
                f"started less than {RETRAINING_COOLDOWN} ago"
            )
    reason = "; ".join(f"{record.key.name} failed in run {record.run_id}" for record in failed)
    context.log.info(f"requesting retraining: {reason}")
    return RunRequest(
        run_key=f"retrain-after-check-{max(record.id for record in failed)}",
        tags={"mlops/trigger": "monitoring check failed", "mlops/retraining_reason": reason[:4000]},
    )


monitoring_sensors = [monitor_new_transactions, retrain_on_failed_monitoring]
