"""Drift between two samples of the same columns, measured with Evidently's data drift preset.

Evidently picks a statistical test per column from its type and the sample size (for numeric
columns of more than 1,000 rows, the normed Wasserstein distance with threshold 0.1) and says
whether each column drifted. The data set as a whole counts as drifted when the share of
drifted columns reaches `drift_share`.
"""
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

_COLUMN_DRIFT_METRIC = "evidently:metric_v2:ValueDrift"
_COLUMN_DRIFT_TEST = "evidently:test_v2:ValueDriftTest"


@dataclass(frozen=True)
class ColumnDrift:
    score: float
    method: str
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: dict[str, ColumnDrift]
    drift_share: float  # the share of drifted columns from which the data set has drifted

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted_columns) / len(self.columns)

    @property
    def drifted(self) -> bool:
        return self.share_drifted >= self.drift_share

    def scores(self) -> dict[str, dict]:
        """Per column: drift score, method, threshold and verdict, for run metadata."""
        return {
            name: {"score": round(c.score, 6), "method": c.method, "threshold": c.threshold, "drifted": c.drifted}
            for name, c in self.columns.items()
        }


def measure_drift(
    current: pd.DataFrame, reference: pd.DataFrame, columns: list[str], drift_share: float, html_path: Path
) -> DriftResult:
    """Compares `current` with `reference` on `columns` (all numeric) and saves the
    self-contained HTML report at `html_path`."""
    if current.empty or reference.empty:
        raise ValueError(f"drift needs rows on both sides: {len(current)} current, {len(reference)} reference")
    # Declared numeric: Evidently would take small-integer columns (counts) for categories.
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataDriftPreset(columns=columns, drift_share=drift_share)], include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    return DriftResult(_column_drifts(snapshot.dict()), drift_share)


def _column_drifts(snapshot: dict) -> dict[str, ColumnDrift]:
    """Each column's drift score (metrics) and verdict (tests) from a snapshot's dict."""
    scores = {
        metric["id"]: metric for metric in snapshot["metrics"] if metric["config"]["type"] == _COLUMN_DRIFT_METRIC
    }
    drifts = {}
    for test in snapshot["tests"]:
        if test.get("bound_test", {}).get("test", {}).get("type") != _COLUMN_DRIFT_TEST:
            continue
        metric = scores[test["metric_config"]["metric_id"]]
        drifts[metric["config"]["column"]] = ColumnDrift(
            score=float(metric["value"]),
            method=metric["config"]["method"],
            threshold=float(metric["config"]["threshold"]),
            drifted=test["status"] == "FAIL",
        )
    return drifts
