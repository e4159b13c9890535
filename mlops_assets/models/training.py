"""Fitting the fraud model (CatBoost) and its baseline (logistic regression).

Early stopping watches a validation slice carved from the *end* of the training window, by
time, so the model never sees the test window while it is being fitted and the validation
rows are the ones most like the future it will score.
"""
from dataclasses import dataclass

import pandas as pd
from catboost import CatBoostClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class CatBoostSettings:
    iterations: int
    learning_rate: float
    depth: int
    threads: int
    class_weights: str
    early_stopping_rounds: int
    seed: int


def split_validation(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `fraction` of the training rows by time become the validation slice."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {fraction}")
    ordered = train.sort_values(["event_time", "transaction_id"], kind="stable")
    cut = int(len(ordered) * (1 - fraction))
    return ordered.iloc[:cut], ordered.iloc[cut:]


def fit_catboost(
    fit: pd.DataFrame, validation: pd.DataFrame, features: list[str], settings: CatBoostSettings
) -> CatBoostClassifier:
    model = CatBoostClassifier(
        iterations=settings.iterations,
        learning_rate=settings.learning_rate,
        depth=settings.depth,
        thread_count=settings.threads,
        auto_class_weights=settings.class_weights,
        eval_metric="PRAUC",
        early_stopping_rounds=settings.early_stopping_rounds,
        use_best_model=True,
        random_seed=settings.seed,
        allow_writing_files=False,
        verbose=False,
    )
    model.fit(fit[features], fit["label"], eval_set=(validation[features], validation["label"]))
    return model


def fit_baseline(train: pd.DataFrame, features: list[str]) -> Pipeline:
    """Standardised logistic regression with balanced class weights; missing values -> median."""
    baseline = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=2000),
    )
    return baseline.fit(train[features], train["label"])
