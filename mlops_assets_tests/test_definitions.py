"""The code location loads as `dagster dev` and the CLI load it."""
import os
import subprocess
import sys

import pytest

from mlops_assets.resources import resources_for
from mlops_assets.settings import REPOSITORY_ROOT


def test_code_location_has_the_whole_graph():
    from mlops_assets.definitions import defs

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "raw_transactions", "raw_fraud_labels", "customer_profiles", "terminal_profiles",
        "transaction_features", "customer_behaviour", "terminal_behaviour",
        "transaction_labels", "fraud_feature_view",
        "training_data", "fraud_model", "champion_model", "fraud_scores",
        "feature_drift_report", "prediction_drift_report", "champion_performance",
    }
    view = defs.resolve_assets_def("fraud_feature_view")
    upstream = {key.to_user_string() for key in view.dependency_keys}
    assert {"transaction_features", "customer_behaviour", "terminal_behaviour", "transaction_labels"} <= upstream
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"monitoring", "retraining"}
    (schedule,) = defs.schedules
    assert (schedule.name, schedule.job_name, schedule.cron_schedule) == ("daily_monitoring", "monitoring", "0 6 * * *")
    assert {"monitor_new_transactions", "retrain_on_failed_monitoring"} <= {sensor.name for sensor in defs.sensors}


def test_dagster_definitions_validate_passes_from_the_repository_root(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "MLOPS_DATA_DIR": str(tmp_path / "data")}
    completed = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPOSITORY_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_unknown_deployment_is_a_clear_error():
    with pytest.raises(ValueError, match="MLOPS_DEPLOYMENT='staging' is not one of"):
        resources_for("staging")
