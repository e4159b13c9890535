"""Registering and loading models in a real MLflow registry (SQLite backend, local artifacts)."""
import dataclasses

import mlflow
import numpy as np
import pytest
from catboost import CatBoostClassifier

from mlops_assets.models.registry import MODEL_FILE, ModelIntegrityError, ModelRegistry
from mlops_assets.resources.mlflow import ensure_experiment


@pytest.fixture
def registry(data_dir):
    tracking_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    experiment_id = ensure_experiment(tracking_uri, "tests", (data_dir / "artifacts").as_uri())
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id):
        yield ModelRegistry(tracking_uri, "fraud_detector")


def _model(view, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.random((300, len(view.feature_names)))
    labels = (features[:, 0] > 0.8).astype(int)
    return CatBoostClassifier(iterations=10, verbose=False, allow_writing_files=False).fit(features, labels)


def test_registered_model_loads_with_its_features_and_predicts_the_same(registry, catalog):
    view = catalog.view("fraud_feature_view")
    model = _model(view)
    version = registry.register(model, view, tags={"dagster_run_id": "run-1"})
    assert version.tags["feature_view_version"] == view.version and len(version.tags["model_sha256"]) == 64

    loaded = registry.load_verified(str(version.version), view)
    probe = np.random.default_rng(1).random((20, len(view.feature_names)))
    assert loaded.feature_names == view.feature_names
    np.testing.assert_allclose(loaded.model.predict_proba(probe), model.predict_proba(probe))


def test_a_model_is_refused_for_another_feature_list_or_view_version(registry, catalog):
    view = catalog.view("fraud_feature_view")
    version = str(registry.register(_model(view), view, tags={}).version)
    reordered = dataclasses.replace(view, features=tuple(reversed(view.features)))
    with pytest.raises(ModelIntegrityError, match="was trained on features"):
        registry.load_verified(version, reordered)
    newer = dataclasses.replace(view, version="0123456789ab")
    with pytest.raises(ModelIntegrityError, match="feature view version .* the current one is 0123456789ab"):
        registry.load_verified(version, newer)


def test_a_modified_artifact_is_refused(registry, catalog):
    view = catalog.view("fraud_feature_view")
    version = str(registry.register(_model(view), view, tags={}).version)
    artifact = registry._download(version) / MODEL_FILE
    content = bytearray(artifact.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one flipped byte
    artifact.write_bytes(bytes(content))
    with pytest.raises(ModelIntegrityError, match="SHA-256 .* differs from the registered"):
        registry.load_verified(version, view)


def test_aliases(registry, catalog):
    view = catalog.view("fraud_feature_view")
    assert registry.version_with_alias("champion") is None
    first = str(registry.register(_model(view), view, tags={}).version)
    registry.set_alias("champion", first)
    assert registry.version_with_alias("champion") == first
