"""Training, registry, promotion gate and batch scores in real Dagster runs, with a real
MLflow backend (SQLite + local artifacts) and a real DuckDB warehouse."""
import numpy as np
import pytest
from dagster import DagsterInstance, materialize
from mlflow import MlflowClient

from mlops_assets.assets.features import build_feature_assets
from mlops_assets.assets.raw import raw_assets
from mlops_assets.assets.scoring import build_fraud_scores_asset
from mlops_assets.assets.training import (
    build_champion_model_asset,
    build_fraud_model_asset,
    build_training_data_asset,
)
from mlops_assets.models.registry import CHALLENGER, CHAMPION, MODEL_FILE

FAST_TRAINING = {"ops": {"fraud_model": {"config": {"iterations": 80}}}}


def _training_assets(view):
    return [
        build_training_data_asset(view),
        build_fraud_model_asset(view),
        build_champion_model_asset(view),
        build_fraud_scores_asset(view),
    ]


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def trained(catalog, platform_resources, instance):
    """The whole graph materialized once: raw data to fraud scores."""
    view = catalog.view("fraud_feature_view")
    result = materialize(
        [*raw_assets, *build_feature_assets(catalog), *_training_assets(view)],
        resources=platform_resources,
        run_config=FAST_TRAINING,
        instance=instance,
    )
    assert result.success
    return result


def _retrain(catalog, platform_resources, instance, margin):
    view = catalog.view("fraud_feature_view")
    assets = [asset for asset in _training_assets(view) if asset.key.to_user_string() in ("fraud_model", "champion_model")]
    config = {"ops": {**FAST_TRAINING["ops"], "champion_model": {"config": {"margin": margin}}}}
    result = materialize(assets, resources=platform_resources, run_config=config, instance=instance,
                         selection=["fraud_model", "champion_model"])
    assert result.success
    metadata = result.asset_materializations_for_node("champion_model")[0].metadata
    return {key: value.value for key, value in metadata.items()}


def _client(platform_resources) -> MlflowClient:
    return platform_resources["model_registry"].registry().client


def test_training_run_is_tracked_registered_and_promoted(trained, platform_resources, catalog):
    client = _client(platform_resources)
    view = catalog.view("fraud_feature_view")
    version = client.get_model_version_by_alias("fraud_detector", CHAMPION)
    assert str(version.version) == "1"
    assert version.tags["feature_view_version"] == view.version
    assert version.tags["dagster_run_id"] == trained.run_id
    assert {"train_start", "train_end", "test_start", "test_end", "model_sha256"} <= set(version.tags)

    run = client.get_run(version.run_id)
    assert run.data.tags["dagster_run_id"] == trained.run_id
    assert run.data.params["feature_view_version"] == view.version
    for metric in ("roc_auc", "average_precision", "precision_at_threshold", "recall_at_threshold", "card_precision_at_100"):
        assert 0 <= run.data.metrics[f"test_{metric}"] <= 1
    assert run.data.metrics["test_roc_auc"] > 0.8  # fraud in the simulator is learnable
    charts = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "charts")}
    assert charts == {
        "charts/precision_recall_curve.png", "charts/roc_curve.png",
        "charts/score_histogram.png", "charts/feature_importance.png",
    }
    baseline = client.search_runs(
        [run.info.experiment_id], filter_string="tags.model = 'baseline'"
    )
    assert len(baseline) == 1 and "test_average_precision" in baseline[0].data.metrics
    assert run.data.metrics["baseline_test_average_precision"] == baseline[0].data.metrics["test_average_precision"]

    promotion = trained.asset_materializations_for_node("champion_model")[0].metadata
    assert promotion["decision"].value == "promoted"
    assert promotion["reason"].value == "there is no champion yet"


def test_promotion_gate_keeps_the_champion_unless_the_margin_is_met(trained, catalog, platform_resources, instance):
    kept = _retrain(catalog, platform_resources, instance, margin=1.0)  # AP cannot rise by 1
    client = _client(platform_resources)
    assert kept["decision"] == "kept as challenger" and kept["new_version"] == "2"
    assert kept["champion_version"] == "1" and 0 < kept["champion_average_precision"] <= 1
    assert str(client.get_model_version_by_alias("fraud_detector", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("fraud_detector", CHALLENGER).version) == "2"

    promoted = _retrain(catalog, platform_resources, instance, margin=-1.0)
    assert promoted["decision"] == "promoted" and promoted["new_version"] == "3"
    assert promoted["new_average_precision"] >= promoted["champion_average_precision"] - 1.0
    assert str(client.get_model_version_by_alias("fraud_detector", CHAMPION).version) == "3"
    assert "meets the margin" in client.get_model_version("fraud_detector", "3").tags["promotion_decision"]


def test_batch_scores_follow_the_contract_and_a_rerun_adds_nothing(trained, catalog, platform_resources, instance):
    with platform_resources["warehouse"].connect() as con:
        rows = con.execute(
            "SELECT score, decision, model_name, model_version, feature_view_version FROM scores.fraud_scores"
        ).df()
    assert len(rows) > 1000
    assert rows["score"].between(0, 1).all()
    expected = np.select([rows["score"] >= 0.9, rows["score"] >= 0.5], ["decline", "review"], "approve")
    assert (rows["decision"] == expected).all()
    assert set(rows["model_version"]) == {"1"} and set(rows["model_name"]) == {"fraud_detector"}
    assert set(rows["feature_view_version"]) == {catalog.view("fraud_feature_view").version}

    scores_asset = build_fraud_scores_asset(catalog.view("fraud_feature_view"))
    again = materialize([scores_asset], resources=platform_resources, instance=instance)
    assert again.success
    with platform_resources["warehouse"].connect() as con:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (transaction_id, model_version)) FROM scores.fraud_scores"
        ).fetchone()
    assert total == distinct == len(rows)


def test_a_tampered_model_artifact_is_refused(trained, catalog, platform_resources, instance):
    registry = platform_resources["model_registry"].registry()
    artifact = registry._download("1") / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    result = materialize(
        [build_fraud_scores_asset(catalog.view("fraud_feature_view"))],
        resources=platform_resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "fraud_detector version 1" in message and "SHA-256" in message
