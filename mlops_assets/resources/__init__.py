"""Resource sets per deployment, chosen by `MLOPS_DEPLOYMENT` (see settings.py).

- `local` (default): embedded defaults, every file under the data directory; MLflow in a
  SQLite file unless `MLFLOW_TRACKING_URI` names a server; Kafka on the local broker unless
  `KAFKA_BOOTSTRAP_SERVERS` names a cluster.
- `production`: locations from the environment, so a real deployment changes configuration only.
"""
from dagster import EnvVar

from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.resources.mlflow import (
    EXPERIMENT_NAME,
    ModelRegistryResource,
    default_artifact_location,
    default_tracking_uri,
    experiment_tracker,
)
from mlops_assets.resources.simulator import SimulatorResource
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets.settings import data_dir


def local_resources() -> dict:
    tracking_uri = default_tracking_uri()
    return {
        "warehouse": WarehouseResource(database=str(data_dir() / "warehouse.duckdb")),
        "simulator": SimulatorResource(),
        "mlflow": experiment_tracker.configured(
            {
                "experiment_name": EXPERIMENT_NAME,
                "mlflow_tracking_uri": tracking_uri,
                "artifact_location": default_artifact_location(),
            }
        ),
        "model_registry": ModelRegistryResource(tracking_uri=tracking_uri),
        "kafka": KafkaResource.from_env(),
    }


def production_resources() -> dict:
    return {
        "warehouse": WarehouseResource(database=EnvVar("MLOPS_WAREHOUSE_PATH")),
        "simulator": SimulatorResource(cache_dir=EnvVar("MLOPS_SIMULATOR_CACHE_DIR")),
        "mlflow": experiment_tracker.configured(
            {"experiment_name": EXPERIMENT_NAME, "mlflow_tracking_uri": {"env": "MLFLOW_TRACKING_URI"}}
        ),
        "model_registry": ModelRegistryResource(tracking_uri=EnvVar("MLFLOW_TRACKING_URI")),
        "kafka": KafkaResource.from_env(),  # KAFKA_* variables, security settings included
    }


RESOURCES_BY_DEPLOYMENT = {"local": local_resources, "production": production_resources}


def resources_for(deployment: str) -> dict:
    if deployment not in RESOURCES_BY_DEPLOYMENT:
        raise ValueError(
            f"MLOPS_DEPLOYMENT={deployment!r} is not one of {sorted(RESOURCES_BY_DEPLOYMENT)}"
        )
    return RESOURCES_BY_DEPLOYMENT[deployment]()
