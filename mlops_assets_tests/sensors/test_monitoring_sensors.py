"""The monitoring loop in a real Dagster instance, with a real warehouse and MLflow registry:
drift injected by the simulator fails a monitoring check, the retraining sensor (evaluated as
the daemon evaluates it) requests retraining, the run registers a new model version and the
promotion gate records its decision. The same world without drift retrains nothing."""
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    RunRequest,
    build_sensor_context,
    materialize,
)

from mlops_assets.assets.monitoring import MONITORING_CHECKS
from mlops_assets.definitions import platform_definitions
from mlops_assets.models.registry import CHAMPION
from mlops_assets.resources.simulator import SimulatorResource
from mlops_assets.sensors.monitoring_sensors import (
    monitor_new_transactions,
    retrain_on_failed_monitoring,
)
from mlops_assets_tests.conftest import SMALL_SIMULATION

FAST_TRAINING = {"ops": {"fraud_model": {"config": {"iterations": 80}}}}
# The small data set runs from 2026-01-01 for 60 days; the default training window ends
# 2026-01-26, so the champion learns the world before the change.
DRIFT_START = "2026-02-15"


def _checks(result) -> dict[str, bool]:
    """Whether each monitoring check passed in a run."""
    return {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name in MONITORING_CHECKS.values()
    }


def _tick(sensor, instance, defs, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    data = sensor.evaluate_tick(context)
    return data.run_requests, data.skip_message, data.cursor


def _platform(platform_resources, data_dir: Path, drift: str | None):
    simulator = SimulatorResource(
        cache_dir=str(data_dir / "simulated"),
        **SMALL_SIMULATION,
        drift=drift,
        drift_start=DRIFT_START if drift else None,
    )
    resources = {**platform_resources, "simulator": simulator}
    return platform_definitions(resources), resources


def _train_and_monitor(defs, resources, instance):
    """Loads and trains on everything, as `make materialize` does, then runs monitoring as
    the new-transactions sensor would have it."""
    trained = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=AssetSelection.all() - AssetSelection.groups("monitoring"),
        resources=resources,
        run_config=FAST_TRAINING,
        instance=instance,
    )
    assert trained.success
    (request,), _, _ = _tick(monitor_new_transactions, instance, defs)
    assert monitor_new_transactions.job_name == "monitoring"
    monitoring = defs.resolve_job_def("monitoring").execute_in_process(
        instance=instance, tags=request.tags, run_config=request.run_config
    )
    assert monitoring.success
    return monitoring


@pytest.mark.parametrize("drift", ["spending_shift"])
def test_drift_fails_a_check_and_the_sensor_retrains_and_the_gate_decides(platform_resources, data_dir, drift):
    defs, resources = _platform(platform_resources, data_dir, drift)
    with DagsterInstance.ephemeral() as instance:
        monitoring = _train_and_monitor(defs, resources, instance)
        checks = _checks(monitoring)
        assert checks["no_feature_drift"] is False
        report = monitoring.asset_materializations_for_node("feature_drift_report")[0].metadata
        drifted = report["drifted_columns"].value.split(", ")
        assert {"amount", "customer_amount_mean_7d", "customer_tx_count_1d"} <= set(drifted), drifted
        assert Path(report["report_path"].value).stat().st_size > 100_000  # the HTML report a user opens

        (request,), _, cursor = _tick(retrain_on_failed_monitoring, instance, defs)
        assert isinstance(request, RunRequest) and retrain_on_failed_monitoring.job_name == "retraining"
        assert "no_feature_drift failed" in request.tags["mlops/retraining_reason"]
        retraining = defs.resolve_job_def("retraining").execute_in_process(
            instance=instance, tags=request.tags, run_config={**FAST_TRAINING, **(request.run_config or {})}
        )
        assert retraining.success

        registry = resources["model_registry"].registry()
        decision = instance.get_latest_materialization_event(AssetKey("champion_model")).asset_materialization
        assert decision.metadata["new_version"].value == "2"
        assert decision.metadata["decision"].value in ("promoted", "kept as challenger")
        tags = registry.client.get_model_version(registry.model_name, "2").tags
        assert tags["promotion_decision"] == decision.metadata["reason"].value
        assert tags["dagster_run_id"] == retraining.run_id
        expected_champion = "2" if decision.metadata["decision"].value == "promoted" else "1"
        assert registry.version_with_alias(CHAMPION) == expected_champion

        # The same failed check is acted on once.
        requests, skip, cursor = _tick(retrain_on_failed_monitoring, instance, defs, cursor)
        assert requests == [] and "no new monitoring check results" in skip
        # The drift is still there at the next monitoring run, but a retraining just happened.
        again = defs.resolve_job_def("monitoring").execute_in_process(instance=instance)
        assert _checks(again)["no_feature_drift"] is False
        requests, skip, _ = _tick(retrain_on_failed_monitoring, instance, defs, cursor)
        assert requests == [] and f"retraining run {retraining.run_id} started less than" in skip


def test_without_drift_every_check_passes_and_nothing_is_retrained(platform_resources, data_dir):
    defs, resources = _platform(platform_resources, data_dir, drift=None)
    with DagsterInstance.ephemeral() as instance:
        monitoring = _train_and_monitor(defs, resources, instance)
        assert _checks(monitoring) == {
            "no_feature_drift": True, "no_prediction_drift": True, "no_performance_drop": True,
        }
        requests, skip, _ = _tick(retrain_on_failed_monitoring, instance, defs)
        assert requests == [] and "monitoring checks passed" in skip
        assert instance.get_runs_count() == 2  # the training and monitoring runs: no retraining
