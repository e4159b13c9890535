"""Raw assets in real Dagster runs: loading user files from run config, rejected rows in
metadata, idempotent reloads and a clear failure for an unreadable file."""
from dagster import materialize

from mlops_assets.assets.raw import raw_assets

RAW_TRANSACTIONS = next(a for a in raw_assets if a.key.to_user_string() == "raw_transactions")

CSV = """transaction_id,event_time,customer_id,terminal_id,amount,currency
t1,2026-01-01T10:00:00Z,c1,m1,12.5,EUR
t2,2026-01-02T10:00:00Z,c2,m1,-1,EUR
t3,2026-01-03T10:00:00Z,c2,m2,7,EUR
"""


def _load(path, resources, raise_on_error=True):
    return materialize(
        [RAW_TRANSACTIONS],
        resources=resources,
        run_config={"ops": {"raw_transactions": {"config": {"path": str(path)}}}},
        raise_on_error=raise_on_error,
    )


def _metadata(result):
    materialization = result.asset_materializations_for_node("raw_transactions")[0]
    return {key: value.value for key, value in materialization.metadata.items()}


def test_user_file_loads_with_rejected_rows_counted_and_reload_adds_nothing(tmp_path, warehouse, batch_resources):
    path = tmp_path / "my_transactions.csv"
    path.write_text(CSV)

    first = _metadata(_load(path, batch_resources))
    assert first["rows_loaded"] == 2 and first["rows_rejected"] == 1
    assert "amount: must be a number >= 0" in first["rejection_reasons"]
    assert first["dagster/row_count"] == 2
    assert first["time_range_start"] == "2026-01-01 10:00:00"

    second = _metadata(_load(path, batch_resources))
    assert second["rows_loaded"] == 0 and second["rows_already_stored"] == 2
    assert second["data_version"] == first["data_version"]
    with warehouse.connect() as con:
        assert con.execute("SELECT count(*) FROM raw.rejected_rows").fetchone()[0] == 1


def test_unreadable_file_fails_the_run_with_what_to_fix(tmp_path, batch_resources):
    path = tmp_path / "no_amounts.csv"
    path.write_text("transaction_id,event_time,customer_id,terminal_id,currency\nt1,2026-01-01,c1,m1,EUR\n")
    result = _load(path, batch_resources, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "lacks required column(s) amount" in failure.user_failure_data.description


def test_simulator_is_the_default_source(warehouse, small_simulator, batch_resources, data_dir):
    result = materialize(raw_assets, resources=batch_resources)
    assert result.success
    with warehouse.connect() as con:
        counts = dict(con.execute(
            "SELECT 'transactions', count(*) FROM raw.transactions UNION ALL "
            "SELECT 'labels', count(*) FROM raw.fraud_labels UNION ALL "
            "SELECT 'customers', count(*) FROM raw.customers UNION ALL "
            "SELECT 'terminals', count(*) FROM raw.terminals"
        ).fetchall())
    assert counts["customers"] == small_simulator.customers
    assert counts["terminals"] == small_simulator.terminals
    assert counts["transactions"] > 5000 and 0 < counts["labels"] < counts["transactions"] / 50
    assert list((data_dir / "simulated").iterdir())  # the data set is kept for the next run
