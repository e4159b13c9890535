"""Resource sets per deployment, chosen by `MLOPS_DEPLOYMENT` (see settings.py).

- `local` (default): embedded defaults, every file under the data directory.
- `production`: locations from the environment, so a real deployment changes configuration only.
"""
from dagster import EnvVar

from mlops_assets.resources.simulator import SimulatorResource
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets.settings import data_dir


def local_resources() -> dict:
    return {
        "warehouse": WarehouseResource(database=str(data_dir() / "warehouse.duckdb")),
        "simulator": SimulatorResource(),
    }


def production_resources() -> dict:
    return {
        "warehouse": WarehouseResource(database=EnvVar("MLOPS_WAREHOUSE_PATH")),
        "simulator": SimulatorResource(cache_dir=EnvVar("MLOPS_SIMULATOR_CACHE_DIR")),
    }


RESOURCES_BY_DEPLOYMENT = {"local": local_resources, "production": production_resources}


def resources_for(deployment: str) -> dict:
    if deployment not in RESOURCES_BY_DEPLOYMENT:
        raise ValueError(
            f"MLOPS_DEPLOYMENT={deployment!r} is not one of {sorted(RESOURCES_BY_DEPLOYMENT)}"
        )
    return RESOURCES_BY_DEPLOYMENT[deployment]()
