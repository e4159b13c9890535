"""Schedules: monitoring runs once a day even when no new data arrives through Kafka."""
from dagster import DefaultScheduleStatus, ScheduleDefinition

from mlops_assets.jobs import monitoring_job

daily_monitoring_schedule = ScheduleDefinition(
    name="daily_monitoring",
    job=monitoring_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Measures drift and performance every morning at 06:00 UTC.",
)
