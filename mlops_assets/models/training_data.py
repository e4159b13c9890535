"""Training data: the feature view split by time into a training window, a delay gap and a
test window, with the labels a real team would have had.

    [train_start, train_end)  delay_days  [test_start, test_end)
                                          ^ label cut-off: the model is trained here

The model is trained at `test_start`. Its training rows therefore carry the label as known
then: fraud only if the report arrived before the cut-off (chargebacks arrive days to weeks
late, which is why the delay gap exists). Test rows carry every label, as the eventual truth.
"""
import datetime as dt
from dataclasses import dataclass

import duckdb

from mlops_assets.features.catalog import FeatureView

TRAINING_DATA_TABLE = "training.training_data"
WINDOWS_TABLE = "training.windows"


class TrainingWindowError(ValueError):
    """The requested windows do not fit the data; the message says how."""


@dataclass(frozen=True)
class TrainingWindows:
    train_start: dt.date
    train_end: dt.date
    test_start: dt.date
    test_end: dt.date

    @property
    def label_cutoff(self) -> dt.date:
        return self.test_start

    def as_dict(self) -> dict[str, str]:
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
            "label_cutoff": self.label_cutoff.isoformat(),
        }


def resolve_windows(
    first_day: dt.date,
    last_day: dt.date,
    train_start: dt.date | None,
    train_end: dt.date | None,
    delay_days: int,
    test_days: int,
    warmup_days: int,
) -> TrainingWindows:
    """Fills the windows not given from the data's days (both inclusive): by default the test
    window is the last `test_days` days, the training window ends `delay_days` before it and
    starts after `warmup_days`, so its rolling features have history."""
    if delay_days < 0 or test_days < 1 or warmup_days < 0:
        raise TrainingWindowError("delay_days and warmup_days must be >= 0 and test_days >= 1")
    if train_end is None:
        test_end = last_day + dt.timedelta(days=1)
        train_end = test_end - dt.timedelta(days=test_days + delay_days)
    else:
        test_end = train_end + dt.timedelta(days=delay_days + test_days)
    train_start = train_start or first_day + dt.timedelta(days=warmup_days)
    windows = TrainingWindows(
        train_start=train_start,
        train_end=train_end,
        test_start=train_end + dt.timedelta(days=delay_days),
        test_end=test_end,
    )
    if not first_day <= windows.train_start < windows.train_end:
        raise TrainingWindowError(
            f"the training window {windows.train_start}..{windows.train_end} is empty or starts before "
            f"the data ({first_day}..{last_day}); set train_start/train_end, or fewer test/delay days"
        )
    if windows.test_start > last_day:
        raise TrainingWindowError(
            f"the test window starts {windows.test_start}, after the last data day {last_day}"
        )
    return windows


def stored_windows(con: duckdb.DuckDBPyConnection) -> TrainingWindows:
    """The windows the current training data was cut with."""
    return TrainingWindows(*con.execute(f"SELECT * FROM {WINDOWS_TABLE}").fetchone())


def training_data_sql(view: FeatureView) -> str:
    """Rows of both windows; parameters: train_start, train_end, cutoff, test_start, test_end."""
    features = ", ".join(view.feature_names)
    return (
        "SELECT transaction_id, event_time, customer_id, terminal_id, "
        "CASE WHEN event_time < $train_end THEN 'train' ELSE 'test' END AS split,\n"
        f"  {features},\n"
        "  CASE WHEN event_time >= $train_end THEN is_fraud\n"
        "       WHEN is_fraud = 1 AND label_reported_at < $cutoff THEN 1 ELSE 0 END AS label,\n"
        "  feature_view_version\n"
        f"FROM {view.table}\n"
        "WHERE (event_time >= $train_start AND event_time < $train_end)\n"
        "   OR (event_time >= $test_start AND event_time < $test_end)\n"
        "ORDER BY event_time, transaction_id"
    )


def build_training_data(con: duckdb.DuckDBPyConnection, view: FeatureView, windows: TrainingWindows) -> None:
    """Writes the training data and, beside it, the windows it was cut with."""
    con.execute("CREATE SCHEMA IF NOT EXISTS training")
    con.execute(
        f"CREATE OR REPLACE TABLE {WINDOWS_TABLE} AS SELECT $train_start::DATE AS train_start, "
        "$train_end::DATE AS train_end, $test_start::DATE AS test_start, $test_end::DATE AS test_end",
        {
            "train_start": windows.train_start,
            "train_end": windows.train_end,
            "test_start": windows.test_start,
            "test_end": windows.test_end,
        },
    )
    con.execute(
        f"CREATE OR REPLACE TABLE {TRAINING_DATA_TABLE} AS {training_data_sql(view)}",
        {
            "train_start": windows.train_start,
            "train_end": windows.train_end,
            "cutoff": windows.label_cutoff,
            "test_start": windows.test_start,
            "test_end": windows.test_end,
        },
    )
