"""Evaluation metrics and charts on hand-made scored frames with known answers."""
import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from mlops_assets.models.evaluation import (
    card_precision_at_k,
    evaluate_scores,
    save_charts,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scored_frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """A scored frame from (event_time, customer_id, is_fraud, score) tuples."""
    frame = pd.DataFrame(rows, columns=["event_time", "customer_id", "is_fraud", "score"])
    return frame.assign(event_time=pd.to_datetime(frame["event_time"]))


@pytest.fixture
def two_days() -> pd.DataFrame:
    """Day 1 has four cards, day 2 a single one (fewer than k=2).

    Day 1 by max score: A 0.9 (fraud: its second, lower-scored transaction), B 0.8 (genuine),
    C 0.7 (fraud), D 0.1 (genuine); the top 2 are A and B, so precision 1/2.
    Day 2: E is the only card and is fraud, so precision 1/1. The mean is 0.75.
    """
    return scored_frame(
        [
            ("2026-01-01 08:00", "A", 0, 0.9),
            ("2026-01-01 23:59", "A", 1, 0.2),
            ("2026-01-01 10:00", "B", 0, 0.8),
            ("2026-01-01 00:00", "C", 1, 0.7),
            ("2026-01-01 12:00", "D", 0, 0.1),
            ("2026-01-02 00:01", "E", 1, 0.3),
        ]
    )


@pytest.fixture
def small_frame() -> pd.DataFrame:
    """Five transactions: fraud at scores 0.9, 0.5 and 0.4; genuine at 0.6 and 0.1."""
    return scored_frame(
        [
            ("2026-01-01 01:00", "A", 1, 0.9),
            ("2026-01-01 02:00", "B", 0, 0.6),
            ("2026-01-01 03:00", "C", 1, 0.5),
            ("2026-01-01 04:00", "D", 1, 0.4),
            ("2026-01-01 05:00", "E", 0, 0.1),
        ]
    )


def test_card_precision_by_hand(two_days: pd.DataFrame) -> None:
    assert card_precision_at_k(two_days, k=2) == pytest.approx(0.75)


def test_card_precision_with_k_larger_than_every_day(two_days: pd.DataFrame) -> None:
    # Day 1: 2 of 4 cards are fraud; day 2: 1 of 1.
    assert card_precision_at_k(two_days, k=100) == pytest.approx((0.5 + 1.0) / 2)


def test_card_precision_breaks_ties_by_customer_id() -> None:
    tied = scored_frame([("2026-01-01 09:00", "b", 1, 0.5), ("2026-01-01 10:00", "a", 0, 0.5)])
    assert card_precision_at_k(tied, k=1) == 0.0


def test_card_precision_rejects_non_positive_k(two_days: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        card_precision_at_k(two_days, k=0)


def test_evaluate_scores_keys_and_counts(two_days: pd.DataFrame) -> None:
    metrics = evaluate_scores(two_days, threshold=0.5, k=2)
    assert set(metrics) == {
        "roc_auc",
        "average_precision",
        "precision_at_threshold",
        "recall_at_threshold",
        "card_precision_at_2",
        "fraud_rate",
        "transactions",
    }
    assert metrics["card_precision_at_2"] == pytest.approx(0.75)
    assert metrics["fraud_rate"] == pytest.approx(0.5)
    assert metrics["transactions"] == 6.0
    assert all(isinstance(value, float) for value in metrics.values())


def test_default_k_names_card_precision_at_100(two_days: pd.DataFrame) -> None:
    assert "card_precision_at_100" in evaluate_scores(two_days, threshold=0.5)


def test_perfect_scores_give_perfect_ranking_metrics() -> None:
    perfect = scored_frame(
        [
            ("2026-01-01 01:00", "A", 0, 0.1),
            ("2026-01-01 02:00", "B", 0, 0.2),
            ("2026-01-01 03:00", "C", 1, 0.8),
            ("2026-01-01 04:00", "D", 1, 0.9),
        ]
    )
    metrics = evaluate_scores(perfect, threshold=0.5)
    assert metrics["roc_auc"] == pytest.approx(1.0)
    assert metrics["average_precision"] == pytest.approx(1.0)


def test_precision_and_recall_at_threshold(small_frame: pd.DataFrame) -> None:
    # score >= 0.5 flags 0.9 (fraud), 0.6 (genuine), 0.5 (fraud): 2 of 3 flagged, 2 of 3 frauds.
    metrics = evaluate_scores(small_frame, threshold=0.5)
    assert metrics["precision_at_threshold"] == pytest.approx(2 / 3)
    assert metrics["recall_at_threshold"] == pytest.approx(2 / 3)


def test_nothing_predicted_gives_zero_precision(small_frame: pd.DataFrame) -> None:
    metrics = evaluate_scores(small_frame, threshold=0.95)
    assert metrics["precision_at_threshold"] == 0.0
    assert metrics["recall_at_threshold"] == 0.0


def test_single_class_gives_nan_ranking_metrics(small_frame: pd.DataFrame) -> None:
    genuine_only = small_frame.assign(is_fraud=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = evaluate_scores(genuine_only, threshold=0.5)
    assert math.isnan(metrics["roc_auc"])
    assert math.isnan(metrics["average_precision"])
    assert metrics["precision_at_threshold"] == 0.0
    assert metrics["fraud_rate"] == 0.0
    assert metrics["transactions"] == 5.0


def test_empty_frame_raises(small_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="empty"):
        evaluate_scores(small_frame.iloc[0:0], threshold=0.5)
    with pytest.raises(ValueError, match="empty"):
        card_precision_at_k(small_frame.iloc[0:0])


def test_missing_column_raises_naming_it(small_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="missing required column.*score"):
        evaluate_scores(small_frame.drop(columns="score"), threshold=0.5)
    with pytest.raises(ValueError, match="customer_id"):
        card_precision_at_k(small_frame.drop(columns="customer_id"))


def test_save_charts_writes_four_pngs(small_frame: pd.DataFrame, tmp_path: Path) -> None:
    importance = {f"feature_{index}": float(index) for index in range(30)}
    out_dir = tmp_path / "charts" / "validation"
    open_figures = plt.get_fignums()

    paths = save_charts(small_frame, importance, out_dir, "Validation")

    assert [path.name for path in paths] == [
        "precision_recall_curve.png",
        "roc_curve.png",
        "score_histogram.png",
        "feature_importance.png",
    ]
    for path in paths:
        assert path.parent == out_dir
        content = path.read_bytes()
        assert len(content) > len(PNG_MAGIC)
        assert content.startswith(PNG_MAGIC)
    assert plt.get_fignums() == open_figures
