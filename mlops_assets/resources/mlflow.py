"""MLflow: the experiment tracker (dagster-mlflow's resource) and the model registry.

Locally both use a SQLite file and an artifact directory under the data directory; setting
`MLFLOW_TRACKING_URI` points them at an MLflow server instead.
"""
import os
import warnings
from pathlib import Path

import mlflow
from dagster import (
    BetaWarning,
    ConfigurableResource,
    Field,
    InitResourceContext,
    StringSource,
    resource,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # dagster-mlflow is marked beta; said once, here
    from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow
from mlflow import MlflowClient
from pydantic import Field as PydanticField

from mlops_assets.models.registry import ModelRegistry
from mlops_assets.settings import data_dir

EXPERIMENT_NAME = "fraud_detection"
MODEL_NAME = "fraud_detector"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"


def default_artifact_location() -> str:
    return (data_dir() / "mlflow" / "artifacts").as_uri()


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """Creates the experiment with an explicit artifact location (else MLflow would put
    artifacts in ./mlruns of whatever the working directory is) and returns its id."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


@resource(
    config_schema={
        **CONFIG_SCHEMA,
        "artifact_location": Field(
            StringSource,
            is_required=False,
            description="Where a new experiment keeps its artifacts (URI); empty: the server's default.",
        ),
    },
    description="dagster-mlflow's tracker, with the experiment created where its artifacts belong.",
)
def experiment_tracker(context: InitResourceContext):
    """One MLflow run per Dagster run (dagster-mlflow's MlFlow), ended when the run ends so no
    active MLflow run outlives it in a long-lived process."""
    config = context.resource_config
    mlflow.set_tracking_uri(config["mlflow_tracking_uri"])
    ensure_experiment(config["mlflow_tracking_uri"], config["experiment_name"], config.get("artifact_location"))
    tracker = MlFlow(context)
    try:
        yield tracker
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()


class ModelRegistryResource(ConfigurableResource):
    """The MLflow model registry that holds `fraud_detector` versions and their aliases."""

    tracking_uri: str = PydanticField(description="MLflow tracking URI (sqlite:///... or http://...).")
    model_name: str = PydanticField(default=MODEL_NAME, description="Registered model name.")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.model_name)
