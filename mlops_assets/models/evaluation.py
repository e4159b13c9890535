"""Evaluation metrics and charts for scored transactions.

Every function takes a `scored` frame with one row per transaction and the columns
`event_time` (naive UTC datetime), `customer_id`, `is_fraud` (0/1) and `score` (in [0, 1]).

Metrics (see `evaluate_scores`):

- `roc_auc` and `average_precision`: threshold-free ranking quality of the raw scores.
  Average precision is the more telling one, because fraud is rare.
- `precision_at_threshold` and `recall_at_threshold`: quality of the hard decision
  "fraud when score >= threshold".
- `card_precision_at_{k}`: for each day, rank the cards (customers) by their highest score
  that day, take the top k and measure the share that really had fraud that day; then average
  over days. Why: an investigation team can only check about k cards a day, so this is the
  share of their daily work that finds fraud.
- `fraud_rate` and `transactions`: the base rate and size of the evaluated set.
"""
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

REQUIRED_COLUMNS = ("event_time", "customer_id", "is_fraud", "score")
TOP_FEATURES = 25
DPI = 100


def _validate(scored: pd.DataFrame) -> None:
    """Raise ValueError when `scored` is empty or lacks a required column."""
    missing = [column for column in REQUIRED_COLUMNS if column not in scored.columns]
    if missing:
        raise ValueError(f"scored frame is missing required column(s): {', '.join(missing)}")
    if scored.empty:
        raise ValueError("scored frame is empty: nothing to evaluate")


def _daily_card_scores(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per (day, customer): the max score and whether any transaction was fraud."""
    return (
        scored.assign(day=scored["event_time"].dt.normalize(), is_fraud=scored["is_fraud"].astype(int))
        .groupby(["day", "customer_id"], as_index=False)
        .agg(score=("score", "max"), is_fraud=("is_fraud", "max"))
    )


def card_precision_at_k(scored: pd.DataFrame, k: int = 100) -> float:
    """Mean over days of the fraud share among the day's k highest-scored cards."""
    _validate(scored)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    cards = _daily_card_scores(scored).sort_values(
        ["day", "score", "customer_id"], ascending=[True, False, True]
    )
    top = cards[cards.groupby("day").cumcount() < k]
    return float(top.groupby("day")["is_fraud"].mean().mean())


def _ranking_metrics(is_fraud: pd.Series, score: pd.Series) -> dict[str, float]:
    """ROC AUC and average precision, NaN when only one class is present."""
    if is_fraud.nunique() < 2:
        return {"roc_auc": float("nan"), "average_precision": float("nan")}
    return {
        "roc_auc": float(roc_auc_score(is_fraud, score)),
        "average_precision": float(average_precision_score(is_fraud, score)),
    }


def _threshold_metrics(is_fraud: pd.Series, score: pd.Series, threshold: float) -> dict[str, float]:
    """Precision and recall of predicting fraud when score >= threshold (0.0 when undefined)."""
    predicted = score >= threshold
    actual = is_fraud == 1
    true_positives = int((predicted & actual).sum())
    predicted_count, actual_count = int(predicted.sum()), int(actual.sum())
    return {
        "precision_at_threshold": true_positives / predicted_count if predicted_count else 0.0,
        "recall_at_threshold": true_positives / actual_count if actual_count else 0.0,
    }


def evaluate_scores(scored: pd.DataFrame, threshold: float, k: int = 100) -> dict[str, float]:
    """All evaluation metrics of `scored` (see the module docstring), as floats."""
    _validate(scored)
    is_fraud, score = scored["is_fraud"].astype(int), scored["score"].astype(float)
    return {
        **_ranking_metrics(is_fraud, score),
        **_threshold_metrics(is_fraud, score, threshold),
        f"card_precision_at_{k}": card_precision_at_k(scored, k),
        "fraud_rate": float(is_fraud.mean()),
        "transactions": float(len(scored)),
    }


def _save(figure: plt.Figure, path: Path) -> Path:
    """Write `figure` to `path` and release it, even when writing fails."""
    try:
        figure.tight_layout()
        figure.savefig(path, dpi=DPI)
    finally:
        plt.close(figure)
    return path


def _precision_recall_chart(is_fraud: pd.Series, score: pd.Series, title: str) -> plt.Figure:
    precision, recall, _ = precision_recall_curve(is_fraud, score)
    average_precision = _ranking_metrics(is_fraud, score)["average_precision"]
    figure, axes = plt.subplots(figsize=(6, 5))
    axes.plot(recall, precision, label=f"AP = {average_precision:.3f}")
    axes.axhline(is_fraud.mean(), color="grey", linestyle="--", label="fraud rate")
    axes.set(xlabel="Recall", ylabel="Precision", title=f"{title}: precision-recall curve",
             xlim=(0, 1), ylim=(0, 1.05))
    axes.legend(loc="upper right")
    return figure


def _roc_chart(is_fraud: pd.Series, score: pd.Series, title: str) -> plt.Figure:
    false_positive_rate, true_positive_rate, _ = roc_curve(is_fraud, score)
    auc = _ranking_metrics(is_fraud, score)["roc_auc"]
    figure, axes = plt.subplots(figsize=(6, 5))
    axes.plot(false_positive_rate, true_positive_rate, label=f"AUC = {auc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="random")
    axes.set(xlabel="False positive rate", ylabel="True positive rate",
             title=f"{title}: ROC curve", xlim=(0, 1), ylim=(0, 1.05))
    axes.legend(loc="lower right")
    return figure


def _score_histogram(is_fraud: pd.Series, score: pd.Series, title: str) -> plt.Figure:
    bins = np.linspace(0.0, 1.0, 51)
    figure, axes = plt.subplots(figsize=(6, 5))
    for label, name, color in ((0, "genuine", "tab:blue"), (1, "fraud", "tab:red")):
        class_scores = score[is_fraud == label]
        if not class_scores.empty:
            axes.hist(class_scores, bins=bins, density=True, alpha=0.5, color=color,
                      label=f"{name} (n={len(class_scores)})")
    axes.set(xlabel="Score", ylabel="Density", title=f"{title}: score distribution by class")
    axes.legend(loc="upper center")
    return figure


def _feature_importance_chart(feature_importance: dict[str, float], title: str) -> plt.Figure:
    top = sorted(feature_importance.items(), key=lambda item: item[1], reverse=True)[:TOP_FEATURES]
    names, values = [name for name, _ in reversed(top)], [value for _, value in reversed(top)]
    figure, axes = plt.subplots(figsize=(7, max(3.0, 0.3 * len(top) + 1.5)))
    axes.barh(names, values, color="tab:blue")
    axes.set(xlabel="Importance", title=f"{title}: top {len(top)} feature importances")
    return figure


def save_charts(
    scored: pd.DataFrame, feature_importance: dict[str, float], out_dir: Path, title: str
) -> list[Path]:
    """Write the PR curve, ROC curve, score histogram and feature-importance PNGs to `out_dir`."""
    _validate(scored)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    is_fraud, score = scored["is_fraud"].astype(int), scored["score"].astype(float)
    charts = [
        ("precision_recall_curve.png", lambda: _precision_recall_chart(is_fraud, score, title)),
        ("roc_curve.png", lambda: _roc_chart(is_fraud, score, title)),
        ("score_histogram.png", lambda: _score_histogram(is_fraud, score, title)),
        ("feature_importance.png", lambda: _feature_importance_chart(feature_importance, title)),
    ]
    return [_save(build(), out_dir / name) for name, build in charts]
