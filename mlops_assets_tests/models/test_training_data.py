"""Training windows and the label cut-off: no label reported after it reaches training."""
import datetime as dt

import pandas as pd
import pytest

from mlops_assets.contracts import CONTRACTS
from mlops_assets.features.offline import (
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.ingestion import load_file
from mlops_assets.models.training_data import (
    TRAINING_DATA_TABLE,
    TrainingWindowError,
    build_training_data,
    resolve_windows,
    stored_windows,
)

FIRST, LAST = dt.date(2026, 1, 1), dt.date(2026, 3, 1)  # 60 days


def test_default_windows_end_with_the_data_and_leave_the_delay_between():
    windows = resolve_windows(FIRST, LAST, None, None, delay_days=7, test_days=14, warmup_days=7)
    assert windows.test_end == dt.date(2026, 3, 2)
    assert windows.test_start == dt.date(2026, 2, 16) == windows.label_cutoff
    assert windows.train_end == dt.date(2026, 2, 9)
    assert windows.train_start == dt.date(2026, 1, 8)


def test_explicit_windows_are_kept():
    windows = resolve_windows(FIRST, LAST, dt.date(2026, 1, 10), dt.date(2026, 2, 1), 3, 10, 7)
    assert (windows.train_start, windows.train_end, windows.test_start, windows.test_end) == (
        dt.date(2026, 1, 10), dt.date(2026, 2, 1), dt.date(2026, 2, 4), dt.date(2026, 2, 14),
    )


@pytest.mark.parametrize(
    "train_start, train_end, test_days, message",
    [
        (None, None, 60, "training window .* is empty"),
        (dt.date(2025, 12, 1), None, 14, "starts before the data"),
        (None, dt.date(2026, 3, 1), 14, "after the last data day"),
    ],
)
def test_impossible_windows_say_what_to_change(train_start, train_end, test_days, message):
    with pytest.raises(TrainingWindowError, match=message):
        resolve_windows(FIRST, LAST, train_start, train_end, 7, test_days, 7)


def _build_view(con, catalog):
    for group in catalog.groups:
        con.execute(f"CREATE OR REPLACE TABLE {group.table} AS {feature_group_sql(group)}")
    for labels in catalog.label_groups:
        con.execute(f"CREATE OR REPLACE TABLE {labels.table} AS {label_group_sql(labels)}")
    view = catalog.view("fraud_feature_view")
    con.execute(f"CREATE OR REPLACE TABLE {view.table} AS {feature_view_sql(view)}")
    return view


def test_labels_reported_after_the_cutoff_do_not_change_training_data(warehouse, small_dataset_files, catalog):
    with warehouse.connect() as con:
        for name, contract in CONTRACTS.items():
            load_file(con, contract, str(small_dataset_files[name]), run_id="test")
        view = _build_view(con, catalog)
        first, last = con.execute(f"SELECT min(event_time)::DATE, max(event_time)::DATE FROM {view.table}").fetchone()
        windows = resolve_windows(first, last, None, None, 7, 14, 7)
        build_training_data(con, view, windows)
        assert stored_windows(con) == windows

        def split(name: str) -> pd.DataFrame:
            return con.execute(
                f"SELECT * FROM {TRAINING_DATA_TABLE} WHERE split = ? ORDER BY transaction_id", [name]
            ).df()

        train_before, test_before = split("train"), split("test")
        known, eventually = con.execute(
            f"SELECT sum(label), (SELECT sum(is_fraud) FROM {view.table} WHERE event_time < ?) "
            f"FROM {TRAINING_DATA_TABLE} WHERE split = 'train'",
            [windows.train_end],
        ).fetchone()
        assert 0 < known < eventually  # some training frauds were still unreported at the cut-off

        # Everything reported after the cut-off changes: flipped, delayed, and new reports.
        con.execute(
            "UPDATE raw.fraud_labels SET is_fraud = 1 - is_fraud, reported_at = reported_at + INTERVAL 2 DAY "
            "WHERE reported_at >= ?",
            [windows.label_cutoff],
        )
        con.execute(
            "INSERT INTO raw.fraud_labels (transaction_id, is_fraud, reported_at) "
            "SELECT transaction_id, 1, ?::TIMESTAMP + INTERVAL 5 DAY FROM raw.transactions "
            "WHERE transaction_id NOT IN (SELECT transaction_id FROM raw.fraud_labels) AND hash(transaction_id) % 20 = 0",
            [windows.label_cutoff],
        )
        _build_view(con, catalog)
        build_training_data(con, view, windows)
        train_after, test_after = split("train"), split("test")

    pd.testing.assert_frame_equal(train_before, train_after)
    assert not test_before["label"].equals(test_after["label"])  # the test window sees every label
