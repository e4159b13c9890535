"""Small helpers shared by tests across the package."""
import socket
import time
from collections.abc import Callable

import mlflow
import numpy as np
from catboost import CatBoostClassifier

from mlops_assets.models.registry import CHAMPION, ModelRegistry
from mlops_assets.resources.mlflow import ensure_experiment


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Polls `condition` until it holds; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the service"
        time.sleep(0.05)


def register_champion(tracking_uri: str, view, seed: int = 0) -> str:
    """Registers a small CatBoost model (its quality does not matter here) and makes it the
    champion; returns its version."""
    experiment = ensure_experiment(tracking_uri, "tests", tracking_uri.replace("sqlite:///", "file://") + "-artifacts")
    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(seed)
    features = rng.random((400, len(view.feature_names)))
    model = CatBoostClassifier(iterations=20, random_seed=seed, verbose=False, allow_writing_files=False)
    model.fit(features, (features[:, 0] > 0.9).astype(int))
    registry = ModelRegistry(tracking_uri, "fraud_detector")
    with mlflow.start_run(experiment_id=experiment):
        version = str(registry.register(model, view, tags={}).version)
    registry.set_alias(CHAMPION, version)
    return version
