"""Shared fixtures: a temporary data directory, a real DuckDB warehouse file, a small
simulated data set and the project's feature catalog."""
import datetime
from pathlib import Path

import pytest

from mlops_assets.features.catalog import load_catalog
from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.resources.mlflow import (
    EXPERIMENT_NAME,
    ModelRegistryResource,
    experiment_tracker,
)
from mlops_assets.resources.simulator import SimulatorResource
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets.services.local_broker import LocalBroker
from mlops_assets.services.simulator import SimulationConfig, simulate, write_dataset
from mlops_assets.settings import REPOSITORY_ROOT
from mlops_assets_tests.helpers import free_port

SMALL_SIMULATION = dict(customers=300, terminals=150, days=60, start_date="2026-01-01", seed=7)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data directory, so no state leaks between tests."""
    directory = tmp_path / "data"
    monkeypatch.setenv("MLOPS_DATA_DIR", str(directory))
    return directory


@pytest.fixture
def warehouse(data_dir: Path) -> WarehouseResource:
    return WarehouseResource(database=str(data_dir / "warehouse.duckdb"))


@pytest.fixture(scope="session")
def small_dataset_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Parquet files of a small simulated data set (about 40k transactions)."""
    config = SimulationConfig(
        customers=SMALL_SIMULATION["customers"],
        terminals=SMALL_SIMULATION["terminals"],
        days=SMALL_SIMULATION["days"],
        start=datetime.date.fromisoformat(SMALL_SIMULATION["start_date"]),
        seed=SMALL_SIMULATION["seed"],
    )
    return write_dataset(simulate(config), tmp_path_factory.mktemp("small_dataset"))


@pytest.fixture
def small_simulator(data_dir: Path) -> SimulatorResource:
    return SimulatorResource(cache_dir=str(data_dir / "simulated"), **SMALL_SIMULATION)


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(REPOSITORY_ROOT / "feature_definitions")


@pytest.fixture
def batch_resources(warehouse, small_simulator) -> dict:
    """What the raw and feature assets need; Kafka is configured but not used by file loads."""
    return {"warehouse": warehouse, "simulator": small_simulator, "kafka": KafkaResource()}


@pytest.fixture
def platform_resources(data_dir: Path, batch_resources) -> dict:
    """Every resource of the local deployment, in this test's data directory."""
    tracking_uri = f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
    return {
        **batch_resources,
        "mlflow": experiment_tracker.configured(
            {
                "experiment_name": EXPERIMENT_NAME,
                "mlflow_tracking_uri": tracking_uri,
                "artifact_location": (data_dir / "mlflow" / "artifacts").as_uri(),
            }
        ),
        "model_registry": ModelRegistryResource(tracking_uri=tracking_uri),
    }


@pytest.fixture
def kafka(tmp_path: Path) -> KafkaResource:
    """A real Kafka-protocol broker of this test's own (it starts in milliseconds), with the
    platform's topics; stopped after the test."""
    broker = LocalBroker(tmp_path / "kafka", port=free_port())
    broker.start()
    try:
        resource = KafkaResource(bootstrap_servers=broker.bootstrap_servers)
        resource.ensure_topics()
        yield resource
    finally:
        broker.stop()
