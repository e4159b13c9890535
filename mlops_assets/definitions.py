"""The code location's table of contents: assets, checks, jobs, sensors, schedules and
resources for this deployment."""
from dagster import Definitions, in_process_executor

from mlops_assets.assets.features import build_feature_assets, build_feature_checks
from mlops_assets.assets.monitoring import build_monitoring_assets
from mlops_assets.assets.raw import raw_asset_checks, raw_assets
from mlops_assets.assets.scoring import build_fraud_scores_asset
from mlops_assets.assets.training import (
    build_champion_model_asset,
    build_fraud_model_asset,
    build_training_data_asset,
)
from mlops_assets.features.catalog import load_catalog
from mlops_assets.jobs import monitoring_job, retraining_job
from mlops_assets.resources import resources_for
from mlops_assets.schedules import daily_monitoring_schedule
from mlops_assets.sensors.kafka_sensors import kafka_sensors
from mlops_assets.sensors.monitoring_sensors import monitoring_sensors
from mlops_assets.settings import (
    MODEL_FEATURE_VIEW,
    deployment,
    feature_definitions_dir,
)

feature_catalog = load_catalog(feature_definitions_dir())
model_view = feature_catalog.view(MODEL_FEATURE_VIEW)


def platform_definitions(resources: dict) -> Definitions:
    """Everything the code location holds, bound to `resources` (tests pass their own)."""
    return Definitions(
        assets=[
            *raw_assets,
            *build_feature_assets(feature_catalog),
            build_training_data_asset(model_view),
            build_fraud_model_asset(model_view),
            build_champion_model_asset(model_view),
            build_fraud_scores_asset(model_view),
            *build_monitoring_assets(model_view),
        ],
        asset_checks=[*raw_asset_checks, *build_feature_checks(feature_catalog)],
        jobs=[monitoring_job, retraining_job],
        sensors=[*kafka_sensors, *monitoring_sensors],
        schedules=[daily_monitoring_schedule],
        resources=resources,
        # One process per run: DuckDB admits one writer process per file.
        executor=in_process_executor,
    )


defs = platform_definitions(resources_for(deployment()))
