"""The payment-gateway simulator as a resource: the default source of the four raw inputs."""
import datetime
import shutil
from collections.abc import Callable
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from mlops_assets.services.simulator import SimulationConfig, simulate, write_dataset
from mlops_assets.settings import data_dir


class SimulatorResource(ConfigurableResource):
    """Generates a simulated data set once per configuration and keeps it as Parquet files."""

    customers: int = Field(default=SimulationConfig.customers, description="Number of simulated card holders.")
    terminals: int = Field(default=SimulationConfig.terminals, description="Number of simulated payment terminals.")
    days: int = Field(default=SimulationConfig.days, description="Number of simulated days.")
    start_date: str = Field(
        default=SimulationConfig.start.isoformat(), description="First simulated day (UTC), YYYY-MM-DD."
    )
    seed: int = Field(default=SimulationConfig.seed, description="Random seed: the same seed gives the same data.")
    drift: str | None = Field(
        default=None,
        description="How the simulated world changes from drift_start on: spending_shift or new_fraud_pattern. "
        "Empty: no change.",
    )
    drift_start: str | None = Field(default=None, description="First day of the changed world, YYYY-MM-DD.")
    cache_dir: str | None = Field(
        default=None,
        description="Where generated data sets are kept; empty: `simulated/` in the data directory.",
    )

    def simulation_config(self) -> SimulationConfig:
        return SimulationConfig(
            customers=self.customers,
            terminals=self.terminals,
            days=self.days,
            start=datetime.date.fromisoformat(self.start_date),
            seed=self.seed,
            drift=self.drift,
            drift_start=datetime.date.fromisoformat(self.drift_start) if self.drift_start else None,
        )

    def dataset_files(self, progress: Callable[[str], None]) -> dict[str, Path]:
        """Paths of the data set's files by input name, generating them on first use."""
        config = self.simulation_config()
        target = Path(self.cache_dir or data_dir() / "simulated") / (
            f"seed{config.seed}_{config.customers}c_{config.terminals}t_"
            f"{config.days}d_{config.start.isoformat()}"
            + (f"_{config.drift}_{config.drift_start.isoformat()}" if config.drift else "")
        )
        files = {
            name: target / f"{name}.parquet"
            for name in ("transactions", "fraud_labels", "customers", "terminals")
        }
        if all(path.exists() for path in files.values()):
            return files
        progress(f"simulating {config} into {target}")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        write_dataset(simulate(config, progress), staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a crash never leaves a half-written data set in place
        return files
