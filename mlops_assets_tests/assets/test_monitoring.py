"""Monitoring assets in real Dagster runs on a real warehouse and MLflow registry: what the
reports record, a new fraud pattern caught as a performance drop, and clear failures."""
import pytest
from dagster import AssetSelection, DagsterInstance, materialize

from mlops_assets.definitions import platform_definitions
from mlops_assets.resources.simulator import SimulatorResource
from mlops_assets_tests.conftest import SMALL_SIMULATION

# The champion learns January and is tested on [Feb 3, Feb 13); from Feb 13 fraudsters take
# over accounts, a pattern it has never seen. The latest window with labels is [Feb 12, Feb 22).
BEFORE_THE_NEW_PATTERN = {
    "ops": {
        "training_data": {"config": {"train_end": "2026-01-27", "test_days": 10}},
        "fraud_model": {"config": {"iterations": 80}},
        "champion_performance": {"config": {"window_days": 10}},
    }
}


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as dagster_instance:
        yield dagster_instance


def _materialize(defs, resources, instance, selection, run_config=None):
    return materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        resources=resources,
        run_config=run_config or {},
        instance=instance,
        raise_on_error=False,
    )


def test_a_new_fraud_pattern_fails_the_performance_check(platform_resources, data_dir, instance):
    # More customers than the small data set, so each window holds enough fraud to measure.
    simulator = SimulatorResource(
        cache_dir=str(data_dir / "simulated"),
        **{**SMALL_SIMULATION, "customers": 1000, "terminals": 500},
        drift="new_fraud_pattern",
        drift_start="2026-02-13",
    )
    resources = {**platform_resources, "simulator": simulator}
    defs = platform_definitions(resources)
    result = _materialize(defs, resources, instance, AssetSelection.all(), BEFORE_THE_NEW_PATTERN)
    assert result.success
    performance = result.asset_materializations_for_node("champion_performance")[0].metadata
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["no_performance_drop"].passed is False
    assert performance["recent_average_precision"].value < performance["reference_average_precision"].value - 0.1
    assert performance["recent_frauds_known"].value > 0 and performance["reference_frauds_known"].value > 0


def test_monitoring_without_a_champion_fails_with_the_fix(platform_resources, instance):
    defs = platform_definitions(platform_resources)
    loaded = _materialize(
        defs, platform_resources, instance, AssetSelection.groups("raw", "features", "labels", "feature_views")
    )
    assert loaded.success
    result = _materialize(defs, platform_resources, instance, AssetSelection.keys("feature_drift_report"))
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert "fraud_detector has no champion: materialize champion_model first" in str(failure.event_specific_data)


def test_prediction_drift_uses_stored_scores_and_computes_them_when_there_are_none(platform_resources, instance):
    defs = platform_definitions(platform_resources)
    trained = _materialize(
        defs, platform_resources, instance,
        AssetSelection.all() - AssetSelection.groups("monitoring") - AssetSelection.assets("fraud_scores"),
        {"ops": {"fraud_model": {"config": {"iterations": 80}}}},
    )
    assert trained.success

    def prediction_drift():
        result = _materialize(defs, platform_resources, instance, AssetSelection.assets("prediction_drift_report"))
        assert result.success
        return result.asset_materializations_for_node("prediction_drift_report")[0].metadata

    assert prediction_drift()["current_scores"].value == "computed from the feature view"
    assert _materialize(defs, platform_resources, instance, AssetSelection.assets("fraud_scores")).success
    stored = prediction_drift()
    assert stored["current_scores"].value == "stored"
    assert 0 < stored["current_mean_score"].value < 1 and stored["score_drift"].value >= 0
