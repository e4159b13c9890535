"""`mlops-assets simulate` as a user runs it: files out, non-zero exit on bad arguments."""
import os
import subprocess
import sys

import duckdb

CLI = os.path.join(os.path.dirname(sys.executable), "mlops-assets")


def test_simulate_writes_the_four_inputs(tmp_path):
    out = tmp_path / "sim"
    completed = subprocess.run(
        [CLI, "simulate", "--out", str(out), "--customers", "50", "--terminals", "30", "--days", "10", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "transactions:" in completed.stderr  # progress is shown
    for name in ("transactions", "fraud_labels", "customers", "terminals"):
        assert (out / f"{name}.csv").exists()
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_csv('{out / 'customers.csv'}')").fetchone()[0] == 50


def test_bad_arguments_exit_non_zero_with_the_fix(tmp_path):
    completed = subprocess.run(
        [CLI, "simulate", "--out", str(tmp_path), "--days", "0"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode != 0
    assert "--days: must be at least 1, got 0" in completed.stderr


def test_simulate_with_drift_from_a_date(tmp_path):
    out = tmp_path / "sim"
    completed = subprocess.run(
        [CLI, "simulate", "--out", str(out), "--customers", "200", "--terminals", "80", "--days", "20",
         "--drift", "new_fraud_pattern", "--drift-start", "2026-01-10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "drift: new_fraud_pattern from 2026-01-10" in completed.stderr
    first = duckdb.connect().execute(
        f"SELECT min(t.event_time) FROM '{out / 'fraud_truth.parquet'}' AS f "
        f"JOIN '{out / 'transactions.parquet'}' AS t USING (transaction_id) WHERE f.scenario = 'account_takeover'"
    ).fetchone()[0]
    assert first is not None and first.date().isoformat() >= "2026-01-10"


def test_drift_without_its_start_exits_non_zero_with_the_fix(tmp_path):
    completed = subprocess.run(
        [CLI, "simulate", "--out", str(tmp_path), "--drift", "spending_shift"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 1
    assert "mlops-assets simulate: drift and drift_start go together" in completed.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written
