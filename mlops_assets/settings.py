"""Where the platform keeps its state and definitions, read from the environment.

Every state file (Dagster's instance, the warehouse, simulated data) lives below one data
directory, `MLOPS_DATA_DIR`, which defaults to `.data` in the working directory and is
never part of the source tree.
"""
import os
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The directory that holds every state file of this deployment."""
    return Path(os.environ.get("MLOPS_DATA_DIR", ".data")).resolve()


def feature_definitions_dir() -> Path:
    """The directory of declarative feature groups, label groups and feature views."""
    default = REPOSITORY_ROOT / "feature_definitions"
    return Path(os.environ.get("MLOPS_FEATURE_DEFINITIONS", default)).resolve()


def deployment() -> str:
    """Which resource set to use: `local` (embedded defaults) or `production`."""
    return os.environ.get("MLOPS_DEPLOYMENT", "local")


# The feature view the fraud model is trained on and scores with.
MODEL_FEATURE_VIEW = "fraud_feature_view"
