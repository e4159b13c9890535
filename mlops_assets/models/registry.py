"""The model registry: registering `fraud_detector` versions, loading them safely, aliases.

A registered model carries its feature list (in order), the feature view and its version in
the MLmodel metadata, and the SHA-256 of its model file as a registry tag. Loading checks all
three against the feature view it is about to score, and refuses any mismatch with
`ModelIntegrityError`: a tampered artifact or a model trained on other features never scores.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import catboost
import mlflow
import mlflow.catboost
import yaml
from catboost import CatBoostClassifier
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from mlops_assets.features.catalog import FeatureView

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_FILE = "model.cb"


class ModelIntegrityError(RuntimeError):
    """A model artifact does not match its registry record or the feature view."""


@dataclass(frozen=True)
class VerifiedModel:
    model: CatBoostClassifier
    name: str
    version: str
    feature_names: tuple[str, ...]
    feature_view_version: str
    tags: dict[str, str]  # the version's registry tags: windows, run ids, promotion decision


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    """Versions of one registered model in an MLflow registry."""

    def __init__(self, tracking_uri: str, model_name: str):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri)

    def register(self, model: CatBoostClassifier, view: FeatureView, tags: dict[str, str]) -> ModelVersion:
        """Logs `model` to the active MLflow run and registers it as a new version."""
        info = mlflow.catboost.log_model(
            model,
            name="model",
            metadata={
                "feature_names": list(view.feature_names),
                "feature_view": view.name,
                "feature_view_version": view.version,
            },
            pip_requirements=[f"catboost=={catboost.__version__}"],
            registered_model_name=self.model_name,
        )
        version = str(info.registered_model_version)
        all_tags = {
            **tags,
            "feature_view": view.name,
            "feature_view_version": view.version,
            "model_sha256": file_sha256(self._download(version) / MODEL_FILE),
        }
        for key, value in all_tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)
        return self.client.get_model_version(self.model_name, version)

    def load_verified(self, version: str, view: FeatureView) -> VerifiedModel:
        """Loads a version after checking its hash, feature list and feature view version."""
        record = self.client.get_model_version(self.model_name, version)
        where = f"{self.model_name} version {version}"
        stored = self._download(version)
        expected_hash = record.tags.get("model_sha256")
        if expected_hash is None:
            raise ModelIntegrityError(f"{where} has no model_sha256 tag: it was not registered by this platform")
        actual_hash = file_sha256(stored / MODEL_FILE)
        if actual_hash != expected_hash:
            raise ModelIntegrityError(
                f"{where}: the artifact's SHA-256 {actual_hash[:12]}… differs from the registered "
                f"{expected_hash[:12]}…; the artifact was modified after registration: retrain or restore it"
            )
        metadata = yaml.safe_load((stored / "MLmodel").read_text()).get("metadata") or {}
        features = tuple(metadata.get("feature_names", ()))
        if features != view.feature_names:
            raise ModelIntegrityError(
                f"{where} was trained on features {list(features)}, but feature view {view.name} "
                f"now has {list(view.feature_names)}: retrain the model on the current view"
            )
        if metadata.get("feature_view_version") != view.version:
            raise ModelIntegrityError(
                f"{where} was trained on feature view version {metadata.get('feature_view_version')}, "
                f"the current one is {view.version}: retrain the model on the current view"
            )
        model = CatBoostClassifier()
        model.load_model(str(stored / MODEL_FILE))
        return VerifiedModel(model, self.model_name, str(version), features, view.version, dict(record.tags))

    def version_with_alias(self, alias: str) -> str | None:
        """The version number holding `alias`, as text, or None."""
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None  # no such alias, or no such model yet

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, version)

    def _download(self, version: str) -> Path:
        """The version's artifact directory (the store's own path when it is local)."""
        uri = self.client.get_model_version_download_uri(self.model_name, version)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=self.tracking_uri))
