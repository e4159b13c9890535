"""Drift measured by Evidently on samples whose difference is known."""
import numpy as np
import pandas as pd
import pytest

from mlops_assets.monitoring import measure_drift

COLUMNS = ["amount", "count_1d", "rate"]


def _sample(rows: int, seed: int, amount_mean: float = 50.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(np.log(amount_mean), 0.5, rows),
        "count_1d": rng.poisson(2, rows),  # small integers: must still be compared as numbers
        "rate": rng.beta(1, 50, rows),
    })


def test_same_distribution_has_no_drift_and_the_report_is_saved(tmp_path):
    path = tmp_path / "reports" / "drift.html"
    result = measure_drift(_sample(3000, 1), _sample(5000, 2), COLUMNS, 0.5, path)
    assert result.drifted_columns == [] and not result.drifted
    assert set(result.columns) == set(COLUMNS)
    assert all(column.method == "Wasserstein distance (normed)" for column in result.columns.values())
    assert path.stat().st_size > 100_000 and b"<html" in path.read_bytes()[:1000].lower()


def test_a_shifted_column_drifts_and_the_share_decides(tmp_path):
    current = _sample(3000, 1, amount_mean=80.0)
    result = measure_drift(current, _sample(5000, 2), COLUMNS, 0.5, tmp_path / "r.html")
    assert result.drifted_columns == ["amount"]
    assert result.columns["amount"].score > result.columns["amount"].threshold
    assert result.share_drifted == pytest.approx(1 / 3) and not result.drifted  # 1 of 3 < 0.5
    assert measure_drift(current, _sample(5000, 2), COLUMNS, 0.3, tmp_path / "r.html").drifted


def test_an_empty_side_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="0 current, 10 reference"):
        measure_drift(_sample(0, 1), _sample(10, 2), COLUMNS, 0.5, tmp_path / "r.html")
